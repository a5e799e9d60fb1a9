package disk

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
)

const hint = "apt-get install e2fsprogs, or make deps"

// needTools stops the test unless it runs as root (mkfs copies owners only
// then, and the test tree has files of other users) with e2fsprogs.
func needTools(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "chown in the test tree; mkfs -d copies owners")
	for _, p := range []string{mkfsProg, e2fsckProg, resize2fsProg, "debugfs"} {
		if _, err := lookProg(p); err != nil {
			testenv.SkipOrFailf(t, "needs %s (%s): %v", p, hint, err)
		}
	}
}

// debugfs runs debugfs's read-only commands on image and returns stdout.
func debugfs(t testing.TB, image string, cmds ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "cmds")
	if err := os.WriteFile(f, []byte(strings.Join(cmds, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ := lookProg("debugfs")
	var stderr bytes.Buffer
	cmd := exec.Command(p, "-f", f, image)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("debugfs: %v: %s", err, stderr.String())
	}
	return string(out)
}

// lsEntry is one line of debugfs's "ls -p": /inode/mode/uid/gid/name/size/.
type lsEntry struct {
	ino, uid, gid uint64
	mode          uint32
	name          string
}

// parseLsP reads the output of debugfs -f with "ls -p DIR" commands into
// each DIR's entries (without . and ..). Names cannot hold "/", so the
// fields split cleanly; a name with a newline would break the line-based
// format, and the test tree has none.
func parseLsP(out string) (map[string][]lsEntry, error) {
	res := map[string][]lsEntry{}
	dir := ""
	for _, line := range strings.Split(out, "\n") {
		if c, ok := strings.CutPrefix(line, "debugfs: ls -p "); ok {
			d, err := strconv.Unquote(c)
			if err != nil {
				return nil, fmt.Errorf("command line %q: %v", line, err)
			}
			dir = d
			res[dir] = res[dir][:0:0]
			continue
		}
		if line == "" {
			continue
		}
		f := strings.Split(line, "/")
		if len(f) != 8 || f[0] != "" || f[7] != "" {
			return nil, fmt.Errorf("line %q: not /ino/mode/uid/gid/name/size/", line)
		}
		var e lsEntry
		var err error
		var mode uint64
		if e.ino, err = strconv.ParseUint(f[1], 10, 32); err == nil {
			if mode, err = strconv.ParseUint(f[2], 8, 32); err == nil {
				if e.uid, err = strconv.ParseUint(f[3], 10, 32); err == nil {
					e.gid, err = strconv.ParseUint(f[4], 10, 32)
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("line %q: %v", line, err)
		}
		e.mode, e.name = uint32(mode), f[5]
		if e.name == "" || dir == "" {
			return nil, fmt.Errorf("line %q: no name or outside a listing", line)
		}
		if e.name != "." && e.name != ".." {
			res[dir] = append(res[dir], e)
		}
	}
	return res, nil
}

func FuzzParseLsP(f *testing.F) {
	f.Add("debugfs: ls -p \"/\"\n/2/040755/0/0/.//\n/12/100644/0/0/a/3/\n")
	f.Add("/1/2/3/4/5/6/")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseLsP(s)
		if err != nil {
			return
		}
		for _, es := range m {
			for _, e := range es {
				if e.name == "" || strings.Contains(e.name, "/") {
					t.Fatalf("bad name %q", e.name)
				}
			}
		}
	})
}

// srcEntry is what the test expects of one path in the image.
type srcEntry struct {
	mode     uint32 // st_mode: type and permissions
	uid, gid uint32
	ino      uint64 // source inode, to match hard links
	target   string // symlink target
	sum      string // sha256 of a regular file
}

// buildTree makes a tree with each kind of thing mkfs -d must copy, and
// returns its size in bytes (as du -sb counts, each inode once).
func buildTree(t *testing.T, root string) int64 {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	big := make([]byte, 3<<20)
	rand.Read(big)
	must(os.MkdirAll(filepath.Join(root, "usr/share/deep/er/still"), 0o755))
	must(os.WriteFile(filepath.Join(root, "usr/share/big.bin"), big, 0o644))
	must(os.WriteFile(filepath.Join(root, "usr/share/deep/er/still/small"), []byte("small\n"), 0o600))
	must(os.WriteFile(filepath.Join(root, "empty"), nil, 0o644))
	must(os.WriteFile(filepath.Join(root, "name with spaces ü"), []byte("x"), 0o640))
	must(os.Mkdir(filepath.Join(root, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin/su"), []byte("#!/bin/true\n"), 0o755))
	must(unix.Chmod(filepath.Join(root, "bin/su"), 0o4755))
	must(os.Link(filepath.Join(root, "bin/su"), filepath.Join(root, "usr/su-hardlink")))
	must(os.Symlink("../usr/share/big.bin", filepath.Join(root, "bin/rel-link")))
	must(os.Symlink("/etc/nowhere", filepath.Join(root, "dangling")))
	must(os.Mkdir(filepath.Join(root, "tmp"), 0o755))
	must(unix.Chmod(filepath.Join(root, "tmp"), 0o1777))
	must(os.Mkdir(filepath.Join(root, "home"), 0o755))
	must(os.Mkdir(filepath.Join(root, "home/user"), 0o750))
	must(os.WriteFile(filepath.Join(root, "home/user/.profile"), []byte("export A=1\n"), 0o644))
	must(os.Lchown(filepath.Join(root, "home/user"), 1000, 1001))
	must(os.Lchown(filepath.Join(root, "home/user/.profile"), 1000, 1001))
	must(unix.Mkfifo(filepath.Join(root, "tmp/fifo"), 0o620))
	must(unix.Chmod(filepath.Join(root, "tmp/fifo"), 0o620))
	if err := unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		testenv.SkipPart(t, "no device node in the tree:", err)
	}
	if err := unix.Lsetxattr(filepath.Join(root, "usr/share/big.bin"), "user.subsys", []byte("hello"), 0); err != nil {
		testenv.SkipPart(t, "no xattr in the tree:", err)
	}
	must(unix.Chmod(root, 0o755))

	var total int64
	seen := map[uint64]bool{}
	must(filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !seen[st.Ino] {
			seen[st.Ino] = true
			total += fi.Size()
		}
		return nil
	}))
	return total
}

// scanTree records every path under root (relative, "/"-rooted) and the
// directories to list.
func scanTree(t *testing.T, root string) (map[string]srcEntry, []string) {
	t.Helper()
	ents := map[string]srcEntry{}
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = "/" + strings.TrimPrefix(filepath.ToSlash(rel), ".")
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := srcEntry{mode: st.Mode, uid: st.Uid, gid: st.Gid, ino: st.Ino}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			dirs = append(dirs, rel)
		case unix.S_IFLNK:
			e.target, err = os.Readlink(p)
		case unix.S_IFREG:
			e.sum, err = hashFile(p)
		}
		ents[rel] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ents, dirs
}

func hashFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// compareImage reads image back without mounting it (debugfs ls -p for
// modes, owners and inode numbers, rdump for contents and link targets) and
// compares it with the source tree.
func compareImage(t *testing.T, image, tree string) {
	t.Helper()
	want, dirs := scanTree(t, tree)
	cmds := make([]string, len(dirs))
	for i, d := range dirs {
		cmds[i] = "ls -p " + strconv.Quote(d)
	}
	listing, err := parseLsP(debugfs(t, image, cmds...))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	debugfs(t, image, "rdump / "+out)

	got := map[string]lsEntry{"/": {}}
	for dir, es := range listing {
		for _, e := range es {
			if dir == "/" && e.name == "lost+found" {
				continue // mkfs adds it
			}
			got[join(dir, e.name)] = e
		}
	}
	// source inode → image inode, so hard links must stay links.
	inoMap := map[uint64]uint64{}
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing from the image", p)
			continue
		}
		delete(got, p)
		if p == "/" {
			continue // the listing has no entry for the root itself
		}
		if g.mode != w.mode || uint32(g.uid) != w.uid || uint32(g.gid) != w.gid {
			t.Errorf("%s: image mode %o owner %d:%d, tree %o %d:%d", p, g.mode, g.uid, g.gid, w.mode, w.uid, w.gid)
		}
		if m, ok := inoMap[w.ino]; ok && m != g.ino {
			t.Errorf("%s: hard link broken: image inode %d, expected %d", p, g.ino, m)
		}
		inoMap[w.ino] = g.ino
		dumped := filepath.Join(out, p)
		switch w.mode & unix.S_IFMT {
		case unix.S_IFLNK:
			if tg, err := os.Readlink(dumped); err != nil || tg != w.target {
				t.Errorf("%s: link target %q (%v), want %q", p, tg, err, w.target)
			}
		case unix.S_IFREG:
			if sum, err := hashFile(dumped); err != nil || sum != w.sum {
				t.Errorf("%s: content differs (%v)", p, err)
			}
		}
	}
	for p := range got {
		t.Errorf("%s: in the image, not in the tree", p)
	}
	// Extended attributes, where the tree could have them.
	v := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(tree, "usr/share/big.bin"), "user.subsys", v); err == nil {
		ea := debugfs(t, image, "ea_list /usr/share/big.bin")
		if want := `user.subsys (5) = "` + string(v[:n]) + `"`; !strings.Contains(ea, want) {
			t.Errorf("xattr: image has %q, want %q", ea, want)
		}
	}
	// The root directory's own mode and owner.
	root := debugfs(t, image, "stat /")
	if !strings.Contains(root, "Mode:  0755") {
		t.Errorf("root directory: %s", firstLines(root, 4))
	}
}

