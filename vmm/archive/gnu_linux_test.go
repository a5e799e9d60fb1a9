package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// raw is a tar header block built byte by byte, so that tests can write what
// archive/tar's Writer refuses to. Numeric fields hold their raw bytes; empty
// ones get ordinary values.
type raw struct {
	name, link                     string
	typ                            byte
	mode, uid, gid, size, mtime    string
	devmajor, devminor, chksumRepr string
	magic                          string // default "ustar\x0000"
}

// oct formats n as tar writes it: zero-padded octal and a NUL, in width bytes.
func oct(n int64, width int) string { return fmt.Sprintf("%0*o\x00", width-1, n) }

func (h raw) block() []byte {
	b := make([]byte, blockSize)
	def := func(s, d string) string {
		if s == "" {
			return d
		}
		return s
	}
	copy(b[0:100], h.name)
	copy(b[100:108], def(h.mode, oct(0o644, 8)))
	copy(b[108:116], def(h.uid, oct(0, 8)))
	copy(b[116:124], def(h.gid, oct(0, 8)))
	copy(b[124:136], def(h.size, oct(0, 12)))
	copy(b[136:148], def(h.mtime, oct(1700000000, 12)))
	b[156] = h.typ
	if b[156] == 0 {
		b[156] = tar.TypeReg
	}
	copy(b[157:257], h.link)
	copy(b[257:265], def(h.magic, "ustar\x0000"))
	copy(b[329:337], def(h.devmajor, oct(0, 8)))
	copy(b[337:345], def(h.devminor, oct(0, 8)))
	copy(b[148:156], "        ")
	sum, _ := checksums(b)
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	if h.chksumRepr != "" {
		copy(b[148:156], fmt.Sprintf(h.chksumRepr, sum))
	}
	return b
}

// withType sets the type flag of header block b, even to NUL, and its
// checksum.
func withType(b []byte, typ byte) []byte {
	b[typeOffset] = typ
	copy(b[148:156], "        ")
	sum, _ := checksums(b)
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// blocks concatenates header blocks and data (padded to whole blocks).
func blocks(parts ...any) []byte {
	var out []byte
	for _, p := range parts {
		switch p := p.(type) {
		case raw:
			out = append(out, p.block()...)
		case string:
			out = append(out, p...)
			out = append(out, make([]byte, blockPadding(int64(len(p))))...)
		case []byte:
			out = append(out, p...)
		}
	}
	return out
}

var zeroBlocks = string(make([]byte, 2*blockSize))

// paxData is the data of a PAX header with the given records.
func paxData(kv ...string) string {
	var s string
	for i := 0; i < len(kv); i += 2 {
		s += paxRecord(kv[i], kv[i+1])
	}
	return s
}

func pax(typ byte, kv ...string) []byte {
	d := paxData(kv...)
	return blocks(raw{name: "pax", typ: typ, size: oct(int64(len(d)), 12)}, d)
}

// requireGNUTar skips the test where GNU tar is not installed.
func requireGNUTar(t *testing.T) {
	t.Helper()
	out, err := exec.Command("tar", "--version").Output()
	if err != nil || !bytes.Contains(out, []byte("GNU tar")) {
		testenv.SkipOrFailf(t, "GNU tar is not installed (%v); it is the reference these tests compare with", err)
	}
}

// gnuList returns what GNU tar lists (-t) or extracts (-x, into a scratch
// directory) from data, one "name size" line per entry, the size being the
// device numbers for devices, and what it said on stderr.
func gnuList(t *testing.T, data []byte, mode string) ([]string, string) {
	t.Helper()
	args := []string{"-tvf", "-", "--numeric-owner"}
	if mode == "x" {
		args = []string{"-xvf", "-", "-C", t.TempDir(), "--numeric-owner"}
	}
	cmd := exec.Command("tar", args...)
	cmd.Stdin = bytes.NewReader(data)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Run() // failures show on stderr, which the caller may look at
	var out []string
	for line := range strings.Lines(stdout.String()) {
		f := strings.Fields(line)
		switch {
		case mode == "x" && len(f) > 0:
			out = append(out, strings.TrimSuffix(f[0], "/"))
		case len(f) >= 6:
			name := strings.Join(f[5:], " ")
			name, _, _ = strings.Cut(name, " -> ")
			name, _, _ = strings.Cut(name, " link to ")
			out = append(out, fmt.Sprintf("%s %s %s %s", strings.TrimSuffix(name, "/"), f[2], f[0][1:], f[1]))
		}
	}
	return out, stderr.String()
}

// goList returns what archive/tar reads from data, in gnuList's form: what
// Extract installed before it framed archives itself.
func goList(data []byte, names bool) []string {
	var out []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			if err != io.EOF {
				out = append(out, "error: "+err.Error())
			}
			return out
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		size := fmt.Sprint(h.Size)
		switch h.Typeflag {
		case tar.TypeChar, tar.TypeBlock:
			size = fmt.Sprintf("%d,%d", h.Devmajor, h.Devminor)
		case tar.TypeLink, tar.TypeSymlink, tar.TypeDir:
			size = "0"
		}
		name := strings.TrimSuffix(h.Name, "/")
		if names {
			out = append(out, name)
		} else {
			out = append(out, fmt.Sprintf("%s %s %s %d/%d", name, size, perm(h.Mode), h.Uid, h.Gid))
		}
	}
}

