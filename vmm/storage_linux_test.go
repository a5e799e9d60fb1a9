package vmm

// Tests of version 2 storage through the Manager: real archive.Extract,
// real disk.Create (mkfs.ext4), and fakeV2Backend for what only a VM could
// do (export a tree out of an image).
//
// They are in package vmm, not vmm_test, for a reason beyond unexported
// names: vmm_test's lifecycle tests run vmmtest's in-process agent, whose
// reaper collects every child of the test binary, which would take mkfs's
// exit from os/exec. Package tests run before the external ones, so these
// run before any reaper exists (make test-unit runs with -count=1).

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/internal/testutil"
	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/disk"
)

const e2fsHint = "apt-get install e2fsprogs, or make deps"

// requireMkfs skips (or fails, strict) without mkfs.ext4.
func requireMkfs(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
		if _, err := os.Stat(p); err == nil {
			return
		}
	}
	testenv.SkipOrFailf(t, "needs mkfs.ext4 (%s)", e2fsHint)
}

// fakeV2Backend is a version 2 backend with no VM: distros "run" as
// fakeBackend's do, and ExportTree writes, with archive.Write, the tree the
// test says the distro's image holds (trees, by distro name), since only a
// guest may read an image. failAfter > 0 cuts the export off with
// errExportBroken after that many bytes; gate, when set, holds every export
// until it is closed, and entered is told each time one is held there.
type fakeV2Backend struct {
	*fakeBackend

	mu        sync.Mutex
	trees     map[string]string
	failAfter int64
	gate      chan struct{}
	entered   chan struct{}
	exports   int
}

var errExportBroken = errors.New("the VM went away mid-export")

func newFakeV2Backend(t *testing.T) *fakeV2Backend {
	return &fakeV2Backend{fakeBackend: newFakeBackend(t), trees: map[string]string{}}
}

var _ TreeExporter = (*fakeV2Backend)(nil)

