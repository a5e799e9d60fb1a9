package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// allocated returns the bytes the file at p takes on disk.
func allocated(t testing.TB, p string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// sparseTarball has GNU tar write, in format args, a file of size bytes that
// holds "head" at 0 and "tail" at its end, with a hole between, and returns
// the archive gzipped.
func sparseTarball(t *testing.T, size int64, args ...string) []byte {
	t.Helper()
	requireGNUTar(t)
	src := t.TempDir()
	p := filepath.Join(src, "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("tail"), size-4)
	f.Close()
	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", fmt.Sprintf("tar -c -C %s --sparse %s disk.img | gzip -9", src, strings.Join(args, " ")))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tar: %v: %s", err, &stderr)
	}
	return out.Bytes()
}

// TestExtractSparse imports a sparse-file bomb: a few hundred bytes of tar.gz
// holding a GNU sparse file with a 6 GiB hole. The hole must stay a hole, and
// count nothing against the expansion limit.
func TestExtractSparse(t *testing.T) {
	const size = 6 << 30
	for _, format := range [][]string{
		{"--format=gnu"},
		{"--format=posix", "--sparse-version=0.1"},
		{"--format=posix", "--sparse-version=1.0"},
	} {
		t.Run(strings.Join(format, " "), func(t *testing.T) {
			data := sparseTarball(t, size, format...)
			s := newSandbox(t)
			st, err := Extract(context.Background(), bytes.NewReader(data), s.dest, Limits{MaxExpandedBytes: 1 << 20})
			if err != nil {
				t.Fatalf("Extract = %v", err)
			}
			p := filepath.Join(s.dest, "disk.img")
			fi, err := os.Stat(p)
			if err != nil || fi.Size() != size {
				t.Fatalf("Stat = %v, %v, want %d bytes", fi, err, int64(size))
			}
			alloc := allocated(t, p)
			t.Logf("archive %d bytes (gzip), file %d bytes, allocated %d bytes, Stats %+v", len(data), fi.Size(), alloc, st)
			if alloc > 64<<10 {
				t.Errorf("allocated %d bytes, want the hole kept (a few KiB)", alloc)
			}
			if st.Bytes > 16<<10 || st.ApparentBytes != size {
				// GNU tar stores data in whole file system blocks.
				t.Errorf("Stats = %+v, want Bytes the data (a block or two) and ApparentBytes %d", st, int64(size))
			}
			f, _ := os.Open(p)
			defer f.Close()
			for off, want := range map[int64]string{0: "head", size - 4: "tail", 3 << 30: "\x00\x00\x00\x00"} {
				b := make([]byte, 4)
				if _, err := f.ReadAt(b, off); err != nil || string(b) != want {
					t.Errorf("ReadAt(%d) = %q, %v, want %q", off, b, err, want)
				}
			}
		})
	}
}

// TestExtractSparseLimit checks that a sparse file's data, not its size,
// counts against MaxExpandedBytes, and that data beyond it is refused.
func TestExtractSparseLimit(t *testing.T) {
	data := sparseTarball(t, 1<<30, "--format=gnu")
	s := newSandbox(t)
	_, err := Extract(context.Background(), bytes.NewReader(data), s.dest, Limits{MaxExpandedBytes: 4})
	if !errors.Is(err, ErrLimit) {
		t.Errorf("Extract with a 4-byte limit = %v, want ErrLimit (the file holds 8 bytes of data)", err)
	}
}

// sparseOld builds an old GNU sparse entry ('S') by hand: frags in the
// header's slots, data their bytes back to back.
func sparseOld(name string, realsize int64, frags []fragment, data string, fix func(b []byte)) []byte {
	h := raw{name: name, typ: tar.TypeGNUSparse, size: oct(int64(len(data)), 12), magic: "ustar  \x00"}
	b := h.block()
	for i, f := range frags {
		copy(b[gnuSparseOff+i*24:], oct(f.off, 12))
		copy(b[gnuSparseOff+i*24+12:], oct(f.n, 12))
	}
	copy(b[fieldRealsize.off:], oct(realsize, 12))
	if fix != nil {
		fix(b)
	}
	copy(b[148:156], "        ")
	sum, _ := checksums(b)
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return blocks(b, data, zeroBlocks)
}

// TestExtractSparseMaps checks sparse maps built by hand, the well-formed
// and those that tar readers would place differently.
func TestExtractSparseMaps(t *testing.T) {
	for _, tt := range []struct {
		name string
		data []byte
		want error
		file string // content, for the good ones
	}{
		{"two fragments", sparseOld("s", 2048, []fragment{{0, 512}, {1536, 3}}, strings.Repeat("a", 512)+"bcd", nil), nil,
			strings.Repeat("a", 512) + strings.Repeat("\x00", 1024) + "bcd" + strings.Repeat("\x00", 509)},
		{"hole at the end", sparseOld("s", 4096, []fragment{{0, 2}, {4096, 0}}, "ab", nil), nil, "ab" + strings.Repeat("\x00", 4094)},
		{"no data", sparseOld("s", 100, []fragment{}, "", nil), nil, strings.Repeat("\x00", 100)},
		{"unaligned middle fragment", sparseOld("s", 4096, []fragment{{0, 3}, {1024, 3}}, "abcdef", nil), ErrCorrupt, ""},
		{"overlapping fragments", sparseOld("s", 4096, []fragment{{0, 1024}, {512, 2}}, strings.Repeat("a", 1026), nil), ErrCorrupt, ""},
		{"fragment beyond the size", sparseOld("s", 100, []fragment{{512, 2}}, "ab", nil), ErrCorrupt, ""},
		{"data and map disagree", sparseOld("s", 4096, []fragment{{0, 2}}, "abcd", nil), ErrCorrupt, ""},
		{"half-empty slot", sparseOld("s", 4096, []fragment{{0, 2}, {1024, 2}}, "abcd", func(b []byte) { b[gnuSparseOff+24] = 0 }), ErrCorrupt, ""},
		{"offset with leading NULs", sparseOld("s", 4096, []fragment{{0, 2}}, "ab", func(b []byte) { copy(b[gnuSparseOff:], "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x001") }), ErrCorrupt, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := Extract(context.Background(), bytes.NewReader(tt.data), s.dest, Limits{})
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Errorf("Extract = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Extract = %v", err)
			}
			b, err := os.ReadFile(filepath.Join(s.dest, "s"))
			if err != nil || string(b) != tt.file {
				t.Errorf("s = %q, %v, want %q", b, err, tt.file)
			}
		})
	}
}
