package vmm

// Tests of Manager.Move on real file systems: the test's temporary
// directory, and tmpfs mounts (smallFS) for another file system, so they
// run as root. Version 2 distros are a row and a sparse file of random
// blocks: a move copies the image as bytes and never reads it as ext4.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testutil"
	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// moveAndWait moves distro name to loc and returns the operation's error.
func moveAndWait(t *testing.T, m *Manager, name, loc string) (*Operation, error) {
	t.Helper()
	op, err := m.Move(context.Background(), name, loc)
	if err != nil {
		return nil, err
	}
	return op, waitOp(t, m, op)
}

// importV1 imports the tree at root as version 1 distro name in the data
// directory and returns it.
func importV1(t *testing.T, m *Manager, name, root string) Distro {
	t.Helper()
	op, err := m.Import(context.Background(), ImportRequest{Name: name, Version: 1, Body: bytes.NewReader(tarOf(t, root))})
	if err != nil {
		t.Fatal(err)
	}
	if err := waitOp(t, m, op); err != nil {
		t.Fatal(err)
	}
	d, err := m.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// inode is p's device and inode: the same after a rename, not after a copy.
func inode(t *testing.T, p string) [2]uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return [2]uint64{st.Dev, st.Ino}
}

// names lists dir's entries.
func names(dir string) string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return strings.Join(out, " ")
}

// gone fails when p exists.
func gone(t *testing.T, p, why string) {
	t.Helper()
	if _, err := os.Lstat(p); err == nil {
		t.Errorf("%s: %s is left (holding %q)", why, p, names(p))
	}
}

// noUserXattrOn drops the test tree's user xattr when the file system at
// mnt cannot keep one (tmpfs before Linux 6.6), so trees still compare.
func noUserXattrOn(t *testing.T, mnt, tree string) {
	t.Helper()
	p := filepath.Join(mnt, ".xattr-probe")
	os.WriteFile(p, nil, 0o600)
	defer os.Remove(p)
	if err := unix.Setxattr(p, "user.subsys", []byte("x"), 0); err != nil {
		t.Logf("%s keeps no user xattrs (%v): the tree is compared without its own", mnt, err)
		unix.Removexattr(filepath.Join(tree, "etc/passwd"), "user.subsys")
	}
}

// holdCopy makes the next move's copy stop once it has copied some bytes:
// entered is told how many, and the copy goes on when release is called
// (at the latest when the test ends).
func holdCopy(t *testing.T) (entered <-chan int64, release func()) {
	in, rel := make(chan int64, 1), make(chan struct{})
	var held, released sync.Once
	old := moveStep
	moveStep = func(n int64) {
		if n > 0 {
			held.Do(func() { in <- n; <-rel })
		}
	}
	release = func() { released.Do(func() { close(rel) }) }
	t.Cleanup(func() { release(); moveStep = old })
	return in, release
}