func (f *fakeV2Backend) ExportTree(ctx context.Context, s Spec, w io.Writer, format archive.Format) error {
	f.mu.Lock()
	tree, fail, gate, entered := f.trees[s.Name], f.failAfter, f.gate, f.entered
	f.exports++
	f.mu.Unlock()
	if _, err := os.Stat(s.Disk); err != nil {
		return fmt.Errorf("fake backend: no image for %s: %w", s.Name, err)
	}
	if tree == "" {
		return fmt.Errorf("fake backend: the test gave no tree for %s", s.Name)
	}
	if gate != nil {
		entered <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail > 0 {
		w = &failingWriter{w: w, left: fail}
	}
	return archive.Write(ctx, w, tree, format)
}

// failingWriter passes left bytes, then fails.
type failingWriter struct {
	w    io.Writer
	left int64
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > f.left {
		n, _ := f.w.Write(p[:f.left])
		f.left = 0
		return n, errExportBroken
	}
	f.left -= int64(len(p))
	return f.w.Write(p)
}

// testTree makes a distro tree with what a conversion must keep: owners
// (as root), modes with setuid, a symlink, a hard link, a fifo, an xattr,
// a device node under dev/ (as root), and dataBytes of random data.
func testTree(t *testing.T, dataBytes int) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	for _, d := range []string{"etc", "bin", "dev", "home/user", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, content string, mode uint32) {
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		// chmod(2): past the umask, and with setuid (os.Chmod wants
		// os.ModeSetuid for that).
		if err := unix.Chmod(filepath.Join(root, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", 0o644)
	write("etc/group", "root:x:0:\nuser:x:1000:\n", 0o644)
	write("bin/busybox", "#!/bin/true\n", 0o4755)
	write("home/user/notes", "mine\n", 0o600)
	if err := os.Symlink("busybox", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "bin/busybox"), filepath.Join(root, "bin/ls")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "var/lib/fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(root, "etc/passwd"), "user.subsys", []byte("kept"), 0); err != nil {
		testenv.SkipPart(t, "no user xattrs in the test tree:", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(filepath.Join(root, "home/user"), 1000, 1000); err != nil {
			t.Fatal(err)
		}
		os.Lchown(filepath.Join(root, "home/user/notes"), 1000, 1000)
		if err := unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Logf("no device node in the test tree: %v", err)
		}
	}
	if dataBytes > 0 {
		b := make([]byte, dataBytes)
		rand.Read(b)
		write("var/lib/data", string(b), 0o644)
	}
	return root
}

// tarOf is the tree at root as a tarball.
func tarOf(t *testing.T, root string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := archive.Write(context.Background(), &buf, root, archive.Tar); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// treeSig describes every entry of the tree at root (type, mode, owner,
// content, link target, user xattrs, and which entries are one inode), to
// compare trees.
func treeSig(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		sig := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sig += fmt.Sprintf(" %x", sha256.Sum256(b))
			if first, ok := inodes[st.Ino]; ok {
				sig += " =" + first
			} else {
				inodes[st.Ino] = rel
			}
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			sig += " -> " + target
		case fi.Mode()&os.ModeDevice != 0:
			sig += fmt.Sprintf(" dev %d", st.Rdev)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			v := make([]byte, 64)
			if n, err := unix.Lgetxattr(p, "user.subsys", v); err == nil {
				sig += " xattr=" + string(v[:n])
			}
		}
		if rel != "." {
			out[rel] = sig
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, got, want string) {
	t.Helper()
	g, w := treeSig(t, got), treeSig(t, want)
	var diffs []string
	for k, v := range w {
		if g[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s: got %q, want %q", k, g[k], v))
		}
	}
	for k, v := range g {
		if _, ok := w[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: extra %q", k, v))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("tree %s differs from %s:\n%s", got, want, strings.Join(diffs, "\n"))
	}
}

// waitOp waits for op and returns its error.
func waitOp(t *testing.T, m *Manager, op *Operation) error {
	t.Helper()
	select {
	case <-op.Done():
	case <-time.After(2 * time.Minute):
		t.Fatalf("operation %s (%s) did not end", op.ID(), op.kind)
	}
	return op.Err()
}

// importV2 imports the tree at root as version 2 distro name.
func importV2(t *testing.T, m *Manager, name, root string, size int64) error {
	t.Helper()
	op, err := m.Import(context.Background(), ImportRequest{Name: name, Version: 2, Body: bytes.NewReader(tarOf(t, root)), SizeBytes: size})
	if err != nil {
		return err
	}
	return waitOp(t, m, op)
}

// noLeftovers fails when the data directory's staging or distros area,
// or dir when given, holds anything.
func noLeftovers(t *testing.T, data string, keep int, dirs ...string) {
	t.Helper()
	// A version 2 import removes its staging tree in the background, under
	// a ".removing-" name: wait for those to go, then nothing may be left.
	removing := func(dir string) bool {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.Contains(e.Name(), ".removing-") {
				return true
			}
		}
		return false
	}
	for _, dir := range append([]string{filepath.Join(data, "tmp")}, dirs...) {
		testutil.WaitFor(t, 30*time.Second, "background removal in "+dir, func() bool { return !removing(dir) })
	}
	if entries, _ := os.ReadDir(filepath.Join(data, "tmp")); len(entries) != 0 {
		t.Errorf("left in tmp/: %v", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(data, "distros")); len(entries) != keep {
		t.Errorf("distros/ holds %v, want %d distros", entries, keep)
	}
	for _, d := range dirs {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Errorf("left in %s: %v", d, entries)
		}
	}
}

// debugfsCat reads a file out of an image with debugfs, as only a test
// may: the server never runs e2fsprogs on an image a guest has used.
func debugfsCat(t *testing.T, image, path string) string {
	t.Helper()
	return debugfs(t, image, "cat "+path)
}

// debugfs runs one read-only debugfs request on image.
func debugfs(t *testing.T, image, request string) string {
	t.Helper()
	p := "/usr/sbin/debugfs"
	if _, err := os.Stat(p); err != nil {
		testenv.SkipOrFailf(t, "needs debugfs (%s)", e2fsHint)
	}
	out, err := exec.Command(p, "-R", request, image).Output()
	if err != nil {
		t.Fatalf("debugfs %s: %v", request, err)
	}
	return string(out)
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// TestImportV2: a tarball imported as version 2 becomes an image of the
// requested (or default) maximum size holding the tree, allocating at most
// the tree plus 150 MiB on the host; no staging is left; the usage is the
// image's allocation.
func TestImportV2(t *testing.T) {
	requireMkfs(t)
	m, _, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t), 2: newFakeV2Backend(t)})
	ctx := context.Background()
	tree := testTree(t, 8<<20)
	treeBytes := diskUsage(ctx, tree)
	for _, tc := range []struct {
		name string
		size int64
		want int64
	}{{"default", 0, DefaultDiskSize}, {"small", MinDiskSize, MinDiskSize}, {"odd", 1<<30 + 1000, 1 << 30}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := importV2(t, m, "v2-"+tc.name, tree, tc.size); err != nil {
				t.Fatal(err)
			}
			d, err := m.Get(ctx, "v2-"+tc.name)
			if err != nil || d.Version != 2 || d.State != StateStopped {
				t.Fatalf("Get = %+v, %v", d, err)
			}
			img := filepath.Join(d.Location, DiskImageName)
			apparent, allocated, err := disk.Usage(img)
			if err != nil {
				t.Fatal(err)
			}
			if apparent != tc.want {
				t.Errorf("image size %d, want %d", apparent, tc.want)
			}
			if allocated > treeBytes+150<<20 {
				t.Errorf("image allocates %d bytes for a tree of %d: more than 150 MiB over", allocated, treeBytes)
			}
			t.Logf("tree %d bytes, image allocates %d", treeBytes, allocated)
			if _, err := os.Stat(filepath.Join(d.Location, "rootfs")); err == nil {
				t.Error("a version 2 distro has a rootfs")
			}
			if got := m.storage(2).usage(ctx, storeRow(t, m, d.Name)); got != allocated {
				t.Errorf("usage = %d, want the allocation %d", got, allocated)
			}
			if got := debugfsCat(t, img, "/etc/passwd"); !strings.HasPrefix(got, "root:x:0:0") {
				t.Errorf("image's /etc/passwd = %q", got)
			}
		})
	}
	noLeftovers(t, data, 3)
}

