package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func dev(name string, typ byte, major, minor int64) []byte {
	return raw{name: name, typ: typ, mode: oct(0o666, 8), devmajor: oct(major, 8), devminor: oct(minor, 8)}.block()
}

// TestExtractDevices checks that device nodes are made under dev/ only: the
// others, hard links to a node of dev/ included, are skipped and counted.
func TestExtractDevices(t *testing.T) {
	data := blocks(
		raw{name: "dev/", typ: tar.TypeDir, mode: oct(0o755, 8)},
		dev("dev/null", tar.TypeChar, 1, 3),
		dev("dev/loop0", tar.TypeBlock, 7, 0),
		dev("dev/pts/ptmx", tar.TypeChar, 5, 2), // an implicit parent below dev/
		dev("sda", tar.TypeBlock, 8, 0),
		dev("etc/mem", tar.TypeChar, 1, 1),
		raw{name: "etc/null", typ: tar.TypeLink, link: "dev/null"},
		dev("run/initctl", tar.TypeFifo, 0, 0), // a fifo is not a device
		zeroBlocks)
	s := newSandbox(t)
	st, err := Extract(context.Background(), bytes.NewReader(data), s.dest, Limits{})
	if err != nil {
		t.Fatalf("Extract = %v", err)
	}
	root := os.Geteuid() == 0
	wantSkipped := 3
	if !root {
		wantSkipped = 6 // and mknod is not permitted
	}
	if st.SkippedDevices != wantSkipped {
		t.Errorf("SkippedDevices = %d, want %d", st.SkippedDevices, wantSkipped)
	}
	if w := strings.Join(st.Warnings, "\n"); !strings.Contains(w, "outside /dev: 3 entries") {
		t.Errorf("Warnings = %q, want the devices outside /dev counted", st.Warnings)
	}
	for _, name := range []string{"sda", "etc/mem", "etc/null"} {
		if _, err := os.Lstat(filepath.Join(s.dest, name)); err == nil {
			t.Errorf("%s was made", name)
		}
	}
	var fst unix.Stat_t
	if err := unix.Lstat(filepath.Join(s.dest, "run/initctl"), &fst); err != nil || fst.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("run/initctl: %v, mode %o, want a fifo", err, fst.Mode)
	}
	if root {
		for name, want := range map[string]uint32{"dev/null": unix.S_IFCHR, "dev/loop0": unix.S_IFBLK, "dev/pts/ptmx": unix.S_IFCHR} {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(s.dest, name), &st); err != nil || st.Mode&unix.S_IFMT != want {
				t.Errorf("%s: %v, mode %o, want a device", name, err, st.Mode)
			}
		}
	}
}

// TestExtractDevicesThroughSymlink checks that dev/ reached through a
// symlink (dev -> etc) is not dev/.
func TestExtractDevicesThroughSymlink(t *testing.T) {
	data := blocks(
		raw{name: "etc/", typ: tar.TypeDir, mode: oct(0o755, 8)},
		raw{name: "dev", typ: tar.TypeSymlink, link: "etc"},
		dev("dev/sda", tar.TypeBlock, 8, 0),
		raw{name: "keep", size: oct(1, 12)}, "k",
		zeroBlocks)
	s := newSandbox(t)
	st, err := Extract(context.Background(), bytes.NewReader(data), s.dest, Limits{})
	if err != nil {
		t.Fatalf("Extract = %v", err)
	}
	if st.SkippedDevices != 1 {
		t.Errorf("SkippedDevices = %d, want 1", st.SkippedDevices)
	}
	if _, err := os.Lstat(filepath.Join(s.dest, "etc/sda")); err == nil {
		t.Errorf("etc/sda was made through the dev symlink")
	}
}

// TestExtractNoFiles checks that archives with nothing to install are
// refused instead of making an empty distro.
func TestExtractNoFiles(t *testing.T) {
	g := pax(tar.TypeXGlobalHeader, "comment", "made by a test")
	for _, tt := range []struct {
		name string
		data []byte
		want error
	}{
		{"two zero blocks", []byte(zeroBlocks), ErrFormat},
		{"one zero block", make([]byte, blockSize), ErrFormat},
		{"ten KiB of zeros", make([]byte, 10240), ErrFormat},
		{"a volume label only", blocks(raw{name: "VOL", typ: 'V'}, zeroBlocks), ErrFormat},
		{"a global header only", blocks(g, zeroBlocks), ErrFormat},
		{"a global header with no end", g, ErrFormat},
		{"a global header cut short", g[:blockSize+10], ErrCorrupt},
		{"a global header without its data", g[:blockSize], ErrCorrupt},
		{"an extended header and the end", blocks(pax(tar.TypeXHeader, "path", "a"), zeroBlocks), ErrFormat},
		{"entries of unknown types only", blocks(raw{name: "acl", typ: 'A', size: oct(3, 12)}, "acl", zeroBlocks), ErrFormat},
		{"gzip of zero blocks", gz(t, []byte(zeroBlocks)), ErrFormat},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := Extract(context.Background(), bytes.NewReader(tt.data), s.dest, Limits{})
			if !errors.Is(err, tt.want) {
				t.Errorf("Extract = %v, want %v", err, tt.want)
			}
			if tt.want == ErrFormat && (err == nil || !strings.Contains(err.Error(), "holds no files")) {
				t.Errorf("Extract = %v, want it to say the archive holds no files", err)
			}
		})
	}
	// One directory is something: an archive of an empty tree.
	s := newSandbox(t)
	if _, err := Extract(context.Background(), bytes.NewReader(mkTar(t, dir("./"))), s.dest, Limits{}); err != nil {
		t.Errorf("Extract of ./ alone = %v, want success", err)
	}
}

