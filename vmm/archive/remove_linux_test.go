package archive

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// removeFdLimit is the RLIMIT_NOFILE of the child process that removes the
// deep tree: far fewer descriptors than the tree has levels.
const removeFdLimit = 256

// removeReport is what the child of TestRemoveAllDeepUnderFdLimit prints.
type removeReport struct {
	Err    string // "" on success
	EMFILE bool   // the error was "too many open files"
	MaxFds int    // most descriptors open during the removal, beyond those before
}

// TestRemoveAllDeepUnderFdLimit is the attack: a distro makes a tree 20,000
// levels deep (mkdir and cd in a loop), and the server then removes it. In a
// process whose RLIMIT_NOFILE is 256, os.RemoveAll, which holds a descriptor
// per level, runs out of descriptors (in the server that would fail every
// other request with EMFILE) and leaves the tree; RemoveAll removes it all
// and holds a bounded number of descriptors throughout.
func TestRemoveAllDeepUnderFdLimit(t *testing.T) {
	if mode := os.Getenv("ARCHIVE_TEST_REMOVE"); mode != "" {
		removeAllChild(t, mode, os.Getenv("ARCHIVE_TEST_REMOVE_DIR"))
		return
	}
	const depth = 20000
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	// Should RemoveAll fail, TempDir's os.RemoveAll could not remove the
	// tree either (it is deeper than many hard limits): try RemoveAll first.
	t.Cleanup(func() { RemoveAll(tree) })
	deepTree(t, tree, depth)

	rep := runRemoveChild(t, "os", tree)
	if !rep.EMFILE {
		t.Fatalf("os.RemoveAll of a tree %d levels deep under RLIMIT_NOFILE=%d = %q, want EMFILE: the probe no longer shows the attack", depth, removeFdLimit, rep.Err)
	}
	if _, err := os.Lstat(filepath.Join(tree, "d")); err != nil {
		t.Fatalf("after the failed os.RemoveAll: %v, want the tree still there", err)
	}

	rep = runRemoveChild(t, "archive", tree)
	if rep.Err != "" {
		t.Fatalf("RemoveAll of a tree %d levels deep under RLIMIT_NOFILE=%d = %s", depth, removeFdLimit, rep.Err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after RemoveAll: Lstat = %v, want the tree gone", err)
	}
	t.Logf("RemoveAll held at most %d descriptors beyond those before", rep.MaxFds)
	if rep.MaxFds > maxWalkFds+4 {
		t.Errorf("RemoveAll held %d descriptors, want at most %d", rep.MaxFds, maxWalkFds+4)
	}
}

// runRemoveChild removes tree in a child process (this test binary again),
// with os.RemoveAll (mode "os") or RemoveAll (mode "archive"), and returns
// what the child reports.
func runRemoveChild(t *testing.T, mode, tree string) removeReport {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRemoveAllDeepUnderFdLimit$", "-test.v")
	cmd.Env = append(os.Environ(), "ARCHIVE_TEST_REMOVE="+mode, "ARCHIVE_TEST_REMOVE_DIR="+tree)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
		t.Fatalf("child (%s) under RLIMIT_NOFILE=%d: %v\n%s", mode, removeFdLimit, err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "REMOVEALL "); ok {
			var rep removeReport
			if err := json.Unmarshal([]byte(line), &rep); err != nil {
				t.Fatalf("child (%s) report %q: %v", mode, line, err)
			}
			t.Logf("child (%s): %+v", mode, rep)
			return rep
		}
	}
	t.Fatalf("child (%s) printed no report:\n%s", mode, out)
	return removeReport{}
}

// removeAllChild is the child's side of TestRemoveAllDeepUnderFdLimit.
func removeAllChild(t *testing.T, mode, tree string) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: removeFdLimit, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	before, most := openFds(t), 0
	defer func(f func(int)) { removeAllEntered = f }(removeAllEntered)
	removeAllEntered = func(depth int) {
		if depth%100 == 0 {
			most = max(most, openFds(t)-before)
		}
	}
	var err error
	switch mode {
	case "os":
		err = os.RemoveAll(tree)
	case "archive":
		err = RemoveAll(tree)
	default:
		t.Fatalf("mode %q", mode)
	}
	rep := removeReport{EMFILE: errors.Is(err, unix.EMFILE), MaxFds: most}
	if err != nil {
		rep.Err = err.Error()
		if len(rep.Err) > 400 {
			rep.Err = rep.Err[:200] + "…" + rep.Err[len(rep.Err)-200:]
		}
	}
	b, _ := json.Marshal(rep)
	fmt.Printf("REMOVEALL %s\n", b)
}