func storeRow(t *testing.T, m *Manager, name string) store.Distro {
	t.Helper()
	d, err := m.row(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestImportV2Refused: requests refused before any work, with ErrInvalid
// or ErrUnsupported and a message that says why.
func TestImportV2Refused(t *testing.T) {
	ctx := context.Background()
	m, _, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t)})
	body := func() io.Reader { return bytes.NewReader(tinyTar(t)) }
	for _, tc := range []struct {
		name string
		req  ImportRequest
		want error
		text string
	}{
		{"size for version 1", ImportRequest{Name: "a", Version: 1, SizeBytes: 1 << 30, Body: body()}, ErrInvalid, "version 2 distros only"},
		{"size too small", ImportRequest{Name: "a", Version: 2, SizeBytes: 1 << 20, Body: body()}, ErrInvalid, "minimum"},
		{"size too large", ImportRequest{Name: "a", Version: 2, SizeBytes: 1 << 60, Body: body()}, ErrInvalid, "maximum"},
		{"raw image as version 1", ImportRequest{Name: "a", Version: 1, RawImage: true, Body: body()}, ErrInvalid, "version 2"},
		{"no version 2 backend", ImportRequest{Name: "a", Version: 2, Body: body()}, ErrUnsupported, "not available"},
		{"raw image, no version 2 backend", ImportRequest{Name: "a", RawImage: true, Body: body()}, ErrUnsupported, "version 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, err := m.Import(ctx, tc.req)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Import = %v, %v; want %v saying %q", op, err, tc.want, tc.text)
			}
		})
	}
	noLeftovers(t, data, 0)
}

