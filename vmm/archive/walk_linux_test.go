package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
		if strings.Count(e.Path(), "/") == 9 && !moved {
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
		seen = append(seen, e.Path())
		if e.Path() == "skip" {
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

// branchyTree makes below dir a chain of depth levels, each holding width
// files with 24-byte names (a listing of more than one getdents64 batch) and
// the directories d0, d1 and d2: d0 is the next level, d1 and d2 hold a file
// each. It returns how many entries are below dir.
func branchyTree(t *testing.T, dir string, depth, width int) int {
	t.Helper()
	n := 0
	for range depth {
		for i := range width {
			mkfile(t, filepath.Join(dir, fmt.Sprintf("file-%019d", i)))
		}
		for _, d := range []string{"d0", "d1", "d2"} {
			mkdir(t, filepath.Join(dir, d), 0o755)
		}
		mkfile(t, filepath.Join(dir, "d1", "f"))
		mkfile(t, filepath.Join(dir, "d2", "f"))
		n += width + 3 + 2
		dir = filepath.Join(dir, "d0")
	}
	return n
}

// TestWalkResumesReleasedListings walks, with two descriptors, a tree whose
// levels hold more entries than one batch: the walk releases the levels
// above, and when it climbs back to one it resumes the listing where it was
// left, from the offset getdents64 gave. It must visit every entry once, in
// either order, and RemoveAll, which resumes the same way, remove them all.
func TestWalkResumesReleasedListings(t *testing.T) {
	defer func(n int) { maxWalkFds = n }(maxWalkFds)
	maxWalkFds = 2
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	mkdir(t, tree, 0o755)
	n := branchyTree(t, tree, 10, 300)
	var want []string
	filepath.WalkDir(tree, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(tree, p)
		if rel == "." {
			rel = ""
		}
		want = append(want, rel)
		return nil
	})
	if len(want) != n+1 {
		t.Fatalf("filepath.WalkDir saw %d entries, want %d", len(want), n+1)
	}
	slices.Sort(want)
	for _, sorted := range []bool{false, true} {
		var got []string
		err := Walk(context.Background(), tree, WalkOptions{Sorted: sorted}, func(e *WalkEntry) error {
			got = append(got, e.Path())
			return nil
		})
		if err != nil {
			t.Fatalf("Walk(Sorted: %v) = %v", sorted, err)
		}
		if sorted && !slices.IsSortedFunc(got, func(a, b string) int {
			return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
		}) {
			t.Errorf("Walk(Sorted: true) did not visit in name order")
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("Walk(Sorted: %v) visited %d entries, want the %d filepath.WalkDir visits, each once", sorted, len(got), len(want))
		}
	}
	if u, err := DiskUsage(context.Background(), tree); err != nil || u.Entries != int64(n+1) {
		t.Errorf("DiskUsage = %+v, %v, want %d entries", u, err, n+1)
	}
	if err := RemoveAll(tree); err != nil {
		t.Fatalf("RemoveAll = %v", err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after RemoveAll: Lstat = %v, want the tree gone", err)
	}
}

// TestWalkGrowingDirectory creates three entries in a directory for each
// entry the walk visits there: the walk, which reads the directory as it
// goes (in several batches here), must not follow the new ones for ever, but
// stop at as many as the directory held when it was opened.
func TestWalkGrowingDirectory(t *testing.T) {
	const entries = 1000
	dir := t.TempDir()
	for i := range entries {
		mkfile(t, filepath.Join(dir, fmt.Sprintf("file-%040d", i)))
	}
	visited, made := 0, 0
	err := Walk(context.Background(), dir, WalkOptions{}, func(e *WalkEntry) error {
		if e.Dir < 0 {
			return nil
		}
		visited++
		if visited > 20*entries {
			return errors.New("still walking")
		}
		for range 3 {
			made++
			if err := unix.Mknodat(e.Dir, fmt.Sprintf("new-%041d", made), unix.S_IFREG|0o644, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || visited > entries {
		t.Errorf("Walk of a directory of %d entries that grows = %v, after %d entries, want at most %d", entries, err, visited, entries)
	}
}

// TestWalkSortedBound checks that a sorted walk (an export) holds at most
// maxSortedBytes of names, those of the directories on its path together,
// and says so when a tree needs more.
func TestWalkSortedBound(t *testing.T) {
	defer func(n int) { maxSortedBytes = n }(maxSortedBytes)
	dir := t.TempDir()
	mkdir(t, filepath.Join(dir, "sub"), 0o755)
	for i := range 150 {
		mkfile(t, filepath.Join(dir, fmt.Sprintf("f%03d", i)))
		mkfile(t, filepath.Join(dir, "sub", fmt.Sprintf("g%03d", i)))
	}
	// Each name counts 4 bytes and sortedNameCost: about 5,400 bytes for
	// each directory, 10,800 for both.
	maxSortedBytes = 12000
	var n countWriter
	if err := Write(context.Background(), &n, dir, Tar); err != nil {
		t.Fatalf("Write within the bound = %v", err)
	}
	maxSortedBytes = 8000
	err := Write(context.Background(), &n, dir, Tar)
	if !errors.Is(err, errTooManyNames) || !strings.Contains(err.Error(), `"sub"`) {
		t.Errorf("Write of two directories over the bound together = %v, want errTooManyNames for sub", err)
	}
	// Unsorted walks read in batches and have no such bound.
	maxSortedBytes = 100
	if _, err := DiskUsage(context.Background(), dir); err != nil {
		t.Errorf("DiskUsage = %v", err)
	}
}

// TestWriteHardLinkNames checks that an export holds the name of a
// multiply linked file only until its last link is written, and stops,
// rather than hold more than maxExportLinkBytes, when too many files have
// links still to come.
func TestWriteHardLinkNames(t *testing.T) {
	defer func(n int) { maxExportLinkBytes = n }(maxExportLinkBytes)
	maxExportLinkBytes = 1000 // about 14 names
	near, far := t.TempDir(), t.TempDir()
	for _, d := range []string{"a", "b", "c"} {
		mkdir(t, filepath.Join(near, d), 0o755)
		mkdir(t, filepath.Join(far, d), 0o755)
	}
	for i := range 50 {
		// near: each file's links are next to each other in name order.
		f := filepath.Join(near, "a", fmt.Sprintf("f%02d", i))
		mkfile(t, f)
		if err := os.Link(f, f+".link"); err != nil {
			t.Fatal(err)
		}
		// far: all first links in b, all second ones in c.
		g := filepath.Join(far, "b", fmt.Sprintf("x%02d", i))
		mkfile(t, g)
		if err := os.Link(g, filepath.Join(far, "c", fmt.Sprintf("y%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, near, Tar); err != nil {
		t.Fatalf("Write of files whose links are adjacent = %v", err)
	}
	links := 0
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeLink {
			links++
			if h.Name != h.Linkname+".link" {
				t.Errorf("hard link %q to %q, want to its first name", h.Name, h.Linkname)
			}
		}
	}
	if links != 50 {
		t.Errorf("the archive has %d hard links, want 50", links)
	}
	var n countWriter
	if err := Write(context.Background(), &n, far, Tar); !errors.Is(err, errTooManyLinks) {
		t.Errorf("Write of 50 files whose second links all come last = %v, want errTooManyLinks", err)
	}
}

// TestDiskUsageManyLinks checks that past maxUsageLinks remembered files,
// a multiply linked file's shares at each of its links add up to what
// remembering it counts.
func TestDiskUsageManyLinks(t *testing.T) {
	defer func(n int) { maxUsageLinks = n }(maxUsageLinks)
	dir := t.TempDir()
	for i := range 30 {
		f := filepath.Join(dir, "f"+strconv.Itoa(i))
		if err := os.WriteFile(f, bytes.Repeat([]byte("x"), 1000*i+1), 0o644); err != nil {
			t.Fatal(err)
		}
		for j := range i%3 + 1 {
			if err := os.Link(f, fmt.Sprintf("%s.%d", f, j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, err := DiskUsage(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{0, 7} {
		maxUsageLinks = limit
		if got, err := DiskUsage(context.Background(), dir); err != nil || got != want {
			t.Errorf("DiskUsage remembering %d files = %+v, %v, want %+v", limit, got, err, want)
		}
	}
}

// TestParseDirentMalformed checks that a record getdents64 would never
// write is an error, not a panic or a loop.
func TestParseDirentMalformed(t *testing.T) {
	rec := make([]byte, 24)
	binary.NativeEndian.PutUint64(rec, 1)
	copy(rec[direntHeader:], "ab")
	for _, c := range []struct {
		name   string
		reclen int
		b      []byte
	}{
		{"short", 24, rec[:10]},
		{"zero length", 0, rec},
		{"no name", direntHeader, rec},
		{"past the end", 32, rec},
	} {
		binary.NativeEndian.PutUint16(rec[16:], uint16(c.reclen))
		if _, _, _, err := parseDirent(c.b); err == nil {
			t.Errorf("parseDirent(%s) = nil error", c.name)
		}
	}
	binary.NativeEndian.PutUint16(rec[16:], 24)
	if name, _, size, err := parseDirent(rec); err != nil || string(name) != "ab" || size != 24 {
		t.Errorf("parseDirent = %q, %d, %v, want ab, 24", name, size, err)
	}
}