// TestRemoveAllSymlinks checks that RemoveAll unlinks symlinks and never
// follows one: what they point to outside the tree survives.
func TestRemoveAllSymlinks(t *testing.T) {
	s := newSandbox(t)
	sub := filepath.Join(s.dest, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		filepath.Join(s.dest, "hostdir"): s.host,
		filepath.Join(s.dest, "secret"):  s.secret,
		filepath.Join(sub, "up"):         s.host,
		filepath.Join(sub, "rel"):        "../../host",
		filepath.Join(sub, "dangling"):   "/nonexistent",
		filepath.Join(sub, "loop"):       "loop",
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveAll(s.dest); err != nil {
		t.Fatalf("RemoveAll = %v", err)
	}
	if _, err := os.Lstat(s.dest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after RemoveAll: Lstat = %v, want the tree gone", err)
	}
	if b, err := os.ReadFile(s.secret); err != nil || string(b) != "host secret" {
		t.Errorf("the host's file after RemoveAll: %q, %v, want it untouched", b, err)
	}

	// A symlink given as the path itself is removed, as os.RemoveAll does.
	link := filepath.Join(s.parent, "link")
	if err := os.Symlink(s.host, link); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(link); err != nil {
		t.Fatalf("RemoveAll(a symlink to a directory) = %v", err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after RemoveAll(link): Lstat = %v, want the link gone", err)
	}
	if _, err := os.Stat(s.secret); err != nil {
		t.Errorf("the link's target after RemoveAll(link): %v, want it untouched", err)
	}
}

// TestRemoveAllCases removes small trees and odd paths, and checks that
// os.RemoveAll agrees on each.
func TestRemoveAllCases(t *testing.T) {
	cases := []struct {
		name string
		root bool // needs root (CAP_DAC_OVERRIDE) for both
		// setup makes what is to be removed in dir and returns the path to
		// give RemoveAll.
		setup   func(t *testing.T, dir string) string
		wantErr bool
		gone    bool // the path is gone afterwards
	}{
		{name: "empty path", setup: func(t *testing.T, dir string) string { return "" }},
		{name: "missing", gone: true, setup: func(t *testing.T, dir string) string {
			return filepath.Join(dir, "missing")
		}},
		{name: "missing parent", gone: true, setup: func(t *testing.T, dir string) string {
			return filepath.Join(dir, "missing", "x")
		}},
		{name: "parent is a file", wantErr: true, setup: func(t *testing.T, dir string) string {
			mkfile(t, filepath.Join(dir, "file"))
			return filepath.Join(dir, "file", "x")
		}},
		{name: "empty dir", gone: true, setup: func(t *testing.T, dir string) string {
			mkdir(t, filepath.Join(dir, "empty"), 0o755)
			return filepath.Join(dir, "empty")
		}},
		{name: "file", gone: true, setup: func(t *testing.T, dir string) string {
			mkfile(t, filepath.Join(dir, "file"))
			return filepath.Join(dir, "file")
		}},
		{name: "fifo", gone: true, setup: func(t *testing.T, dir string) string {
			if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "fifo")
		}},
		{name: "trailing slash", gone: true, setup: func(t *testing.T, dir string) string {
			mkdir(t, filepath.Join(dir, "tree"), 0o755)
			mkfile(t, filepath.Join(dir, "tree", "f"))
			return filepath.Join(dir, "tree") + "/"
		}},
		{name: "ends in dot", wantErr: true, setup: func(t *testing.T, dir string) string {
			mkdir(t, filepath.Join(dir, "tree"), 0o755)
			return filepath.Join(dir, "tree") + "/."
		}},
		{name: "read-only dirs", root: true, gone: true, setup: func(t *testing.T, dir string) string {
			top := filepath.Join(dir, "ro")
			mkdir(t, top, 0o755)
			mkdir(t, filepath.Join(top, "none"), 0o755)
			mkfile(t, filepath.Join(top, "none", "f"))
			mkfile(t, filepath.Join(top, "f"))
			os.Chmod(filepath.Join(top, "none"), 0)
			os.Chmod(top, 0o555)
			return top
		}},
		{name: "wide", gone: true, setup: func(t *testing.T, dir string) string {
			top := filepath.Join(dir, "wide")
			mkdir(t, top, 0o755)
			for i := range 2000 {
				mkfile(t, filepath.Join(top, "f"+strconv.Itoa(i)))
			}
			for i := range 50 {
				mkdir(t, filepath.Join(top, "d"+strconv.Itoa(i)), 0o755)
				mkfile(t, filepath.Join(top, "d"+strconv.Itoa(i), "f"))
			}
			return top
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.root {
				testenv.RequireRoot(t, "permission bits stop os.RemoveAll too")
			}
			for _, f := range []struct {
				name string
				fn   func(string) error
			}{{"os.RemoveAll", os.RemoveAll}, {"RemoveAll", RemoveAll}} {
				p := c.setup(t, removableTempDir(t))
				err := f.fn(p)
				if (err != nil) != c.wantErr {
					t.Errorf("%s(%q) = %v, want error: %v", f.name, p, err, c.wantErr)
				}
				if _, err := os.Lstat(p); c.gone && !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("after %s(%q): Lstat = %v, want it gone", f.name, p, err)
				}
			}
		})
	}
}