// fakeV2Distro records version 2 distro name, stopped, in the data
// directory, with a 256 MiB sparse image holding 4 MiB of random data at
// its start and 4 MiB at 128 MiB, and returns the image's path.
func fakeV2Distro(t *testing.T, m *Manager, db *store.DB, name string) string {
	t.Helper()
	id := uuid.NewString()
	loc := filepath.Join(m.cfg.distrosDir(), id)
	if err := os.Mkdir(loc, 0o700); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(loc, DiskImageName)
	f, err := os.OpenFile(img, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4<<20)
	for _, off := range []int64{0, 128 << 20} {
		rand.Read(b)
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(256 << 20); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateDistro(context.Background(), store.Distro{ID: id, Name: name, Version: 2, State: string(StateStopped), Location: loc, DefaultUser: "root"}); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestMoveV1: a version 1 distro moves on its file system (a rename: the
// same inode), to another (a copy with progress) and back, and back to
// its directory in the data directory; its tree keeps owners, modes,
// setuid, symlinks, hard links, fifos, xattrs and device nodes each time;
// the old location goes (kept when it holds files of the user's), nothing
// is left, and the distro starts from where it is.
func TestMoveV1(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	mnt := smallFS(t, "64m")
	be := newFakeBackend(t)
	m, _, data := newTestManager(t, map[int]Backend{1: be})
	tree := testTree(t, 1<<20)
	noUserXattrOn(t, mnt, tree)
	d := importV1(t, m, "d", tree)
	home := d.Location
	base := t.TempDir()

	t.Run("same file system", func(t *testing.T) {
		loc := filepath.Join(base, "a", "loc")
		before := inode(t, filepath.Join(home, "rootfs"))
		op, err := moveAndWait(t, m, "d", loc)
		if err != nil {
			t.Fatal(err)
		}
		if info := op.Info(); info.Kind != KindMove || info.Status != StatusSuccess {
			t.Errorf("operation %+v", info)
		}
		got, _ := m.Get(ctx, "d")
		if got.Location != loc || got.State != StateStopped || got.Version != 1 {
			t.Fatalf("after the move: %+v", got)
		}
		if inode(t, filepath.Join(loc, "rootfs")) != before {
			t.Error("a move on one file system copied the tree rather than renaming it")
		}
		if mode(t, loc).Perm() != 0o700 {
			t.Errorf("new location has mode %v, want 0700", mode(t, loc))
		}
		sameTree(t, filepath.Join(loc, "rootfs"), tree)
		gone(t, home, "the distro's directory in the data directory")
		if names(loc) != "rootfs" {
			t.Errorf("new location holds %q", names(loc))
		}
		noLeftovers(t, data, 0)
	})

	t.Run("another file system", func(t *testing.T) {
		from := filepath.Join(base, "a", "loc")
		loc := filepath.Join(mnt, "loc")
		op, err := moveAndWait(t, m, "d", loc)
		if err != nil {
			t.Fatal(err)
		}
		info := op.Info()
		if info.Progress.Total == 0 || info.Progress.Done != info.Progress.Total || info.Result == nil || info.Result.Entries == 0 {
			t.Errorf("a copy's operation: %+v (result %+v)", info, info.Result)
		}
		if got, _ := m.Get(ctx, "d"); got.Location != loc {
			t.Fatalf("after the move: %+v", got)
		}
		sameTree(t, filepath.Join(loc, "rootfs"), tree)
		gone(t, from, "the old location, empty once the distro left")
		if names(loc) != "rootfs" {
			t.Errorf("new location holds %q", names(loc))
		}
		noLeftovers(t, data, 0)
	})

	t.Run("back, leaving the user's files", func(t *testing.T) {
		from := filepath.Join(mnt, "loc")
		os.WriteFile(filepath.Join(from, "notes"), []byte("mine"), 0o600)
		loc := filepath.Join(base, "b", "loc")
		if _, err := moveAndWait(t, m, "d", loc); err != nil {
			t.Fatal(err)
		}
		sameTree(t, filepath.Join(loc, "rootfs"), tree)
		if names(from) != "notes" {
			t.Errorf("old location holds %q, want the user's notes only", names(from))
		}
		noLeftovers(t, data, 0)
	})

	t.Run("home to the data directory", func(t *testing.T) {
		from := filepath.Join(base, "b", "loc")
		if _, err := moveAndWait(t, m, "d", ""); err != nil {
			t.Fatal(err)
		}
		if got, _ := m.Get(ctx, "d"); got.Location != home {
			t.Fatalf("after the move home: %+v, want location %s", got, home)
		}
		sameTree(t, filepath.Join(home, "rootfs"), tree)
		gone(t, from, "the old location")
		noLeftovers(t, data, 1)
	})

	if _, err := m.Start(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if be.lastSpec.RootFS != filepath.Join(home, "rootfs") {
		t.Errorf("started with root %s, want %s", be.lastSpec.RootFS, filepath.Join(home, "rootfs"))
	}
}

// TestMoveV2: a version 2 image moves to another file system and back as
// the same bytes, still sparse (allocating no more than it did), with
// progress in bytes of the image; on one file system it is renamed.
func TestMoveV2(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	mnt := smallFS(t, "64m")
	m, db, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t), 2: newFakeBackend(t)})
	img := fakeV2Distro(t, m, db, "two")
	want := fileHash(t, img)
	apparent, allocated, err := disk.Usage(img)
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, loc string) {
		t.Helper()
		got, _ := m.Get(ctx, "two")
		if got.Location != loc || got.Version != 2 {
			t.Fatalf("after the move: %+v, want location %s", got, loc)
		}
		p := filepath.Join(loc, DiskImageName)
		a, alloc, err := disk.Usage(p)
		if err != nil {
			t.Fatal(err)
		}
		if a != apparent || alloc > allocated {
			t.Errorf("moved image: size %d allocating %d; the source was %d allocating %d", a, alloc, apparent, allocated)
		}
		if fileHash(t, p) != want {
			t.Error("moved image differs from the source")
		}
		if names(loc) != DiskImageName {
			t.Errorf("new location holds %q", names(loc))
		}
	}

	loc := filepath.Join(mnt, "loc")
	op, err := moveAndWait(t, m, "two", loc)
	if err != nil {
		t.Fatal(err)
	}
	if info := op.Info(); info.Progress.Total != apparent || info.Progress.Done != apparent {
		t.Errorf("progress %+v, want all of the image's %d bytes", info.Progress, apparent)
	}
	check(t, loc)
	gone(t, filepath.Dir(img), "the distro's directory in the data directory")
	noLeftovers(t, data, 0)

	back := filepath.Join(t.TempDir(), "back")
	if _, err := moveAndWait(t, m, "two", back); err != nil {
		t.Fatal(err)
	}
	check(t, back)
	gone(t, loc, "the old location on tmpfs")

	again := filepath.Join(t.TempDir(), "again")
	before := inode(t, filepath.Join(back, DiskImageName))
	if _, err := moveAndWait(t, m, "two", again); err != nil {
		t.Fatal(err)
	}
	check(t, again)
	if inode(t, filepath.Join(again, DiskImageName)) != before {
		t.Error("a move on one file system copied the image rather than renaming it")
	}
	noLeftovers(t, data, 0)
}