// perm shows mode as ls and tar -tv do, without the type.
func perm(mode int64) string {
	b := []byte("rwxrwxrwx")
	for i := range b {
		if mode&(1<<(8-i)) == 0 {
			b[i] = '-'
		}
	}
	for _, s := range []struct {
		bit  int64
		i    int
		x, n byte
	}{{0o4000, 2, 's', 'S'}, {0o2000, 5, 's', 'S'}, {0o1000, 8, 't', 'T'}} {
		if mode&s.bit != 0 {
			if b[s.i] == 'x' {
				b[s.i] = s.x
			} else {
				b[s.i] = s.n
			}
		}
	}
	return string(b)
}

// differentialCases are archives that GNU tar reads differently from
// archive/tar: each hides, adds or changes an entry for one of them.
func differentialCases() []struct {
	name  string
	data  []byte
	mode  string // how GNU tar shows the difference: "t" (list) or "x" (extract)
	entry string // the entry Extract must name
	why   string // a word the reason must hold
} {
	hidden := raw{name: "hidden", mode: oct(0o4755, 8), size: oct(10, 12)}
	return []struct {
		name  string
		data  []byte
		mode  string
		entry string
		why   string
	}{
		// The attack: GNU tar lists an empty "a" and a harmless README;
		// archive/tar reads a 512-byte "a" (the README's header) and then
		// a root-owned setuid "hidden", which GNU tar takes for the
		// README's data.
		{"size with leading NULs", blocks(
			raw{name: "a", size: "\x00\x00\x00\x00\x00\x00\x00\x001000"},
			raw{name: "README", size: oct(1024, 12)},
			hidden, "#!/bin/sh\n", zeroBlocks), "t", "a", "size"},
		{"mode with leading NULs", blocks(
			raw{name: "tool", mode: "\x00\x004755\x00\x00"}, zeroBlocks), "t", "tool", "mode"},
		{"uid with leading NULs", blocks(
			raw{name: "f", uid: "\x00\x001750\x00\x00"}, zeroBlocks), "t", "f", "uid"},
		{"checksum with leading NULs", blocks(
			raw{name: "a"}, raw{name: "hidden", chksumRepr: "\x00\x00%05o\x00"}, raw{name: "b"}, zeroBlocks), "t", "", "checksum"},
		{"symlink with data", blocks(
			raw{name: "l", typ: tar.TypeSymlink, link: "x", size: oct(512, 12)}, hidden, zeroBlocks), "t", "l", "symlink"},
		{"device with data", blocks(
			raw{name: "dev/c", typ: tar.TypeChar, size: oct(512, 12)}, hidden, zeroBlocks), "t", "dev/c", "device"},
		{"fifo with data", blocks(
			raw{name: "p", typ: tar.TypeFifo, size: oct(512, 12)}, hidden, zeroBlocks), "t", "p", "fifo"},
		{"PAX size on a symlink", blocks(
			pax(tar.TypeXHeader, "size", "512"), raw{name: "l", typ: tar.TypeSymlink, link: "x"}, hidden, zeroBlocks), "t", "l", "symlink"},
		{"Solaris extended header", blocks(
			pax('X', "size", "512"), raw{name: "a"}, hidden, zeroBlocks), "t", "pax", "Solaris"},
		{"global header with a size", blocks(
			pax(tar.TypeXGlobalHeader, "size", "512"), raw{name: "a"}, hidden, zeroBlocks), "t", "pax", "size"},
		{"global header with an owner", blocks(
			pax(tar.TypeXGlobalHeader, "uid", "0", "path", "evil"), raw{name: "a", uid: oct(1000, 8)}, zeroBlocks), "t", "pax", "global"},
		{"extended header before a global one", blocks(
			pax(tar.TypeXHeader, "path", "evil"), pax(tar.TypeXGlobalHeader, "comment", "x"), raw{name: "a"}, zeroBlocks), "t", "pax", "global"},
		{"GNU long name and PAX path", blocks(
			raw{name: "././@LongLink", typ: tar.TypeGNULongName, size: oct(9, 12)}, "longname\x00",
			pax(tar.TypeXHeader, "path", "paxname"), raw{name: "a"}, zeroBlocks), "t", "longname", "names"},
		{"old-style directory with data", blocks(
			withType(raw{name: "v/", size: oct(512, 12)}.block(), 0), hidden, zeroBlocks), "t", "v/", "directory"},
		{"file named as a directory with data", blocks(
			raw{name: "v/", size: oct(512, 12)}, hidden, zeroBlocks), "x", "v/", "directory"},
	}
}

