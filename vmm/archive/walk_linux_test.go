package archive

import (
	"bytes"
	"context"
	"errors"
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

// deepTree makes a chain of depth directories named "d" below dir, with a
// file "f<level>" every 1000 levels and at the bottom. It goes by file
// descriptor: the path is far longer than PATH_MAX.
func deepTree(t testing.TB, dir string, depth int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= depth; i++ {
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
		}
		nfd, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = nfd
		if i%1000 == 0 || i == depth {
			ffd, err := unix.Openat(fd, "f"+strconv.Itoa(i), unix.O_WRONLY|unix.O_CREAT, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			unix.Write(ffd, []byte("level "+strconv.Itoa(i)))
			unix.Close(ffd)
		}
	}
	unix.Close(fd)
}

func openFds(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestWalkBoundedFds walks a tree 3,000 levels deep and counts the open
// descriptors as it goes: a walk that held one per level would end near
// 3,000.
func TestWalkBoundedFds(t *testing.T) {
	const depth = 3000
	dir := t.TempDir()
	deepTree(t, dir, depth)
	before, most := openFds(t), 0
	var dirs, files int
	err := Walk(context.Background(), dir, WalkOptions{}, func(e *WalkEntry) error {
		if e.Stat.Mode&unix.S_IFMT == unix.S_IFDIR {
			dirs++
		} else {
			files++
		}
		if (dirs+files)%50 == 0 {
			most = max(most, openFds(t)-before)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Walk = %v", err)
	}
	if dirs != depth+1 || files != depth/1000 {
		t.Errorf("Walk saw %d directories and %d files, want %d and %d", dirs, files, depth+1, depth/1000)
	}
	t.Logf("at most %d descriptors open beyond the %d before", most, before)
	if most > maxWalkFds+4 {
		t.Errorf("Walk held %d descriptors, want at most %d", most, maxWalkFds+4)
	}
	if n := openFds(t); n != before {
		t.Errorf("%d descriptors open after Walk, %d before", n, before)
	}
}

// TestDeepTreeUnderFdLimit exports a tree 5,000 levels deep, sums its disk
// usage and imports an archive with a name 2,000 levels deep, all in a
// process whose RLIMIT_NOFILE is 300: a walk holding a descriptor per
// level ran out of them, for the whole server.
func TestDeepTreeUnderFdLimit(t *testing.T) {
	if dir := os.Getenv("ARCHIVE_TEST_DEEP_TREE"); dir != "" {
		deepTreeChild(t, dir)
		return
	}
	dir := t.TempDir()
	deepTree(t, dir, 5000)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeepTreeUnderFdLimit$", "-test.v")
	cmd.Env = append(os.Environ(), "ARCHIVE_TEST_DEEP_TREE="+dir)
	out, err := cmd.CombinedOutput()
	t.Logf("child: %s", out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
		t.Errorf("child under RLIMIT_NOFILE=300: %v", err)
	}
}

func deepTreeChild(t *testing.T, dir string) {
	dest := t.TempDir()
	var old unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &old)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 300, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	// Before TempDir's cleanup: os.RemoveAll holds a descriptor per level.
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
	ctx := context.Background()
	var n countWriter
	if err := Write(ctx, &n, dir, Tar); err != nil {
		t.Fatalf("Write = %v", err)
	}
	t.Logf("exported %d bytes", n)
	u, err := DiskUsage(ctx, dir)
	if err != nil || u.Entries != 5000+1+5 {
		t.Fatalf("DiskUsage = %+v, %v, want %d entries", u, err, 5000+1+5)
	}
	name := strings.Repeat("d/", 2000) + "f"
	st, err := Extract(ctx, bytes.NewReader(mkTar(t, file(name, "deep"))), dest, Limits{})
	if err != nil {
		t.Fatalf("Extract of a name %d levels deep = %v", 2000, err)
	}
	t.Logf("imported %+v", st)
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// TestWalkMovedDirectory moves a directory that the walk has released while
// it is below it: climbing back through ".." then finds another directory,
// and the walk must stop rather than go on in the wrong place.
func TestWalkMovedDirectory(t *testing.T) {
	defer func(n int) { maxWalkFds = n }(maxWalkFds)
	maxWalkFds = 2
	dir := t.TempDir()
	deepTree(t, dir, 12)
	moved := false
	err := Walk(context.Background(), dir, WalkOptions{}, func(e *WalkEntry) error {
		if strings.Count(e.Path, "/") == 9 && !moved {
			moved = true
			// Level 4 is released by now; move level 5 up to the root.
			return os.Rename(filepath.Join(dir, "d/d/d/d/d"), filepath.Join(dir, "moved"))
		}
		return nil
	})
	if !errors.Is(err, errMoved) {
		t.Errorf("Walk = %v, want errMoved", err)
	}
}

// TestWalkSymlinksAndSkip checks that Walk never follows a symlink, and
// that fs.SkipDir skips a directory.
func TestWalkSymlinksAndSkip(t *testing.T) {
	s := newSandbox(t)
	os.Symlink(s.host, filepath.Join(s.dest, "host"))
	os.MkdirAll(filepath.Join(s.dest, "skip/inner"), 0o755)
	os.MkdirAll(filepath.Join(s.dest, "keep"), 0o755)
	var seen []string
	err := Walk(context.Background(), s.dest, WalkOptions{Sorted: true}, func(e *WalkEntry) error {
		seen = append(seen, e.Path)
		if e.Path == "skip" {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil || strings.Join(seen, ",") != ",host,keep,skip" {
		t.Errorf("Walk = %v, saw %q, want the root, host (not entered), keep, skip", err, seen)
	}
}

// TestDiskUsage compares DiskUsage with du -sx.
func TestDiskUsage(t *testing.T) {
	dir := filepath.Join(removableTempDir(t), "tree")
	os.Mkdir(dir, 0o755)
	buildTree(t, dir)
	f, _ := os.Create(filepath.Join(dir, "sparse"))
	f.WriteAt([]byte("end"), 1<<30)
	f.Close()
	u, err := DiskUsage(context.Background(), dir)
	if err != nil {
		t.Fatalf("DiskUsage = %v", err)
	}
	out, err := exec.Command("du", "-sx", "-B1", dir).Output()
	if err != nil {
		testenv.SkipOrFailf(t, "du: %v", err)
	}
	want, _ := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if u.Bytes != want || u.Apparent < 1<<30 {
		t.Errorf("DiskUsage = %+v, want %d bytes as du says, and the sparse file's size in Apparent", u, want)
	}
	if _, err := DiskUsage(context.Background(), filepath.Join(dir, "missing")); err == nil {
		t.Errorf("DiskUsage of a missing directory = nil error")
	}
}