// TestExtractErrorsSayWhere checks that errors about the archive's structure
// name the entry (or the last good one) and the offset, never only
// archive/tar's "invalid tar header".
func TestExtractErrorsSayWhere(t *testing.T) {
	damaged := raw{name: "c"}.block()
	damaged[0] = 'X' // checksum now wrong
	for _, tt := range []struct {
		name string
		data []byte
		want []string
	}{
		{"damaged header", blocks(raw{name: "a"}, raw{name: "b", size: oct(3, 12)}, "bbb", damaged, zeroBlocks),
			[]string{`after entry "b"`, "offset 1536", "checksum"}},
		{"garbage in the middle", blocks(raw{name: "a"}, strings.Repeat("garbage!", 64), zeroBlocks),
			[]string{`after entry "a"`, "offset 512", "no valid tar header"}},
		{"malformed PAX record", blocks(raw{name: "pax", typ: tar.TypeXHeader, size: oct(9, 12)}, "bogus=pax", raw{name: "a"}, zeroBlocks),
			[]string{`"a"`, "offset 0", "PAX"}},
		{"truncated header", blocks(raw{name: "a"}, raw{name: "b"}.block()[:300]),
			[]string{`after entry "a"`, "truncated", "offset 512"}},
		{"truncated data", blocks(raw{name: "a", size: oct(5000, 12)}, []byte("short")),
			[]string{`"a"`, "truncated"}},
		{"bad mode", blocks(raw{name: "m", mode: "0644 xyz"}, zeroBlocks),
			[]string{`"m"`, "mode", "offset 0"}},
		{"huge long name", blocks(raw{name: "././@LongLink", typ: tar.TypeGNULongName, size: oct(2<<20, 12)}),
			[]string{"@LongLink", "offset 0", "extended header"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := Extract(context.Background(), bytes.NewReader(tt.data), s.dest, Limits{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Extract = %v, want ErrCorrupt", err)
			}
			msg := err.Error()
			t.Logf("Extract = %v", msg)
			if strings.Contains(msg, "invalid tar header") && !slices.ContainsFunc(tt.want, func(w string) bool { return strings.Contains(msg, w) }) {
				t.Errorf("error %q says only archive/tar's words", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
		})
	}
}

// TestExtractDirectoryForms checks the forms of directory GNU tar accepts:
// a regular file named with a trailing slash, and a GNU dumpdir.
func TestExtractDirectoryForms(t *testing.T) {
	data := blocks(
		raw{name: "v7dir/", typ: tar.TypeReg, mode: oct(0o750, 8)},
		raw{name: "dumpdir", typ: 'D', size: oct(4, 12), mode: oct(0o700, 8)}, "Yf\x00\x00",
		raw{name: "v7dir/f", size: oct(1, 12)}, "f",
		zeroBlocks)
	s := newSandbox(t)
	if _, err := Extract(context.Background(), bytes.NewReader(data), s.dest, Limits{}); err != nil {
		t.Fatalf("Extract = %v", err)
	}
	for name, mode := range map[string]os.FileMode{"v7dir": os.ModeDir | 0o750, "dumpdir": os.ModeDir | 0o700} {
		if fi, err := os.Lstat(filepath.Join(s.dest, name)); err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v, %v, want %v", name, fi, err, mode)
		}
	}
}

// TestExtractDecoderWarnings checks that what the decoder accepted with a
// warning (data after the end of the gzip stream) reaches Stats.Warnings.
func TestExtractDecoderWarnings(t *testing.T) {
	data := append(gz(t, mkTar(t, file("a", "b"))), "trailing garbage"...)
	s := newSandbox(t)
	st, err := Extract(context.Background(), bytes.NewReader(data), s.dest, Limits{})
	if err != nil {
		t.Fatalf("Extract = %v", err)
	}
	if w := strings.Join(st.Warnings, "\n"); !strings.Contains(w, "after the end of the gzip stream") {
		t.Errorf("Warnings = %q, want the decoder's warning about trailing data", st.Warnings)
	}
}