// TestImportV2Fails: a tree too large for its disk, a cancelled upload,
// and an image that cannot be made leave nothing behind.
func TestImportV2Fails(t *testing.T) {
	requireMkfs(t)
	ctx := context.Background()
	m, _, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t), 2: newFakeV2Backend(t)})

	t.Run("tree beyond the disk size", func(t *testing.T) {
		loc := filepath.Join(t.TempDir(), "loc")
		op, err := m.Import(ctx, ImportRequest{Name: "big", Version: 2, Location: loc, SizeBytes: MinDiskSize, Body: bigTar(80 << 20)})
		if err != nil {
			t.Fatal(err)
		}
		if err := waitOp(t, m, op); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("import of 80 MiB into a 64 MiB disk = %v, want ErrTooLarge", err)
		}
		if _, err := os.Stat(loc); err == nil {
			t.Errorf("failed import left its location %s", loc)
		}
		noLeftovers(t, data, 0)
	})

	t.Run("cancelled upload", func(t *testing.T) {
		pr, pw := io.Pipe()
		op, err := m.Import(ctx, ImportRequest{Name: "cancelled", Version: 2, Body: pr})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			<-op.Cancelled()
			pw.CloseWithError(context.Canceled) // as the server stops an upload
		}()
		tw := tinyTar(t)
		if _, err := pw.Write(tw[:1024]); err != nil {
			t.Fatal(err)
		}
		if _, err := m.CancelOperation(ctx, op.ID()); err != nil {
			t.Fatal(err)
		}
		if err := waitOp(t, m, op); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled import = %v", err)
		}
		if _, err := m.Get(ctx, "cancelled"); !errors.Is(err, ErrNotFound) {
			t.Errorf("cancelled import left a distro: %v", err)
		}
		noLeftovers(t, data, 0)
	})

	t.Run("image cannot be made", func(t *testing.T) {
		swapDiskCreate(t, func(ctx context.Context, path, tree string, maxSize int64, opts disk.Options) error {
			if err := disk.Create(ctx, path, tree, maxSize, opts); err != nil {
				return err
			}
			return errors.New("injected failure after the image was made")
		})
		loc := filepath.Join(t.TempDir(), "loc")
		if err := os.Mkdir(loc, 0o700); err != nil {
			t.Fatal(err)
		}
		op, err := m.Import(ctx, ImportRequest{Name: "broken", Version: 2, Location: loc, Body: bytes.NewReader(tinyTar(t))})
		if err != nil {
			t.Fatal(err)
		}
		if err := waitOp(t, m, op); err == nil || !strings.Contains(err.Error(), "injected") {
			t.Fatalf("import = %v, want the injected failure", err)
		}
		noLeftovers(t, data, 0, loc)
	})
}

// swapDiskCreate replaces diskCreate for the test.
func swapDiskCreate(t *testing.T, f func(ctx context.Context, path, tree string, maxSize int64, opts disk.Options) error) {
	old := diskCreate
	diskCreate = f
	t.Cleanup(func() { diskCreate = old })
}

// testImage makes a raw ext4 image of the tree at root with disk.Create, as
// a user would bring one, and returns its path.
func testImage(t *testing.T, root string, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "user.img")
	if err := disk.Create(context.Background(), img, root, size, disk.Options{}); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestRawImage: a raw ext4 image imports as a version 2 distro byte for
