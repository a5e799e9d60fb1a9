package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// node is what the round trip compares for one path of a tree.
type node struct {
	typ    fs.FileMode
	perm   uint32 // permission and setuid/setgid/sticky bits
	uid    uint32
	gid    uint32
	size   int64
	sum    [32]byte
	link   string
	mtime  int64 // ns; not compared for symlinks where the fs cannot set it
	rdev   uint64
	xattrs map[string]string
	ino    uint64
}

// snapshot describes every path of the tree at dir, and which paths share
// an inode.
func snapshot(t *testing.T, dir string) (map[string]node, [][]string) {
	t.Helper()
	nodes := make(map[string]node)
	byIno := make(map[uint64][]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi, _ := d.Info()
		n := node{
			typ:   fi.Mode().Type(),
			perm:  st.Mode & 0o7777,
			uid:   st.Uid,
			gid:   st.Gid,
			mtime: st.Mtim.Nano(),
			rdev:  st.Rdev,
			ino:   st.Ino,
		}
		switch n.typ {
		case 0:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.size, n.sum = int64(len(b)), sha256.Sum256(b)
			if st.Nlink > 1 {
				byIno[st.Ino] = append(byIno[st.Ino], rel)
			}
		case fs.ModeSymlink:
			n.link, _ = os.Readlink(p)
			n.perm = 0 // symlink modes mean nothing on Linux
		}
		n.xattrs = listXattrs(p)
		nodes[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var groups [][]string
	for _, g := range byIno {
		slices.Sort(g)
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return nodes, groups
}

func listXattrs(p string) map[string]string {
	b := make([]byte, 4096)
	n, err := unix.Llistxattr(p, b)
	if err != nil || n == 0 {
		return nil
	}
	m := make(map[string]string)
	for name := range strings.SplitSeq(strings.TrimRight(string(b[:n]), "\x00"), "\x00") {
		v := make([]byte, 4096)
		vn, err := unix.Lgetxattr(p, name, v)
		if err == nil {
			m[name] = string(v[:vn])
		}
	}
	return m
}

// capNetBindService is a security.capability value (VFS_CAP_REVISION_2,
// effective) granting CAP_NET_BIND_SERVICE, as `setcap cap_net_bind_service+ep`.
func capNetBindService() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1)
	binary.LittleEndian.PutUint32(b[4:], 1<<10) // permitted
	return b
}

// buildTree makes a tree with every kind of entry Extract and Write handle,
// each with its own mode and mtime. It returns what it could not make here
// (xattrs on a file system without them, ownership when not root), so the
// test can say what it did not cover.
func buildTree(t *testing.T, root string) (skipped []string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	isRoot := os.Geteuid() == 0
	rnd := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 1<<20+4567)
	for i := range big {
		big[i] = byte(rnd.Uint32())
	}
	for _, d := range []string{"a", "a/b", "empty", "ro", "sticky", "sgid", "deep/er/than/that", "dev"} {
		must(os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	files := map[string]struct {
		body string
		mode uint32
	}{
		"a/file":       {"hello\n", 0o644},
		"a/b/exec":     {"#!/bin/sh\n", 0o755},
		"suid":         {"setuid", 0o4755},
		"sgidfile":     {"setgid", 0o2711},
		"empty-file":   {"", 0o600},
		"ro/inside":    {"read-only dir", 0o444},
		"big":          {string(big), 0o640},
		"unicode ü 名前": {"names", 0o644},
		"deep/er/than/that/" + strings.Repeat("long", 40): {"long name", 0o644},
	}
	for name, f := range files {
		p := filepath.Join(root, name)
		must(os.WriteFile(p, []byte(f.body), 0o600))
		must(unix.Chmod(p, f.mode)) // os.Chmod takes Go's setuid bits, not 04000
	}
	must(os.Link(filepath.Join(root, "a/file"), filepath.Join(root, "hl1")))
	must(os.Link(filepath.Join(root, "a/file"), filepath.Join(root, "a/b/hl2")))
	for name, target := range map[string]string{
		"a/rel": "file", "abs": "/etc/passwd", "dangling": "nowhere", "lib": "a", "a/b/up": "../../big",
	} {
		must(os.Symlink(target, filepath.Join(root, name)))
	}
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	must(os.Chmod(filepath.Join(root, "fifo"), 0o620))
	if isRoot {
		must(unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(unix.Mknod(filepath.Join(root, "dev/loop9"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 9))))
		must(os.Lchown(filepath.Join(root, "a/file"), 1234, 5678))
		must(os.Lchown(filepath.Join(root, "a/rel"), 42, 43))
		must(os.Lchown(filepath.Join(root, "a/b"), 7, 8))
		must(os.Lchown(filepath.Join(root, "fifo"), 9, 10))
		must(os.Lchown(filepath.Join(root, "sgidfile"), 0, 50)) // chown clears setgid: restore it
		must(unix.Chmod(filepath.Join(root, "sgidfile"), 0o2711))
		must(unix.Chmod(filepath.Join(root, "dev/null"), 0o666))
		must(unix.Setxattr(filepath.Join(root, "a/b/exec"), "security.capability", capNetBindService(), 0))
	} else {
		skipped = append(skipped, "ownership and devices and security.capability (not root)")
	}
	if err := unix.Setxattr(filepath.Join(root, "a/file"), "user.test", []byte("value\x00bin"), 0); err != nil {
		skipped = append(skipped, "user xattrs: "+err.Error())
	}
	if err := unix.Setxattr(filepath.Join(root, "sticky"), "user.dir", []byte("on a dir"), 0); err != nil {
		skipped = append(skipped, "user xattrs on dirs: "+err.Error())
	}
	// Times last, deepest first, so that making entries does not change them.
	var paths []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	slices.Reverse(paths)
	for i, p := range paths {
		mt := time.Unix(1600000000+int64(i)*3600, int64(i)*1000003+7)
		ts := []unix.Timespec{unix.NsecToTimespec(mt.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	// Modes that would stop the build go on after the times (chmod does not
	// change mtime).
	must(os.Chmod(filepath.Join(root, "ro"), 0o555))
	must(unix.Chmod(filepath.Join(root, "sticky"), 0o1777))
	must(unix.Chmod(filepath.Join(root, "sgid"), 0o2755))
	must(unix.Chmod(filepath.Join(root, "empty"), 0o700))
	return skipped
}

// removableTempDir is t.TempDir that, when not root, makes its directories
// writable again before it is removed: the trees hold a read-only one.
func removableTempDir(t *testing.T) string {
	d := t.TempDir()
	t.Cleanup(func() {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return d
}

func TestRoundTrip(t *testing.T) {
	src := filepath.Join(removableTempDir(t), "src")
	if err := os.Mkdir(src, 0o751); err != nil {
		t.Fatal(err)
	}
	for _, s := range buildTree(t, src) {
		testenv.SkipPart(t, "not covered here:", s)
	}
	want, wantLinks := snapshot(t, src)
	if len(wantLinks) != 1 || len(wantLinks[0]) != 3 {
		t.Fatalf("source hard link groups = %q, want one of three", wantLinks)
	}
	magic := map[Format][]byte{Tar: nil, TarGz: magicGzip, TarZst: magicZstd, TarXz: magicXz}
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(context.Background(), &buf, src, f); err != nil {
				t.Fatalf("Write = %v", err)
			}
			if m := magic[f]; m != nil && !bytes.HasPrefix(buf.Bytes(), m) {
				t.Errorf("Write(%s) starts with % x, want % x", f, buf.Bytes()[:8], m)
			}
			if f == Tar && !isTarHeader(buf.Bytes()) {
				t.Errorf("Write(tar) does not start with a tar header")
			}
			dest := filepath.Join(removableTempDir(t), "dest")
			if err := os.Mkdir(dest, 0o700); err != nil {
				t.Fatal(err)
			}
			st, err := Extract(context.Background(), &buf, dest, Limits{})
			if err != nil {
				t.Fatalf("Extract = %v", err)
			}
			if st.Entries != len(want) {
				t.Errorf("Extract entries = %d, want %d", st.Entries, len(want))
			}
			got, gotLinks := snapshot(t, dest)
			compareTrees(t, got, want)
			if !slices.EqualFunc(gotLinks, wantLinks, slices.Equal) {
				t.Errorf("hard link groups = %q, want %q", gotLinks, wantLinks)
			}
		})
	}
}

func compareTrees(t *testing.T, got, want map[string]node) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(want)) {
		w := want[p]
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing", p)
			continue
		}
		g.ino, w.ino = 0, 0
		if !maps.Equal(g.xattrs, w.xattrs) {
			t.Errorf("%s: xattrs = %q, want %q", p, g.xattrs, w.xattrs)
		}
		if describe(g) != describe(w) || g.sum != w.sum {
			t.Errorf("%s:\n got %+v\nwant %+v", p, describe(g), describe(w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: not in the source", p)
		}
	}
}

func describe(n node) string {
	return fmt.Sprintf("type=%v perm=%#o uid=%d gid=%d size=%d link=%q mtime=%d rdev=%d",
		n.typ, n.perm, n.uid, n.gid, n.size, n.link, n.mtime, n.rdev)
}

// TestWriteClone pipes Write into Extract, as clone does.
func TestWriteClone(t *testing.T) {
	src := filepath.Join(removableTempDir(t), "src")
	os.Mkdir(src, 0o755)
	buildTree(t, src)
	dest := filepath.Join(removableTempDir(t), "dest")
	os.Mkdir(dest, 0o755)
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := Write(context.Background(), pw, src, TarZst)
		pw.CloseWithError(err)
		errc <- err
	}()
	if _, err := Extract(context.Background(), pr, dest, Limits{}); err != nil {
		t.Fatalf("Extract = %v", err)
	}
	pr.Close()
	if err := <-errc; err != nil {
		t.Fatalf("Write = %v", err)
	}
	want, _ := snapshot(t, src)
	got, _ := snapshot(t, dest)
	compareTrees(t, got, want)
}

// TestWriteDoesNotFollowSymlinks checks that Write stores a symlink to a host
// directory as a symlink and never reads through it.
func TestWriteDoesNotFollowSymlinks(t *testing.T) {
	s := newSandbox(t)
	os.Symlink(s.host, filepath.Join(s.dest, "evil"))
	os.Symlink(s.secret, filepath.Join(s.dest, "evilfile"))
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, s.dest, Tar); err != nil {
		t.Fatalf("Write = %v", err)
	}
	if bytes.Contains(buf.Bytes(), []byte("host secret")) {
		t.Errorf("the archive holds the host secret: Write followed a symlink")
	}
}

func TestWriteCancel(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Write(ctx, io.Discard, src, TarGz); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("Write with cancelled ctx = %v, want context.Canceled", err)
	}
}