// TestMoveRefused: a running distro, a bad location, or none of it, are
// refused at once with the sentinel that says why; nothing is made and the
// distro stays where it is.
func TestMoveRefused(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	m, db, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t)})
	d := importV1(t, m, "d", testTree(t, 0))
	other := filepath.Join(t.TempDir(), "other")
	op, err := m.Import(ctx, ImportRequest{Name: "other", Location: other, Body: bytes.NewReader(tinyTar(t))})
	if err != nil || waitOp(t, m, op) != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	full := filepath.Join(base, "full")
	os.MkdirAll(full, 0o700)
	os.WriteFile(filepath.Join(full, "x"), nil, 0o600)
	group := filepath.Join(base, "group")
	os.Mkdir(group, 0o755)
	os.Chown(group, 0, 1000)
	os.Chmod(group, 0o775)
	link := filepath.Join(base, "link")
	os.Symlink(d.Location, link)

	for _, tc := range []struct {
		name, loc string
		want      error
		text      string
	}{
		{"relative", "rel/loc", ErrInvalid, "absolute"},
		{"not empty", full, ErrInvalid, "not empty"},
		{"under a group-writable directory", filepath.Join(group, "loc"), ErrInvalid, "group 1000"},
		{"where it is", d.Location, ErrInvalid, "already in"},
		{"where it is, unclean", d.Location + "/./", ErrInvalid, "already in"},
		{"where it is, through a symlink", link, ErrInvalid, "already in"},
		{"inside its tree", filepath.Join(d.Location, "rootfs", "tmp", "loc"), ErrInvalid, "inside distro \"d\"'s own"},
		{"inside its directory", filepath.Join(d.Location, "loc"), ErrInvalid, "inside distro \"d\"'s own"},
		{"inside another distro's", filepath.Join(other, "loc"), ErrInvalid, "inside distro \"other\"'s"},
		{"inside the data directory", filepath.Join(data, "tmp", "loc"), ErrInvalid, "data directory"},
		{"inside another's directory in the data directory", filepath.Join(data, "distros", "x"), ErrInvalid, "data directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, err := m.Move(ctx, "d", tc.loc)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Move to %s = %v, %v; want %v saying %q", tc.loc, op, err, tc.want, tc.text)
			}
		})
	}
	gone(t, filepath.Join(group, "loc"), "a refused location")
	gone(t, filepath.Join(d.Location, "loc"), "a refused location")
	if _, err := m.Move(ctx, "nope", filepath.Join(base, "loc")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Move of no distro = %v, want ErrNotFound", err)
	}

	if _, err := m.Start(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	loc := filepath.Join(base, "loc")
	if _, err := m.Move(ctx, "d", loc); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "subsys terminate d") {
		t.Errorf("Move of a running distro = %v, want ErrBusy naming subsys terminate", err)
	}
	gone(t, loc, "a refused move's location")
	if got, _ := m.Get(ctx, "d"); got.Location != d.Location {
		t.Errorf("after refusals: %+v", got)
	}
	if row, _ := db.Distro(ctx, "d"); row.Location != d.Location {
		t.Errorf("row after refusals: %+v", row)
	}
	noLeftovers(t, data, 1)
}