// byte, its holes kept; it exports back the same (format img) once
// stopped, and clones the same. Images that are not ext4, or cut short,
// are refused with ErrInvalid and leave nothing.
func TestRawImage(t *testing.T) {
	requireMkfs(t)
	ctx := context.Background()
	v2 := newFakeV2Backend(t)
	m, _, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t), 2: v2})
	tree := testTree(t, 4<<20)
	const size = 256 << 20
	img := testImage(t, tree, size)
	want := fileHash(t, img)
	_, srcAlloc, _ := disk.Usage(img)

	op, err := m.Import(ctx, ImportRequest{Name: "raw", RawImage: true, Path: img})
	if err != nil {
		t.Fatal(err)
	}
	if err := waitOp(t, m, op); err != nil {
		t.Fatal(err)
	}
	d, _ := m.Get(ctx, "raw")
	if d.Version != 2 {
		t.Errorf("raw image imported as version %d", d.Version)
	}
	got := filepath.Join(d.Location, DiskImageName)
	if fileHash(t, got) != want {
		t.Fatal("imported image differs from the source")
	}
	if info := op.Info(); info.Progress.Done != size || info.Progress.Total != size {
		t.Errorf("progress %+v, want all of %d", info.Progress, size)
	}
	if _, alloc, _ := disk.Usage(got); alloc > srcAlloc+1<<20 {
		t.Errorf("imported image allocates %d, the source %d: holes were written", alloc, srcAlloc)
	}

	h := sha256.New()
	if err := m.Export(ctx, "raw", h, FormatImage); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Error("exported image differs")
	}
	if err := m.Export(ctx, "raw", io.Discard, archive.Tar); err == nil {
		t.Error("tar export of a distro the fake backend has no tree for worked")
	}
	v2.trees["raw"] = tree
	var tarball bytes.Buffer
	if err := m.Export(ctx, "raw", &tarball, archive.Tar); err != nil {
		t.Fatal(err)
	}

	cop, err := m.Clone(ctx, "raw", "raw-copy")
	if err != nil {
		t.Fatal(err)
	}
	if err := waitOp(t, m, cop); err != nil {
		t.Fatal(err)
	}
	c, _ := m.Get(ctx, "raw-copy")
	if c.Version != 2 || fileHash(t, filepath.Join(c.Location, DiskImageName)) != want {
		t.Errorf("clone %+v differs from its source", c)
	}
	if _, alloc, _ := disk.Usage(filepath.Join(c.Location, DiskImageName)); alloc > srcAlloc+1<<20 {
		t.Errorf("cloned image allocates %d, the source %d: holes were written", alloc, srcAlloc)
	}

	// Running: the image is the guest's; no copy of it.
	if _, err := m.Start(ctx, "raw"); err != nil {
		t.Fatal(err)
	}
	if err := m.Export(ctx, "raw", io.Discard, FormatImage); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "subsys terminate raw") {
		t.Errorf("image export of a running distro = %v, want ErrBusy naming subsys terminate", err)
	}
	if _, err := m.Clone(ctx, "raw", "raw-2"); !errors.Is(err, ErrBusy) {
		t.Errorf("clone of a running version 2 distro = %v, want ErrBusy", err)
	}
	if err := m.Export(ctx, "raw", io.Discard, archive.Tar); err != nil {
		t.Errorf("tar export of a running version 2 distro (the backend's) = %v", err)
	}
	noLeftovers(t, data, 2)

	b, _ := os.ReadFile(img)
	for name, src := range map[string]io.Reader{
		"a tarball": bytes.NewReader(tinyTar(t)),
		"too short": strings.NewReader("short"),
		"zeros":     bytes.NewReader(make([]byte, 1<<20)),
		"truncated": bytes.NewReader(b[:64<<20]),
	} {
		op, err := m.Import(ctx, ImportRequest{Name: "bad", RawImage: true, Body: src})
		if err != nil {
			t.Fatal(err)
		}
		if err := waitOp(t, m, op); !errors.Is(err, ErrInvalid) {
			t.Errorf("raw import of %s = %v, want ErrInvalid", name, err)
		}
	}
	noLeftovers(t, data, 2)

	v1op, err := m.Import(ctx, ImportRequest{Name: "one", Version: 1, Body: bytes.NewReader(tinyTar(t))})
	if err != nil || waitOp(t, m, v1op) != nil {
		t.Fatal(err)
	}
	if err := m.Export(ctx, "one", io.Discard, FormatImage); !errors.Is(err, ErrInvalid) {
		t.Errorf("image export of a version 1 distro = %v, want ErrInvalid", err)
	}
}