func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "\n")
}

func TestCreate(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	treeBytes := buildTree(t, tree)
	image := filepath.Join(dir, "distro.ext4")

	start := time.Now()
	if err := Create(context.Background(), image, tree, DefaultMaxSize, Options{Label: "subsys-test"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("mkfs of a %d-byte tree into a 256 GiB image: %v", treeBytes, time.Since(start))

	apparent, allocated, err := Usage(image)
	if err != nil {
		t.Fatal(err)
	}
	if apparent != DefaultMaxSize {
		t.Errorf("apparent size %d, want %d", apparent, DefaultMaxSize)
	}
	if limit := treeBytes + 150<<20; allocated > limit {
		t.Errorf("allocated %d bytes, more than the tree's %d + 150 MiB", allocated, treeBytes)
	}
	t.Logf("allocated %d bytes for a tree of %d", allocated, treeBytes)
	if err := Check(context.Background(), image); err != nil {
		t.Fatal(err)
	}
	compareImage(t, image, tree)

	sb := debugfs(t, image, "stats -h")
	for _, want := range []string{
		"Filesystem volume name:   subsys-test",
		"Reserved block count:     0",
		"Errors behavior:          Remount read-only",
		"metadata_csum",
		"has_journal",
	} {
		if !strings.Contains(sb, want) {
			t.Errorf("superblock lacks %q", want)
		}
	}
	if j := debugfs(t, image, "stat <8>"); !strings.Contains(j, "Size: 134217728") {
		t.Errorf("journal inode is not 128 MiB: %s", firstLines(j, 4))
	}
	if strings.Contains(sb, "orphan_file") {
		t.Error("orphan_file is on; the host's mke2fs.conf leaked in")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// An image is never replaced.
	err = Create(context.Background(), image, tree, DefaultMaxSize, Options{})
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an image: %v, want ErrExist", err)
	}
}

func TestCreateErrors(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	big := make([]byte, 8<<20)
	os.WriteFile(filepath.Join(tree, "big"), big, 0o644)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)

	for _, tc := range []struct {
		name, tree string
		size       int64
		opts       Options
		want       string
	}{
		{"tree too big for the disk", tree, 8 << 20, Options{JournalMiB: 1}, "mkfs.ext4"},
		{"tree missing", filepath.Join(dir, "nope"), 1 << 30, Options{}, "no such file"},
		{"tree a file", file, 1 << 30, Options{}, "not a directory"},
		{"size zero", tree, 100, Options{}, "below one block"},
		{"label too long", tree, 1 << 30, Options{Label: strings.Repeat("x", 17)}, "longer than 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			image := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".ext4")
			err := Create(context.Background(), image, tc.tree, tc.size, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), image) {
				t.Fatalf("Create: %v, want an error naming %s with %q", err, image, tc.want)
			}
			t.Log(err)
			if _, err := os.Lstat(image); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("image exists after a failed Create: %v", err)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

func TestGrow(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	os.WriteFile(filepath.Join(tree, "f"), []byte("content"), 0o644)
	image := filepath.Join(dir, "img")
	ctx := context.Background()
	if err := Create(ctx, image, tree, 1<<30, Options{}); err != nil {
		t.Fatal(err)
	}
	blocks := func() string {
		s := debugfs(t, image, "stats -h")
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, "Block count:") {
				return strings.TrimSpace(strings.TrimPrefix(l, "Block count:"))
			}
		}
		return ""
	}
	if got := blocks(); got != strconv.Itoa(1<<30/BlockSize) {
		t.Fatalf("block count %s before Grow", got)
	}
	if err := Grow(ctx, image, 4<<30); err != nil {
		t.Fatal(err)
	}
	if got := blocks(); got != strconv.Itoa(4<<30/BlockSize) {
		t.Errorf("block count %s after Grow to 4 GiB", got)
	}
	if a, _, _ := Usage(image); a != 4<<30 {
		t.Errorf("apparent size %d after Grow", a)
	}
	if err := Check(ctx, image); err != nil {
		t.Fatal(err)
	}
	compareImage(t, image, tree)
	if err := Grow(ctx, image, 4<<30); err != nil {
		t.Errorf("Grow to the same size: %v", err)
	}
	if err := Grow(ctx, image, 2<<30); err == nil || !strings.Contains(err.Error(), "never shrink") {
		t.Errorf("Grow down: %v", err)
	}
}

func TestCheckFindsDamage(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	image := filepath.Join(dir, "img")
	if err := Create(context.Background(), image, tree, 64<<20, Options{JournalMiB: 4}); err != nil {
		t.Fatal(err)
	}
	// Clear the root directory's inode (inode 2, in the first inode table)
	// by way of debugfs, which writes only with -w.
	p, _ := lookProg("debugfs")
	if out, err := exec.Command(p, "-w", "-R", "clri <2>", image).CombinedOutput(); err != nil {
		t.Fatalf("debugfs clri: %v: %s", err, out)
	}
	err := Check(context.Background(), image)
	if err == nil || !strings.Contains(err.Error(), image) || !strings.Contains(err.Error(), "e2fsck") {
		t.Fatalf("Check of a damaged image: %v", err)
	}
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error has raw newlines: %q", err)
	}
	t.Log(err)
}