func mkdir(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mkfile(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRemoveAllMovedDirectory moves a directory that RemoveAll is inside to
// a place outside the tree. Going back up through "..", RemoveAll then finds
// a directory it did not come from, and must stop there rather than remove
// anything in it: the outside directory's files survive. With two
// descriptors the parent was released and is reopened through ".."; with the
// default it is still open and checked all the same.
func TestRemoveAllMovedDirectory(t *testing.T) {
	for _, fds := range []int{2, maxWalkFds} {
		t.Run("fds="+strconv.Itoa(fds), func(t *testing.T) {
			defer func(n int) { maxWalkFds = n }(maxWalkFds)
			maxWalkFds = fds
			dir := t.TempDir()
			tree, outside := filepath.Join(dir, "tree"), filepath.Join(dir, "outside")
			mkdir(t, tree, 0o755)
			mkdir(t, outside, 0o755)
			mkfile(t, filepath.Join(outside, "precious"))
			deepTree(t, tree, 12)
			defer func(f func(int)) { removeAllEntered = f }(removeAllEntered)
			moved := false
			removeAllEntered = func(depth int) {
				if depth == 10 && !moved {
					moved = true
					// Level 5, below level 4 (released when fds=2), moves out.
					if err := os.Rename(filepath.Join(tree, "d/d/d/d/d"), filepath.Join(outside, "d")); err != nil {
						t.Error(err)
					}
				}
			}
			before := openFds(t)
			err := RemoveAll(tree)
			if !errors.Is(err, errMoved) {
				t.Errorf("RemoveAll = %v, want errMoved", err)
			}
			if n := openFds(t); n != before {
				t.Errorf("%d descriptors open after RemoveAll stopped, %d before", n, before)
			}
			if _, err := os.Stat(filepath.Join(outside, "precious")); err != nil {
				t.Errorf("the outside directory's file: %v, want it untouched", err)
			}
			if _, err := os.Stat(filepath.Join(tree, "d/d/d/d")); err != nil {
				t.Errorf("level 4, where the walk stopped: %v, want it left", err)
			}
		})
	}
}

// TestRemoveAllRefilled creates entries in directories RemoveAll has already
// listed: it lists them again and removes those too. A program that keeps
// creating entries makes it give up after maxRemoveRounds rounds instead of
// keeping the server busy for ever.
func TestRemoveAllRefilled(t *testing.T) {
	defer func(f func(int)) { removeAllEntered = f }(removeAllEntered)
	tree := filepath.Join(t.TempDir(), "tree")
	mkdir(t, tree, 0o755)
	deepTree(t, tree, 5)
	late := false
	removeAllEntered = func(depth int) {
		if depth == 3 && !late {
			late = true
			mkfile(t, filepath.Join(tree, "late"))
			mkdir(t, filepath.Join(tree, "d/d/late"), 0o755)
		}
	}
	if err := RemoveAll(tree); err != nil {
		t.Fatalf("RemoveAll with entries created meanwhile = %v", err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after RemoveAll: Lstat = %v, want the tree gone", err)
	}

	mkdir(t, tree, 0o755)
	n := 0
	removeAllEntered = func(depth int) {
		if depth == 1 {
			// Every directory entered at the top makes another one there.
			n++
			mkdir(t, filepath.Join(tree, "again"+strconv.Itoa(n)), 0o755)
		}
	}
	mkdir(t, filepath.Join(tree, "again0"), 0o755)
	before := openFds(t)
	if err := RemoveAll(tree); !errors.Is(err, errRefilled) {
		t.Errorf("RemoveAll of a directory that keeps refilling = %v, want errRefilled", err)
	}
	if n := openFds(t); n != before {
		t.Errorf("%d descriptors open after RemoveAll gave up, %d before", n, before)
	}
	if n != maxRemoveRounds+1 {
		t.Errorf("RemoveAll listed the directory %d times, want %d", n, maxRemoveRounds+1)
	}
}

// TestRemoveAllMountPoint mounts a file system inside the tree, as a
// distro's bind mount of the host left behind would be: RemoveAll must not
// remove what is on it, and removes all the rest.
func TestRemoveAllMountPoint(t *testing.T) {
	testenv.RequireRoot(t, "mounts a tmpfs")
	tree := filepath.Join(t.TempDir(), "tree")
	mnt := filepath.Join(tree, "mnt", "host")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		testenv.SkipOrFailf(t, "mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	mkfile(t, filepath.Join(mnt, "keep"))
	mkfile(t, filepath.Join(tree, "f"))
	mkfile(t, filepath.Join(tree, "mnt", "f"))
	deepTree(t, filepath.Join(tree, "mnt"), 50)
	if err := RemoveAll(tree); !errors.Is(err, errMountPoint) {
		t.Errorf("RemoveAll of a tree with a mount point = %v, want errMountPoint", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "keep")); err != nil {
		t.Errorf("the file on the mounted file system: %v, want it untouched", err)
	}
	// The rest is removed: only the mount point and the directories above
	// it are left.
	for _, dir := range []string{tree, filepath.Join(tree, "mnt")} {
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 1 {
			t.Errorf("after RemoveAll: %s holds %v (%v), want only the way to the mount point", dir, ents, err)
		}
	}
}