// TestSetVersion converts a distro to version 2 and back: the tree comes
// back whole (owners, modes, links, xattrs, devices), the row's version
// follows, and the other version's files are gone.
func TestSetVersion(t *testing.T) {
	requireMkfs(t)
	ctx := context.Background()
	v2 := newFakeV2Backend(t)
	m, _, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t), 2: v2})
	tree := testTree(t, 1<<20)
	op, err := m.Import(ctx, ImportRequest{Name: "d", Version: 1, Body: bytes.NewReader(tarOf(t, tree))})
	if err != nil || waitOp(t, m, op) != nil {
		t.Fatal(err, op.Err())
	}
	d, _ := m.Get(ctx, "d")
	rootfs, img := filepath.Join(d.Location, "rootfs"), filepath.Join(d.Location, DiskImageName)
	sameTree(t, rootfs, tree)

	op, err = m.SetVersion(ctx, "d", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get(ctx, "d"); got.State != StateConverting && op.Info().Status == StatusRunning {
		t.Errorf("state during conversion = %s", got.State)
	}
	if err := waitOp(t, m, op); err != nil {
		t.Fatal(err)
	}
	if info := op.Info(); info.Kind != KindSetVersion || info.Progress.Done != info.Progress.Total || info.Progress.Total == 0 || info.Result == nil {
		t.Errorf("operation %+v", info)
	}
	if got, _ := m.Get(ctx, "d"); got.Version != 2 || got.State != StateStopped {
		t.Errorf("after set-version 2: %+v", got)
	}
	if _, err := os.Stat(rootfs); err == nil {
		t.Error("rootfs left after conversion to version 2")
	}
	if got := debugfsCat(t, img, "/etc/passwd"); !strings.HasPrefix(got, "root:x:0:0") {
		t.Errorf("image's /etc/passwd = %q", got)
	}
	// What mkfs -d copies from staging (vmm/disk's tests check it all):
	// xattrs, one inode for hard links, owners, setuid.
	if got := debugfs(t, img, "ea_get /etc/passwd user.subsys"); !strings.Contains(got, `"kept"`) {
		t.Errorf("image's /etc/passwd xattr: %q", got)
	}
	inode := func(p string) string {
		out := debugfs(t, img, "stat "+p)
		line, _, _ := strings.Cut(out, "\n")
		return strings.Join(strings.Fields(line)[:6], " ")
	}
	if a, b := inode("/bin/busybox"), inode("/bin/ls"); a != b || !strings.Contains(a, "Mode: 04755") {
		t.Errorf("hard links /bin/busybox %q and /bin/ls %q", a, b)
	}
	if os.Geteuid() == 0 && !strings.Contains(debugfs(t, img, "stat /home/user"), "User:  1000   Group:  1000") {
		t.Error("image's /home/user lost its owner")
	}
	noLeftovers(t, data, 1)

	// Back: the fake VM exports what the image holds, which is the tree.
	v2.trees["d"] = tree
	op, err = m.SetVersion(ctx, "d", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitOp(t, m, op); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get(ctx, "d"); got.Version != 1 {
		t.Errorf("after set-version 1: %+v", got)
	}
	if _, err := os.Stat(img); err == nil {
		t.Error("disk.img left after conversion to version 1")
	}
	sameTree(t, rootfs, tree)
	noLeftovers(t, data, 1)

	// Refusals.
	for _, tc := range []struct {
		version int
		want    error
		text    string
	}{{1, ErrInvalid, "already version 1"}, {3, ErrInvalid, "use 1 or 2"}} {
		if _, err := m.SetVersion(ctx, "d", tc.version); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("SetVersion(%d) = %v, want %v saying %q", tc.version, err, tc.want, tc.text)
		}
	}
	if _, err := m.SetVersion(ctx, "nope", 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetVersion of no distro = %v", err)
	}
	if _, err := m.Start(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetVersion(ctx, "d", 2); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "subsys terminate d") {
		t.Errorf("SetVersion of a running distro = %v, want ErrBusy naming subsys terminate", err)
	}
	m1, _, _ := newTestManager(t, map[int]Backend{1: newFakeBackend(t)})
	op, err = m1.Import(ctx, ImportRequest{Name: "x", Version: 1, Body: bytes.NewReader(tinyTar(t))})
	if err != nil || waitOp(t, m1, op) != nil {
		t.Fatal(err)
	}
	if _, err := m1.SetVersion(ctx, "x", 2); !errors.Is(err, ErrUnsupported) {
		t.Errorf("SetVersion with no version 2 backend = %v, want ErrUnsupported", err)
	}
}