// TestMoveFails: a copy that runs out of room midway (of inodes, or of
// bytes once the file system fills under it), or that is cancelled, moves
// nothing: the distro is where it was, whole and usable, and the new
// location is gone. While it copies, the distro cannot be started,
// renamed or moved again.
func TestMoveFails(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	m, db, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t), 2: newFakeBackend(t)})
	tree := testTree(t, 8<<20)
	d := importV1(t, m, "one", tree)
	rootfs := filepath.Join(d.Location, "rootfs")
	img := fakeV2Distro(t, m, db, "two")
	imgHash := fileHash(t, img)

	intact := func(t *testing.T, mnt, loc string) {
		t.Helper()
		for name, where := range map[string]string{"one": d.Location, "two": filepath.Dir(img)} {
			if got, _ := m.Get(ctx, name); got.Location != where || got.State != StateStopped {
				t.Errorf("%s after a failed move: %+v", name, got)
			}
		}
		sameTree(t, rootfs, tree)
		if fileHash(t, img) != imgHash {
			t.Error("a failed move changed the image")
		}
		gone(t, loc, "a failed move's location")
		if n := names(mnt); n != "" && n != "filler" {
			t.Errorf("a failed move left %q on the file system", n)
		}
		noLeftovers(t, data, 2)
	}

	t.Run("out of inodes", func(t *testing.T) {
		mnt := smallFS(t, "64m,nr_inodes=8")
		loc := filepath.Join(mnt, "loc")
		_, err := moveAndWait(t, m, "one", loc)
		if !errors.Is(err, ErrInsufficientStorage) {
			t.Errorf("move onto a file system without inodes = %v, want ErrInsufficientStorage", err)
		}
		t.Logf("error: %v", err)
		intact(t, mnt, loc)
	})

	t.Run("too small", func(t *testing.T) {
		mnt := smallFS(t, "4m")
		loc := filepath.Join(mnt, "loc")
		_, err := moveAndWait(t, m, "one", loc)
		if !errors.Is(err, ErrInsufficientStorage) || !strings.Contains(err.Error(), "move one") {
			t.Errorf("move onto a too small file system = %v, want ErrInsufficientStorage", err)
		}
		intact(t, mnt, loc)
	})

	// fill leaves less than 256 KiB free on the file system at mnt.
	fill := func(t *testing.T, mnt string) {
		t.Helper()
		f, err := os.Create(filepath.Join(mnt, "filler"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := bytes.Repeat([]byte{1}, 64<<10)
		for {
			if _, err := f.Write(b); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				return
			}
		}
	}

	for _, name := range []string{"one", "two"} {
		t.Run(name+" filled mid-copy", func(t *testing.T) {
			mnt := smallFS(t, "32m")
			loc := filepath.Join(mnt, "loc")
			entered, release := holdCopy(t)
			op, err := m.Move(ctx, name, loc)
			if err != nil {
				t.Fatal(err)
			}
			<-entered
			fill(t, mnt)
			release()
			err = waitOp(t, m, op)
			if !errors.Is(err, ErrInsufficientStorage) {
				t.Errorf("move onto a file system that filled = %v, want ErrInsufficientStorage", err)
			}
			t.Logf("error: %v", err)
			intact(t, mnt, loc)
		})

		t.Run(name+" cancelled", func(t *testing.T) {
			mnt := smallFS(t, "64m")
			loc := filepath.Join(mnt, "loc")
			entered, release := holdCopy(t)
			op, err := m.Move(ctx, name, loc)
			if err != nil {
				t.Fatal(err)
			}
			copied := <-entered
			info := op.Info()
			if info.Kind != KindMove || info.Progress.Done != copied || info.Progress.Total <= copied {
				t.Errorf("mid-copy: %+v, copied %d", info, copied)
			}
			var busy *BusyError
			if _, err := m.Start(ctx, name); !errors.As(err, &busy) || busy.Op.Kind != KindMove {
				t.Errorf("start during a move = %v, want a BusyError naming it", err)
			}
			if _, err := m.Update(ctx, name, Update{Name: ptr("renamed")}); !errors.Is(err, ErrBusy) {
				t.Errorf("rename during a move = %v, want ErrBusy", err)
			}
			if _, err := m.Move(ctx, name, filepath.Join(t.TempDir(), "elsewhere")); !errors.Is(err, ErrBusy) {
				t.Errorf("second move = %v, want ErrBusy", err)
			}
			cancelled := make(chan error, 1)
			go func() { _, err := m.CancelOperation(ctx, op.ID()); cancelled <- err }()
			testutil.WaitFor(t, time.Minute, "the cancel to reach the operation", func() bool {
				select {
				case <-op.Cancelled():
					return true
				default:
					return false
				}
			})
			release()
			if err := waitOp(t, m, op); !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled move = %v", err)
			}
			if err := <-cancelled; err != nil {
				t.Error(err)
			}
			intact(t, mnt, loc)
		})
	}

	// Usable after all that.
	if _, err := m.Start(ctx, "one"); err != nil {
		t.Errorf("start after failed moves: %v", err)
	}
}