// TestGNUDifferential builds archives that GNU tar and Go's archive/tar read
// differently, shows with the real tar that they do, and checks that
// Extract refuses each, naming the entry and what is wrong, and installs
// nothing of them.
func TestGNUDifferential(t *testing.T) {
	requireGNUTar(t)
	for _, tt := range differentialCases() {
		t.Run(tt.name, func(t *testing.T) {
			gnu, stderr := gnuList(t, tt.data, tt.mode)
			old := goList(tt.data, tt.mode == "x")
			t.Logf("GNU tar -%s: %q %s", tt.mode, gnu, strings.TrimSpace(stderr))
			t.Logf("archive/tar: %q", old)
			if slices.Equal(gnu, old) {
				t.Fatalf("GNU tar and archive/tar read the archive alike: the test archive is no attack")
			}
			s := newSandbox(t)
			_, err := Extract(context.Background(), bytes.NewReader(tt.data), s.dest, Limits{})
			t.Logf("Extract = %v", err)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Extract = %v, want ErrCorrupt", err)
			}
			var ee *EntryError
			if tt.entry != "" && (!errors.As(err, &ee) || ee.Name != tt.entry) {
				t.Errorf("Extract = %v, want an EntryError naming %q", err, tt.entry)
			}
			if !strings.Contains(err.Error(), tt.why) || !strings.Contains(err.Error(), "offset") {
				t.Errorf("Extract = %v, want the offset and %q in the reason", err, tt.why)
			}
			if _, err := os.Lstat(filepath.Join(s.dest, "hidden")); err == nil {
				t.Errorf("hidden was installed")
			}
			s.check(t)
		})
	}
}

// TestGNUAttackListing walks through the first of differentialCases step by
// step: `tar -tvf` shows an empty "a" and a README, while archive/tar reads a
// 512-byte "a" and a hidden setuid root file.
func TestGNUAttackListing(t *testing.T) {
	requireGNUTar(t)
	data := differentialCases()[0].data
	gnu, _ := gnuList(t, data, "t")
	if !slices.Equal(gnu, []string{"a 0 rw-r--r-- 0/0", "README 1024 rw-r--r-- 0/0"}) {
		t.Errorf("tar -tvf lists %q, want an empty a and a README", gnu)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	var got []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		got = append(got, fmt.Sprintf("%s %d %#o uid=%d", h.Name, h.Size, h.Mode, h.Uid))
	}
	if want := []string{"a 512 0644 uid=0", "hidden 10 04755 uid=0"}; !slices.Equal(got, want) {
		t.Errorf("archive/tar reads %q, want %q", got, want)
	}
}

// TestGNUCompatibleEnds checks the ends GNU tar accepts and archive/tar
// does not: a single zero block followed by other bytes, and no end blocks.
func TestGNUCompatibleEnds(t *testing.T) {
	requireGNUTar(t)
	for _, tt := range []struct {
		name string
		data []byte
		warn string
	}{
		{"lone zero block then stray bytes", blocks(raw{name: "a", size: oct(2, 12)}, "hi", make([]byte, blockSize), strings.Repeat("junk", 300)), "single zero block"},
		{"lone zero block then a header", blocks(raw{name: "a", size: oct(2, 12)}, "hi", make([]byte, blockSize), raw{name: "ignored"}, zeroBlocks), "single zero block"},
		{"lone zero block at the end", blocks(raw{name: "a", size: oct(2, 12)}, "hi", make([]byte, blockSize)), ""},
		{"no end blocks", blocks(raw{name: "a", size: oct(2, 12)}, "hi"), "without its end-of-archive blocks"},
		{"no end blocks nor padding", blocks(raw{name: "a", size: oct(2, 12)}, []byte("hi")), "without its end-of-archive blocks"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			gnu, stderr := gnuList(t, tt.data, "t")
			if !slices.Equal(gnu, []string{"a 2 rw-r--r-- 0/0"}) {
				t.Fatalf("GNU tar lists %q (%s), want only a", gnu, stderr)
			}
			s := newSandbox(t)
			st, err := Extract(context.Background(), bytes.NewReader(tt.data), s.dest, Limits{})
			if err != nil {
				t.Fatalf("Extract = %v, want success as with GNU tar", err)
			}
			if b, err := os.ReadFile(filepath.Join(s.dest, "a")); err != nil || string(b) != "hi" {
				t.Errorf("a = %q, %v, want hi", b, err)
			}
			if _, err := os.Lstat(filepath.Join(s.dest, "ignored")); err == nil {
				t.Errorf("the entry after the lone zero block was extracted; GNU tar stops there")
			}
			got := strings.Join(st.Warnings, "\n")
			if (tt.warn == "") != (got == "") || !strings.Contains(got, tt.warn) {
				t.Errorf("Warnings = %q, want one with %q", st.Warnings, tt.warn)
			}
		})
	}
}