// TestSetVersionFails: a conversion that fails midway (the VM's export
// breaks; the image cannot be made; a cancel) leaves the distro as it was,
// usable, and no new files.
func TestSetVersionFails(t *testing.T) {
	requireMkfs(t)
	ctx := context.Background()
	v2 := newFakeV2Backend(t)
	m, _, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t), 2: v2})
	tree := testTree(t, 2<<20)
	loc := filepath.Join(t.TempDir(), "loc")

	// Version 2 to 1, the export failing after 1 MiB.
	if err := func() error {
		// 1 GiB, not the default 256: the test reads the image whole.
		op, err := m.Import(ctx, ImportRequest{Name: "two", Version: 2, Location: loc, SizeBytes: 1 << 30, Body: bytes.NewReader(tarOf(t, tree))})
		if err != nil {
			return err
		}
		return waitOp(t, m, op)
	}(); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(loc, DiskImageName)
	before := fileHash(t, img)
	v2.trees["two"], v2.failAfter = tree, 1<<20
	op, err := m.SetVersion(ctx, "two", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitOp(t, m, op); !errors.Is(err, errExportBroken) {
		t.Fatalf("conversion with a broken export = %v, want its error", err)
	}
	if d, _ := m.Get(ctx, "two"); d.Version != 2 || d.State != StateStopped {
		t.Errorf("after a failed conversion: %+v", d)
	}
	if fileHash(t, img) != before {
		t.Error("a failed conversion changed the image")
	}
	if entries, _ := os.ReadDir(loc); len(entries) != 1 {
		t.Errorf("a failed conversion left %v in the location", entries)
	}
	if _, err := m.Start(ctx, "two"); err != nil {
		t.Errorf("start after a failed conversion: %v", err)
	}
	m.Terminate(ctx, "two")

	// Start and SetVersion while one runs are refused; a cancel stops it.
	v2.failAfter = 0
	v2.gate, v2.entered = make(chan struct{}), make(chan struct{}, 1)
	op, err = m.SetVersion(ctx, "two", 1)
	if err != nil {
		t.Fatal(err)
	}
	<-v2.entered
	var busy *BusyError
	if _, err := m.Start(ctx, "two"); !errors.As(err, &busy) || busy.Op.Kind != KindSetVersion {
		t.Errorf("start during a conversion = %v, want a BusyError naming it", err)
	}
	if _, err := m.Update(ctx, "two", Update{DefaultUser: ptr("user")}); !errors.Is(err, ErrBusy) {
		t.Errorf("default user change during a conversion = %v, want ErrBusy", err)
	}
	if err := m.Unregister(ctx, "two"); !errors.Is(err, ErrBusy) {
		t.Errorf("unregister during a conversion = %v, want ErrBusy", err)
	}
	if _, err := m.CancelOperation(ctx, op.ID()); err != nil {
		t.Fatal(err)
	}
	if err := waitOp(t, m, op); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled conversion = %v", err)
	}
	v2.gate = nil
	if d, _ := m.Get(ctx, "two"); d.Version != 2 || fileHash(t, img) != before {
		t.Errorf("after a cancelled conversion: %+v", d)
	}
	if entries, _ := os.ReadDir(loc); len(entries) != 1 {
		t.Errorf("a cancelled conversion left %v in the location", entries)
	}

	// Version 1 to 2, the image failing once made.
	op, err = m.Import(ctx, ImportRequest{Name: "one", Version: 1, Body: bytes.NewReader(tarOf(t, tree))})
	if err != nil || waitOp(t, m, op) != nil {
		t.Fatal(err)
	}
	one, _ := m.Get(ctx, "one")
	swapDiskCreate(t, func(ctx context.Context, path, tree string, maxSize int64, opts disk.Options) error {
		if err := disk.Create(ctx, path, tree, maxSize, opts); err != nil {
			return err
		}
		return errors.New("injected failure after the image was made")
	})
	op, err = m.SetVersion(ctx, "one", 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitOp(t, m, op); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("conversion = %v, want the injected failure", err)
	}
	if d, _ := m.Get(ctx, "one"); d.Version != 1 {
		t.Errorf("after a failed conversion: %+v", d)
	}
	if _, err := os.Stat(filepath.Join(one.Location, DiskImageName)); err == nil {
		t.Error("a failed conversion left its image")
	}
	sameTree(t, filepath.Join(one.Location, "rootfs"), tree)
	noLeftovers(t, data, 1)
}