// TestMoveRecover: a move that a crash stopped is finished or undone when
// the next manager opens, from its journal and where the files are: a
// renamed tree goes back, an uncommitted copy goes, a committed move's
// old files go, and a row switched before its rename reached the disk
// goes back.
func TestMoveRecover(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// crash leaves the state a crash would, for distro d, moving
		// from its directory in the data directory to to.
		crash func(t *testing.T, m *Manager, db *store.DB, d store.Distro, to string)
		// moved: the distro ends in to.
		moved bool
	}{
		{"renamed, not switched", func(t *testing.T, m *Manager, db *store.DB, d store.Distro, to string) {
			if err := os.Rename(filepath.Join(d.Location, "rootfs"), filepath.Join(to, "rootfs")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"copied, not switched", func(t *testing.T, m *Manager, db *store.DB, d store.Distro, to string) {
			copyTree(t, filepath.Join(d.Location, "rootfs"), filepath.Join(to, "rootfs"))
		}, false},
		{"mid-copy", func(t *testing.T, m *Manager, db *store.DB, d store.Distro, to string) {
			copyTree(t, filepath.Join(d.Location, "rootfs"), filepath.Join(to, stagingName, "rootfs"))
		}, false},
		{"switched, old files left", func(t *testing.T, m *Manager, db *store.DB, d store.Distro, to string) {
			copyTree(t, filepath.Join(d.Location, "rootfs"), filepath.Join(to, "rootfs"))
			d.Location = to
			if err := db.UpdateDistro(ctx, d); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"switched, rename lost", func(t *testing.T, m *Manager, db *store.DB, d store.Distro, to string) {
			d.Location = to
			if err := db.UpdateDistro(ctx, d); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := newFakeBackend(t)
			m, db, data := newTestManager(t, map[int]Backend{1: be})
			tree := testTree(t, 1<<20)
			importV1(t, m, "d", tree)
			row, _ := m.row(ctx, "d")
			to := filepath.Join(t.TempDir(), "to")
			if err := os.MkdirAll(filepath.Join(to, stagingName), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := m.writeMoveJournal(moveJournal{ID: row.ID, Name: row.Name, Version: 1, From: row.Location, To: to, Created: true}); err != nil {
				t.Fatal(err)
			}
			tc.crash(t, m, db, row, to)
			m.Close()
			m2, err := New(ctx, Config{Store: db, DataDir: data, Backends: map[int]Backend{1: be}, Logger: m.log})
			if err != nil {
				t.Fatal(err)
			}
			defer m2.Close()
			got, _ := m2.Get(ctx, "d")
			want, old := row.Location, to
			if tc.moved {
				want, old = to, row.Location
			}
			if got.Location != want {
				t.Fatalf("after recovery the distro is in %s, want %s", got.Location, want)
			}
			sameTree(t, filepath.Join(want, "rootfs"), tree)
			if names(want) != "rootfs" {
				t.Errorf("after recovery %s holds %q", want, names(want))
			}
			gone(t, old, "the location the distro is not in")
			keep := 1 // the distro's directory in the data directory
			if tc.moved {
				keep = 0
			}
			noLeftovers(t, data, keep)
		})
	}
}

// copyTree copies the tree at src to dst (made, with its parents) as a
// move's copy would.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Extract(context.Background(), bytes.NewReader(tarOf(t, src)), dst, archive.Limits{ReserveBytes: -1, ReservePercent: -1}); err != nil {
		t.Fatal(err)
	}
}