// TestGNUTarArchives extracts archives GNU tar writes in each of its formats,
// with long names, links and sparse files of every sparse version, and
// compares the tree with the source: the framing here must agree with GNU
// tar's on everything it writes.
func TestGNUTarArchives(t *testing.T) {
	requireGNUTar(t)
	src := t.TempDir()
	long := strings.Repeat("long-name-", 15)
	mustRun(t, "sh", "-c", fmt.Sprintf(`set -e; cd %s
		mkdir -p d/%[2]s/e && echo deep > d/%[2]s/e/%[2]s
		printf hello > f && ln f hard && ln -s %[2]s/e d/sym
		truncate -s 50M sparse && printf middle | dd of=sparse bs=1 seek=20000000 conv=notrunc 2>/dev/null
		printf end | dd of=sparse bs=1 seek=52428797 conv=notrunc 2>/dev/null
		truncate -s 3M hole-at-end && printf start > hole-at-end.tmp && dd if=hole-at-end.tmp of=hole-at-end conv=notrunc 2>/dev/null && rm hole-at-end.tmp
		`, src, long))
	want, _ := snapshot(t, src)
	for _, args := range [][]string{
		{"--format=gnu"}, {"--format=oldgnu"}, {"--format=posix"}, {"--format=ustar", "--exclude=./d"},
		{"--format=gnu", "--sparse"}, {"--format=oldgnu", "--sparse"},
		{"--format=posix", "--sparse", "--sparse-version=0.0"},
		{"--format=posix", "--sparse", "--sparse-version=0.1"},
		{"--format=posix", "--sparse", "--sparse-version=1.0"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var buf bytes.Buffer
			cmd := exec.Command("tar", append([]string{"-c", "-C", src, "--numeric-owner"}, append(args, ".")...)...)
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &buf, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("tar: %v: %s", err, &stderr)
			}
			dest := filepath.Join(t.TempDir(), "dest")
			os.Mkdir(dest, 0o755)
			st, err := Extract(context.Background(), &buf, dest, Limits{})
			if err != nil {
				t.Fatalf("Extract = %v", err)
			}
			if len(st.Warnings) != 0 {
				t.Errorf("Warnings = %q, want none", st.Warnings)
			}
			got, _ := snapshot(t, dest)
			w := want
			if slices.Contains(args, "--exclude=./d") {
				w = make(map[string]node)
				for k, v := range want {
					if k != "d" && !strings.HasPrefix(k, "d/") {
						w[k] = v
					}
				}
			}
			for p, n := range w {
				// GNU tar keeps only whole seconds in gnu, oldgnu and ustar.
				g := got[p]
				n.mtime, g.mtime = n.mtime/1e9, g.mtime/1e9
				n.ino, g.ino = 0, 0
				n.xattrs, g.xattrs = nil, nil
				if p == "" {
					continue // the destination's own mode is the test's
				}
				if describe(g) != describe(n) || g.sum != n.sum {
					t.Errorf("%s:\n got %s\nwant %s", p, describe(g), describe(n))
				}
			}
			if len(got) != len(w) {
				t.Errorf("extracted %d entries, want %d", len(got), len(w))
			}
			if slices.Contains(args, "--sparse") {
				if b := allocated(t, filepath.Join(dest, "sparse")); b > 1<<20 {
					t.Errorf("sparse file allocates %d bytes, want its holes kept", b)
				}
			}
		})
	}
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v: %s", name, args, err, out)
	}
}