func ptr[T any](v T) *T { return &v }

// TestRecoverLeftovers: files of the version a distro's row does not name
// (a conversion a crash stopped) are removed when the next manager opens;
// the distro's own are kept.
func TestRecoverLeftovers(t *testing.T) {
	ctx := context.Background()
	m, db, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t)})
	loc := filepath.Join(t.TempDir(), "loc")
	op, err := m.Import(ctx, ImportRequest{Name: "d", Version: 1, Location: loc, Body: bytes.NewReader(tinyTar(t))})
	if err != nil || waitOp(t, m, op) != nil {
		t.Fatal(err)
	}
	m.Close()
	for _, p := range []string{DiskImageName, ".disk.img.tmp-42", ".mke2fs-1.conf", "notes"} {
		os.WriteFile(filepath.Join(loc, p), []byte("x"), 0o600)
	}
	os.MkdirAll(filepath.Join(loc, stagingName, "etc"), 0o755)
	m2, err := New(ctx, Config{Store: db, DataDir: data, Backends: map[int]Backend{1: newFakeBackend(t)}, Logger: m.log})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	var names []string
	entries, _ := os.ReadDir(loc)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "notes rootfs" {
		t.Errorf("after recovery the location holds %v, want notes (not subsys's) and rootfs", names)
	}
}

// TestWriteSparse: zero blocks become holes, the length is kept, a body
// over the maximum is ErrTooLarge.
func TestWriteSparse(t *testing.T) {
	data := make([]byte, 8<<20)
	copy(data[4096:], "data")
	copy(data[3<<20:], bytes.Repeat([]byte{1}, 1<<20))
	data = append(data, make([]byte, 100)...) // a tail of zeros, shorter than a block
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := writeSparse(context.Background(), f, bytes.NewReader(data), 1<<30, func(int64) error { return nil })
	if err != nil || n != int64(len(data)) {
		t.Fatalf("writeSparse = %d, %v", n, err)
	}
	got, _ := os.ReadFile(f.Name())
	if !bytes.Equal(got, data) {
		t.Error("content differs")
	}
	if _, alloc, _ := disk.Usage(f.Name()); alloc > 1<<20+64<<10 {
		t.Errorf("allocates %d bytes for 1 MiB of data", alloc)
	}
	g, _ := os.Create(filepath.Join(t.TempDir(), "img2"))
	defer g.Close()
	if _, err := writeSparse(context.Background(), g, bytes.NewReader(data), 4<<20, func(int64) error { return nil }); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the maximum: %v, want ErrTooLarge", err)
	}
}

// TestImportV2Reserve: a version 2 import keeps the reserve through the
// image's making too (tree and image are both on the disk at once): on a
// file system where the tree fits above the reserve but not the tree and
// its image, it fails with ErrInsufficientStorage and leaves nothing.
func TestImportV2Reserve(t *testing.T) {
	requireMkfs(t)
	mnt := smallFS(t, "96m")
	m, _, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t), 2: newFakeV2Backend(t)})
	ctx := context.Background()
	pct := 40 // 38 MiB
	if _, err := m.UpdateSettings(ctx, SettingsUpdate{ImportReservePercent: &pct}); err != nil {
		t.Fatal(err)
	}
	loc := filepath.Join(mnt, "distro")
	op, err := m.Import(ctx, ImportRequest{Name: "big", Version: 2, Location: loc, Body: bigTar(24 << 20)})
	if err != nil {
		t.Fatal(err)
	}
	err = waitOp(t, m, op)
	var ise *archive.InsufficientStorageError
	if !errors.Is(err, ErrInsufficientStorage) || !errors.As(err, &ise) || ise.Reserve == 0 {
		t.Fatalf("import = %v, want ErrInsufficientStorage with the reserve", err)
	}
	t.Logf("error: %v", err)
	if entries, _ := os.ReadDir(mnt); len(entries) != 0 {
		t.Errorf("failed import left %v", entries)
	}
	noLeftovers(t, data, 0)
}
