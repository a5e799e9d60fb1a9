package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ent is one entry of a test archive.
type ent struct {
	typ  byte
	name string
	link string // symlink or hard link target
	body string
	mode int64
	size int64 // header size when it must differ from len(body)
}

func file(name, body string) ent      { return ent{typ: tar.TypeReg, name: name, body: body} }
func dir(name string) ent             { return ent{typ: tar.TypeDir, name: name} }
func symlink(name, target string) ent { return ent{typ: tar.TypeSymlink, name: name, link: target} }
func hardlink(name, target string) ent {
	return ent{typ: tar.TypeLink, name: name, link: target}
}

// mkTar builds a tarball in memory with archive/tar. Sizes that differ from
// the body make a truncated stream, which is the point of those cases.
func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if e.typ == tar.TypeDir {
				mode = 0o755
			}
		}
		size := int64(len(e.body))
		if e.size != 0 {
			size = e.size
		}
		if e.typ != tar.TypeReg {
			size = 0
		}
		hdr := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: mode, Size: size,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("WriteHeader(%q): %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			if e.size != 0 {
				return buf.Bytes() // deliberately short: stop here
			}
			t.Fatalf("Write(%q): %v", e.name, err)
		}
		if e.size > int64(len(e.body)) {
			tw.Flush() // an error, as intended; the header is out
			return buf.Bytes()
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

func xzc(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// flip returns b with some bytes in the middle changed.
func flip(b []byte) []byte {
	b = slices.Clone(b)
	for i := len(b) / 2; i < len(b)/2+8 && i < len(b); i++ {
		b[i] ^= 0x5a
	}
	return b
}

// paxRecord formats one PAX record, whose length prefix counts itself.
func paxRecord(k, v string) string {
	s := " " + k + "=" + v + "\n"
	n := len(s) + 1
	for len(strconv.Itoa(n))+len(s) != n {
		n++
	}
	return strconv.Itoa(n) + s
}

// paxNUL builds, byte by byte, an archive whose PAX header gives an entry a
// path with a NUL in it; archive/tar refuses to write one.
func paxNUL(t testing.TB) []byte {
	b := mkTar(t, file("paxheader", paxRecord("path", "evil\x00/../../x")), file("victim", "x"))
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	var sum int
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// sandbox is a destination with a sentinel "host" directory beside it, which
// stands for the host's files that a hostile archive aims at.
type sandbox struct {
	parent, dest, host, secret string
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	p := t.TempDir()
	s := &sandbox{parent: p, dest: filepath.Join(p, "dest"), host: filepath.Join(p, "host")}
	s.secret = filepath.Join(s.host, "secret")
	for _, d := range []string{s.dest, s.host} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(s.secret, []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// check fails t if anything outside dest changed: new names beside dest or in
// host, or the secret's content or link count.
func (s *sandbox) check(t testing.TB) {
	t.Helper()
	for dir, want := range map[string][]string{s.parent: {"dest", "host"}, s.host: {"secret"}} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if !slices.Equal(got, want) {
			t.Errorf("entries of %s = %q, want %q: something escaped", dir, got, want)
		}
	}
	b, err := os.ReadFile(s.secret)
	if err != nil || string(b) != "host secret" {
		t.Errorf("host secret = %q, %v, want %q", b, err, "host secret")
	}
	if n := nlink(t, s.secret); n != 1 {
		t.Errorf("host secret has %d links, want 1", n)
	}
}

func nlink(t testing.TB, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Sys().(*syscall.Stat_t).Nlink)
}

// hostileCase is an archive, made once the sandbox's paths are known, and the
// error Extract must give.
type hostileCase struct {
	name  string
	tar   func(t testing.TB, s *sandbox) []byte
	lim   Limits
	want  error  // sentinel; nil means success
	entry string // the entry the error must name ("" for stream-level errors)
}

func hostileCases() []hostileCase {
	plain := func(ents ...ent) func(testing.TB, *sandbox) []byte {
		return func(t testing.TB, _ *sandbox) []byte { return mkTar(t, ents...) }
	}
	valid := func(t testing.TB) []byte {
		return mkTar(t, dir("./"), dir("./etc/"), file("./etc/hostname", "box\n"), file("./big", strings.Repeat("x", 5000)))
	}
	return []hostileCase{
		{name: "dotdot", tar: plain(file("../escape", "x")), want: ErrUnsafe, entry: "../escape"},
		{name: "dotdot inside", tar: plain(dir("a/"), file("a/../../escape", "x")), want: ErrUnsafe, entry: "a/../../escape"},
		{name: "dotdot to host", tar: plain(file("./../host/secret", "pwned")), want: ErrUnsafe, entry: "./../host/secret"},
		{name: "absolute", tar: func(t testing.TB, s *sandbox) []byte {
			return mkTar(t, file(filepath.Join(s.host, "planted"), "x"))
		}, want: ErrUnsafe, entry: "/"},
		{name: "absolute etc", tar: plain(file("/etc/subsys-archive-test", "x")), want: ErrUnsafe, entry: "/etc/subsys-archive-test"},
		{name: "NUL in PAX path", tar: func(t testing.TB, _ *sandbox) []byte { return paxNUL(t) }, want: ErrCorrupt},
		{name: "symlink escape relative", tar: plain(dir("a/"), dir("a/b/"), symlink("a/b/up", "../../../etc")), want: ErrUnsafe, entry: "a/b/up"},
		{name: "symlink dotdot at root", tar: plain(symlink("evil", "../..")), want: ErrUnsafe, entry: "evil"},
		{name: "symlink replacing root", tar: plain(symlink("./", "/etc")), want: ErrUnsafe, entry: "./"},
		{name: "symlink absolute is stored", tar: plain(symlink("etc/alt", "/etc/alternatives/x")), want: nil},
		{name: "write through absolute symlink", tar: func(t testing.TB, s *sandbox) []byte {
			return mkTar(t, symlink("evil", s.host), file("evil/secret", "pwned"))
		}, want: ErrUnsafe, entry: "evil/secret"},
		{name: "write through absolute symlink to etc", tar: plain(symlink("evil", "/etc"), file("evil/passwd", "pwned")), want: ErrUnsafe, entry: "evil/passwd"},
		{name: "mkdir through absolute symlink", tar: func(t testing.TB, s *sandbox) []byte {
			return mkTar(t, symlink("evil", s.host), dir("evil/newdir/"))
		}, want: ErrUnsafe, entry: "evil/newdir/"},
		{name: "write through relative symlink", tar: plain(
			// Each link passes the lexical check; together, resolved by the
			// kernel, t climbs three levels above dest.
			dir("d1/"), dir("d1/d2/"), symlink("d1/d2/up", "../.."), symlink("d1/d2/t", "up/../../.."),
			file("d1/d2/t/host/secret", "pwned")), want: ErrUnsafe, entry: "d1/d2/t/host/secret"},
		{name: "symlink through relative symlink", tar: plain(
			dir("d1/"), dir("d1/d2/"), symlink("d1/d2/up", "../.."), symlink("d1/d2/t", "up/../../.."),
			symlink("d1/d2/t/host/new", "/etc")), want: ErrUnsafe, entry: "d1/d2/t/host/new"},
		{name: "hard link dotdot", tar: plain(hardlink("h", "../host/secret")), want: ErrUnsafe, entry: "h"},
		{name: "hard link absolute", tar: func(t testing.TB, s *sandbox) []byte {
			return mkTar(t, hardlink("h", s.secret))
		}, want: ErrUnsafe, entry: "h"},
		{name: "hard link etc passwd", tar: plain(hardlink("passwd", "/etc/passwd")), want: ErrUnsafe, entry: "passwd"},
		{name: "hard link through absolute symlink", tar: func(t testing.TB, s *sandbox) []byte {
			return mkTar(t, symlink("evil", s.host), hardlink("h", "evil/secret"))
		}, want: ErrUnsafe, entry: "h"},
		{name: "hard link through relative symlink", tar: plain(
			dir("d1/"), dir("d1/d2/"), symlink("d1/d2/up", "../.."), symlink("d1/d2/t", "up/../../.."),
			hardlink("h", "d1/d2/t/host/secret")), want: ErrUnsafe, entry: "h"},
		{name: "hard link to symlink links the symlink", tar: func(t testing.TB, s *sandbox) []byte {
			return mkTar(t, symlink("s", s.secret), hardlink("h", "s"))
		}, want: nil},
		{name: "hard link missing target", tar: plain(hardlink("h", "nothere")), want: ErrCorrupt, entry: "h"},
		{name: "hard link missing target dir", tar: plain(hardlink("h", "no/such/file")), want: ErrCorrupt, entry: "h"},
		{name: "hard link to directory", tar: plain(dir("d/"), hardlink("h", "d")), want: ErrCorrupt, entry: "h"},
		{name: "file replaces planted symlink", tar: func(t testing.TB, s *sandbox) []byte {
			return mkTar(t, symlink("s", s.secret), file("s", "mine"))
		}, want: nil},
		{name: "dir replaces planted symlink", tar: func(t testing.TB, s *sandbox) []byte {
			return mkTar(t, symlink("s", s.host), dir("s/"), file("s/secret", "mine"))
		}, want: nil},
		{name: "file under a file", tar: plain(file("f", "x"), file("f/g", "y")), want: ErrCorrupt, entry: "f/g"},
		{name: "too many entries", tar: plain(file("1", ""), file("2", ""), file("3", ""), file("4", "")),
			lim: Limits{MaxEntries: 3}, want: ErrLimit, entry: "4"},
		{name: "too many bytes", tar: plain(file("small", "12345"), file("large", strings.Repeat("x", 200))),
			lim: Limits{MaxExpandedBytes: 100}, want: ErrLimit, entry: "large"},
		{name: "implicit directories count", tar: plain(file(strings.Repeat("d/", 20)+"f", "x")),
			lim: Limits{MaxEntries: 10}, want: ErrLimit, entry: "d/d/"},
		{name: "name longer than PATH_MAX", tar: plain(file(strings.Repeat("d/", 2100)+"f", "x")), want: ErrUnsafe, entry: "d/d/"},
		{name: "size bomb", tar: plain(ent{typ: tar.TypeReg, name: "bomb", size: 1 << 40}),
			want: ErrLimit, entry: "bomb"},
		{name: "truncated data", tar: plain(file("ok", "fine"), ent{typ: tar.TypeReg, name: "cut", body: "abc", size: 4096}),
			want: ErrCorrupt, entry: "cut"},
		{name: "truncated header", tar: func(t testing.TB, _ *sandbox) []byte {
			b := mkTar(t, file("a", "x"), file("b", "y"))
			return b[:512+512+300]
		}, want: ErrCorrupt},
		{name: "corrupt gzip", tar: func(t testing.TB, _ *sandbox) []byte { return flip(gz(t, valid(t))) }, want: ErrCorrupt},
		{name: "truncated gzip", tar: func(t testing.TB, _ *sandbox) []byte {
			b := gz(t, valid(t))
			return b[:len(b)/2]
		}, want: ErrCorrupt},
		{name: "gzip header only", tar: func(t testing.TB, _ *sandbox) []byte { return gz(t, valid(t))[:5] }, want: ErrCorrupt},
		{name: "corrupt zstd", tar: func(t testing.TB, _ *sandbox) []byte { return flip(zst(t, valid(t))) }, want: ErrCorrupt},
		{name: "truncated zstd", tar: func(t testing.TB, _ *sandbox) []byte {
			b := zst(t, valid(t))
			return b[:len(b)-10]
		}, want: ErrCorrupt},
		{name: "corrupt xz", tar: func(t testing.TB, _ *sandbox) []byte { return flip(xzc(t, valid(t))) }, want: ErrCorrupt},
		{name: "truncated xz", tar: func(t testing.TB, _ *sandbox) []byte {
			b := xzc(t, valid(t))
			return b[:len(b)-20]
		}, want: ErrCorrupt},
		{name: "not a tar", tar: func(t testing.TB, _ *sandbox) []byte {
			return []byte(strings.Repeat("this is not an archive\n", 100))
		}, want: ErrFormat},
		{name: "short garbage", tar: func(t testing.TB, _ *sandbox) []byte { return []byte("PK\x03\x04") }, want: ErrFormat},
		{name: "damaged bzip2", tar: func(t testing.TB, _ *sandbox) []byte { return []byte("BZh91AY&SY" + strings.Repeat("\x00", 600)) }, want: ErrCorrupt},
		{name: "gzip of text", tar: func(t testing.TB, _ *sandbox) []byte {
			return gz(t, []byte(strings.Repeat("hello\n", 1000)))
		}, want: ErrFormat},
		{name: "empty", tar: func(t testing.TB, _ *sandbox) []byte { return nil }, want: ErrFormat},
		{name: "empty gzip", tar: func(t testing.TB, _ *sandbox) []byte { return gz(t, nil) }, want: ErrFormat},
		{name: "valid", tar: func(t testing.TB, _ *sandbox) []byte { return valid(t) }, want: nil},
		{name: "valid gzip", tar: func(t testing.TB, _ *sandbox) []byte { return gz(t, valid(t)) }, want: nil},
		{name: "valid zstd", tar: func(t testing.TB, _ *sandbox) []byte { return zst(t, valid(t)) }, want: nil},
		{name: "valid xz", tar: func(t testing.TB, _ *sandbox) []byte { return xzc(t, valid(t)) }, want: nil},
		{name: "empty tar", tar: plain(), want: ErrFormat},
	}
}

func TestExtractHostile(t *testing.T) {
	passwdLinks := nlink(t, "/etc/passwd")
	for _, tt := range hostileCases() {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := Extract(context.Background(), bytes.NewReader(tt.tar(t, s)), s.dest, tt.lim)
			t.Logf("Extract = %v", err)
			switch {
			case tt.want == nil && err != nil:
				t.Errorf("Extract = %v, want success", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("Extract = %v, want %v", err, tt.want)
			}
			if tt.entry != "" {
				var ee *EntryError
				if !errors.As(err, &ee) || !strings.HasPrefix(ee.Name, tt.entry) {
					t.Errorf("Extract = %v, want an EntryError naming %q", err, tt.entry)
				} else if !strings.Contains(err.Error(), ee.Name) {
					t.Errorf("error %q does not name the entry %q", err, ee.Name)
				}
			}
			s.check(t)
			if n := nlink(t, "/etc/passwd"); n != passwdLinks {
				t.Errorf("/etc/passwd has %d links, want %d", n, passwdLinks)
			}
			if _, err := os.Lstat("/etc/subsys-archive-test"); err == nil {
				t.Errorf("/etc/subsys-archive-test exists: an absolute entry escaped")
			}
		})
	}
}

// TestExtractReplaced checks what the successful hostile cases left in dest.
func TestExtractReplaced(t *testing.T) {
	s := newSandbox(t)
	b := mkTar(t, symlink("s", s.secret), file("s", "mine"), symlink("t", s.secret), hardlink("h", "t"),
		symlink("d", s.host), dir("d/"), file("d/secret", "inside"),
		file("dup", "one"), file("dup", "two"), dir("e/"), file("e", "file over empty dir"))
	if _, err := Extract(context.Background(), bytes.NewReader(b), s.dest, Limits{}); err != nil {
		t.Fatalf("Extract = %v", err)
	}
	for name, want := range map[string]string{"s": "mine", "d/secret": "inside", "dup": "two", "e": "file over empty dir"} {
		got, err := os.ReadFile(filepath.Join(s.dest, name))
		if err != nil || string(got) != want {
			t.Errorf("ReadFile(%s) = %q, %v, want %q", name, got, err, want)
		}
	}
	if target, err := os.Readlink(filepath.Join(s.dest, "h")); err != nil || target != s.secret {
		t.Errorf("Readlink(h) = %q, %v, want %q (a hard link of the symlink)", target, err, s.secret)
	}
	s.check(t)
}

func TestExtractNotEmpty(t *testing.T) {
	s := newSandbox(t)
	os.WriteFile(filepath.Join(s.dest, "x"), nil, 0o644)
	if _, err := Extract(context.Background(), bytes.NewReader(mkTar(t, file("a", "b"))), s.dest, Limits{}); err == nil {
		t.Errorf("Extract into a non-empty directory = nil, want an error")
	}
}

func TestExtractCancel(t *testing.T) {
	s := newSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Extract(ctx, bytes.NewReader(mkTar(t, file("a", "b"))), s.dest, Limits{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Extract with cancelled ctx = %v, want context.Canceled", err)
	}
}

// cancelAfter is a reader that cancels a context once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

// TestExtractCancelDuringCopy cancels while a large file is being written:
// Extract must stop inside it, not at the next entry.
func TestExtractCancelDuringCopy(t *testing.T) {
	s := newSandbox(t)
	big := strings.Repeat("x", 8*bufSize)
	b := mkTar(t, file("small", "x"), file("big", big), file("after", "y"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Extract(ctx, &cancelAfter{bytes.NewReader(b), 2 * bufSize, cancel}, s.dest, Limits{})
	var ee *EntryError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &ee) || ee.Name != "big" {
		t.Errorf("Extract = %v, want context.Canceled naming %q", err, "big")
	}
}

// errAfter is a reader that fails after n bytes, like a dropped upload.
type errAfter struct {
	r io.Reader
	n int
}

var errDropped = errors.New("connection dropped")

func (e *errAfter) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errDropped
	}
	if len(p) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= n
	return n, err
}

func TestExtractSourceError(t *testing.T) {
	b := mkTar(t, file("a", strings.Repeat("x", 100000)), file("b", "y"))
	for name, data := range map[string][]byte{"tar": b, "gzip": gz(t, b)} {
		s := newSandbox(t)
		_, err := Extract(context.Background(), &errAfter{bytes.NewReader(data), len(data) / 2}, s.dest, Limits{})
		if !errors.Is(err, errDropped) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Extract with failing reader = %v, want the reader's error, not ErrCorrupt", name, err)
		}
	}
}

func TestExtractStats(t *testing.T) {
	s := newSandbox(t)
	b := mkTar(t, dir("./"), file("a", "12345"), symlink("l", "a"), file("b", "678"))
	st, err := Extract(context.Background(), bytes.NewReader(b), s.dest, Limits{})
	if err != nil || st.Entries != 4 || st.Bytes != 8 || st.ApparentBytes != 8 || st.SkippedDevices != 0 || len(st.Warnings) != 0 {
		t.Errorf("Extract = %+v, %v, want 4 entries, 8 bytes, no warnings", st, err)
	}
}