// TestCreateCancel: ending ctx kills mkfs and leaves nothing behind. A
// stand-in mkfs that writes its PID and sleeps shows that it is killed.
func TestCreateCancel(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	fake := filepath.Join(dir, "fake-mkfs")
	script := "#!/bin/sh\necho $$ > " + pidFile + "\nexec sleep 60\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := mkfsProg
	mkfsProg = fake
	t.Cleanup(func() { mkfsProg = old })

	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	images := filepath.Join(dir, "images")
	os.Mkdir(images, 0o755)
	image := filepath.Join(images, "img")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Create(ctx, image, tree, 1<<30, Options{}) }()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); ; {
		if b, err := os.ReadFile(pidFile); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stand-in mkfs never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Create after cancel: %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Create took %v to return after cancel", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Create did not return after cancel")
	}
	// The process is gone (reaped by exec, so not even a zombie).
	if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("mkfs (pid %d) still exists after cancel: %v", pid, err)
	}
	if ents, _ := os.ReadDir(images); len(ents) != 0 {
		t.Errorf("left in the image directory: %v", ents)
	}
}

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"line one\nline two\n", "line one; line two"},
		{"a\n\n\nb\n", "a; b"},
		{"\n\na", "a"},
		{"esc \x1b[31mred", `esc \x1b[31mred`},
		{"bad \xff utf8", `bad \xff utf8`},
		{"bidi \u202e x", `bidi \u202e x`},
		{"ünï", "ünï"},
		{strings.Repeat("a", maxStderr+10), strings.Repeat("a", maxStderr) + " …(truncated)"},
	} {
		if got := sanitize([]byte(tc.in)); got != tc.want {
			t.Errorf("sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestUsageMissing(t *testing.T) {
	_, _, err := Usage(filepath.Join(t.TempDir(), "none"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Usage of a missing file: %v", err)
	}
}

func TestMkfsArgs(t *testing.T) {
	for _, tc := range []struct {
		name             string
		size, inodes     int64
		opts             Options
		want, wantAbsent []string
	}{
		{"default", DefaultMaxSize, 10000, Options{}, []string{"-i 65536", "-J size=128", "-m 0", "-e remount-ro"}, []string{"-N", "-L"}},
		{"many small files", 1 << 30, 20000, Options{}, []string{"-N 56384"}, []string{"-i"}},
		{"small disk, small journal", MinMaxSize, 10, Options{}, []string{"-J size=8"}, nil},
		{"tiny disk, minimum journal", 16 << 20, 10, Options{}, []string{"-J size=4"}, nil},
		{"1 GiB, default journal", 1 << 30, 10, Options{}, []string{"-J size=128"}, nil},
		{"options", DefaultMaxSize, 1, Options{Label: "l", BytesPerInode: 1 << 20, JournalMiB: 64}, []string{"-i 1048576", "-J size=64", "-L l"}, []string{"-N"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := mkfsArgs("IMG", "TREE", tc.size, tc.inodes, tc.opts)
			line := " " + strings.Join(args, " ") + " "
			for _, w := range tc.want {
				if !strings.Contains(line, " "+w+" ") {
					t.Errorf("%q lacks %q", line, w)
				}
			}
			for _, w := range tc.wantAbsent {
				if strings.Contains(line, " "+w+" ") {
					t.Errorf("%q has %q", line, w)
				}
			}
			if !strings.HasSuffix(line, " -d TREE IMG ") {
				t.Errorf("%q does not end with -d TREE IMG", line)
			}
		})
	}
}
