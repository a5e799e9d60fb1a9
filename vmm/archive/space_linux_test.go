package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// smallFS mounts a tmpfs with options opts (size=8m, nr_inodes=…) in a
// temporary directory, so that a full file system is real; it needs root.
func smallFS(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		testenv.SkipOrFailf(t, "mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fsUse returns the bytes and inodes in use on the file system of dir.
func fsUse(t *testing.T, dir string) (used, inodes int64) {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	return int64(fs.Blocks-fs.Bfree) * fs.Bsize, int64(fs.Files - fs.Ffree)
}

// randomBytes returns n bytes that do not compress.
func randomBytes(n int) string {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// extractInto runs Extract into a new directory dest on fs, and then, as the
// caller of Extract does on an error, removes it; it checks that the file
// system is as empty as before.
func extractInto(t *testing.T, fs string, data []byte, lim Limits) (Stats, error) {
	t.Helper()
	dest := filepath.Join(fs, "dest")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := Extract(context.Background(), bytes.NewReader(data), dest, lim)
	if err != nil {
		if rerr := os.RemoveAll(dest); rerr != nil {
			t.Fatalf("RemoveAll = %v", rerr)
		}
		if used, inodes := fsUse(t, fs); used != 0 || inodes > 1 {
			t.Errorf("after the failed import and its cleanup, %d bytes and %d inodes are in use, want none", used, inodes)
		}
	}
	return st, err
}

// storageError checks that err is an *InsufficientStorageError naming fs.
func storageError(t *testing.T, err error, fs string) *InsufficientStorageError {
	t.Helper()
	var se *InsufficientStorageError
	if !errors.Is(err, ErrInsufficientStorage) || !errors.As(err, &se) {
		t.Fatalf("Extract = %v, want an *InsufficientStorageError", err)
	}
	if se.MountPoint != fs || se.FSType != "tmpfs" || !strings.Contains(err.Error(), fs) {
		t.Errorf("error names %q (%s): %v; want the mount point %s, tmpfs", se.MountPoint, se.FSType, err, fs)
	}
	return se
}

// TestExtractReserve imports 16 MiB into an 8 MiB file system: Extract must
// stop before the default reserve (5 % of 8 MiB) is touched, and say so.
func TestExtractReserve(t *testing.T) {
	fs := smallFS(t, "size=8m")
	data := mkTar(t, file("etc/hostname", "box\n"), file("big", randomBytes(16<<20)), file("after", "x"))
	var left int64
	dest := filepath.Join(fs, "dest")
	os.Mkdir(dest, 0o755)
	_, err := Extract(context.Background(), bytes.NewReader(data), dest, Limits{})
	used, _ := fsUse(t, fs)
	left = 8<<20 - used
	se := storageError(t, err, fs)
	t.Logf("Extract = %v; %d bytes left free", err, left)
	if want := int64(8<<20) / 20; se.Reserve != want {
		t.Errorf("Reserve = %d, want %d (5 %% of 8 MiB)", se.Reserve, want)
	}
	if se.Err != nil || se.Needed <= 0 || se.Free < se.Reserve {
		t.Errorf("error %+v, want the reserve (not ENOSPC) to stop it, with what it still needed", se)
	}
	if left < se.Reserve {
		t.Errorf("%d bytes free after the import, want at least the reserve %d", left, se.Reserve)
	}
	var ee *EntryError
	if !errors.As(err, &ee) || ee.Name != "big" {
		t.Errorf("Extract = %v, want it to name the entry big", err)
	}
	os.RemoveAll(dest)
	if used, inodes := fsUse(t, fs); used != 0 || inodes > 1 {
		t.Errorf("after cleanup %d bytes, %d inodes in use, want none", used, inodes)
	}
}

// TestExtractDiskFull turns the reserve off, so the import runs into ENOSPC,
// which must come back as the same typed error.
func TestExtractDiskFull(t *testing.T) {
	fs := smallFS(t, "size=8m")
	data := mkTar(t, file("big", randomBytes(16<<20)))
	_, err := extractInto(t, fs, data, Limits{ReserveBytes: -1, ReservePercent: -1})
	se := storageError(t, err, fs)
	if !errors.Is(err, unix.ENOSPC) || se.Reserve != 0 {
		t.Errorf("Extract = %v (%+v), want ENOSPC and no reserve", err, se)
	}
}

// TestExtractInodesFull runs a file system out of inodes, not blocks.
func TestExtractInodesFull(t *testing.T) {
	fs := smallFS(t, "size=8m,nr_inodes=20")
	var ents []ent
	for i := range 40 {
		ents = append(ents, file(fmt.Sprintf("f%02d", i), "x"))
	}
	_, err := extractInto(t, fs, mkTar(t, ents...), Limits{})
	storageError(t, err, fs)
	if !errors.Is(err, unix.ENOSPC) {
		t.Errorf("Extract = %v, want ENOSPC", err)
	}
}

// TestExtractStartsBelowReserve fails an import at once on a file system
// that is already nearly full, before it writes anything.
func TestExtractStartsBelowReserve(t *testing.T) {
	fs := smallFS(t, "size=8m")
	if err := os.WriteFile(filepath.Join(fs, "filler"), []byte(randomBytes(8<<20-200<<10)), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(fs, "dest")
	os.Mkdir(dest, 0o755)
	_, err := Extract(context.Background(), bytes.NewReader(mkTar(t, file("a", "b"))), dest, Limits{})
	storageError(t, err, fs)
	if names, _ := os.ReadDir(dest); len(names) != 0 {
		t.Errorf("dest holds %d entries, want none", len(names))
	}
}

// TestExtractFits checks that an import that leaves the reserve free
// succeeds, and that a sparse file far larger than the file system fits.
func TestExtractFits(t *testing.T) {
	fs := smallFS(t, "size=8m")
	data := mkTar(t, file("a", randomBytes(4<<20)))
	if _, err := extractInto(t, fs, data, Limits{}); err != nil {
		t.Errorf("Extract of 4 MiB into 8 MiB = %v", err)
	}
	os.RemoveAll(filepath.Join(fs, "dest"))
	if _, err := extractInto(t, fs, sparseTarball(t, 6<<30, "--format=gnu"), Limits{}); err != nil {
		t.Errorf("Extract of a 6 GiB sparse file into 8 MiB = %v", err)
	}
}

func TestLimitsReserve(t *testing.T) {
	for _, tt := range []struct {
		lim  Limits
		size int64
		want int64
	}{
		{Limits{}, 8 << 20, 8 << 20 / 20},
		{Limits{}, 1 << 40, 1 << 30},
		{Limits{}, 20 << 30, 1 << 30},
		{Limits{ReserveBytes: -1}, 1 << 40, 1 << 40 / 20},
		{Limits{ReservePercent: -1}, 1 << 40, 1 << 30},
		{Limits{ReserveBytes: -1, ReservePercent: -1}, 1 << 40, 0},
		{Limits{ReserveBytes: 10 << 20, ReservePercent: 50}, 8 << 20, 4 << 20},
		{Limits{}, 1<<63 - 1, 1 << 30},
	} {
		if got := tt.lim.withDefaults().reserve(tt.size); got != tt.want {
			t.Errorf("%+v.reserve(%d) = %d, want %d", tt.lim, tt.size, got, tt.want)
		}
	}
}
