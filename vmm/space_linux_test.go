package vmm

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/vmm/archive"
)

func TestSettingsLimits(t *testing.T) {
	tests := []struct {
		bytes       int64
		percent     int
		wantBytes   int64
		wantPercent int
	}{
		{1 << 30, 5, 1 << 30, 5},
		{2 << 30, 10, 2 << 30, 10},
		{0, 5, -1, -1}, // the smaller of the two is 0: off
		{1 << 30, 0, -1, -1},
	}
	for _, tc := range tests {
		s := Settings{ImportReserveBytes: tc.bytes, ImportReservePercent: tc.percent}
		got := s.limits(archive.Limits{MaxEntries: 7})
		if got.ReserveBytes != tc.wantBytes || got.ReservePercent != tc.wantPercent || got.MaxEntries != 7 {
			t.Errorf("Settings{%d, %d%%}.limits() = %+v, want reserve %d, %d%% and the rest kept", tc.bytes, tc.percent, got, tc.wantBytes, tc.wantPercent)
		}
	}
}

// bigTar streams a tarball with one file of size bytes.
func bigTar(size int64) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755})
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "./big", Mode: 0o644, Size: size})
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(i) // not zeros: a file system may not store those
		}
		for left := size; left > 0; {
			n := min(left, int64(len(buf)))
			if _, err := tw.Write(buf[:n]); err != nil {
				pw.CloseWithError(err)
				return
			}
			left -= n
		}
		pw.CloseWithError(tw.Close())
	}()
	return pr
}

// smallFS mounts a tmpfs of size bytes and returns its mount point.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	requireRoot(t)
	mnt := filepath.Join(t.TempDir(), "small")
	os.Mkdir(mnt, 0o700)
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		testenv.SkipOrFailf(t, "mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// TestImportFillsDisk: an import into a location on a file system too small
// for it fails with ErrInsufficientStorage and the archive's error that names
// the file system and its free space (507 insufficient_storage in the API,
// not 500), and leaves nothing behind: no distro, no files, no staging. With
// no reserve, with the settings' reserve reached on the way, and with the
// file system below the reserve from the start.
func TestImportFillsDisk(t *testing.T) {
	tests := []struct {
		name        string
		fsSize      string
		percent     int
		prefill     int // bytes already used by another file
		fileSize    int64
		wantReserve int64
	}{
		{"file system fills", "4m", 0, 0, 8 << 20, 0},
		{"reserve reached", "32m", 50, 0, 24 << 20, 16 << 20},
		{"already below the reserve", "8m", 50, 6 << 20, 1 << 20, 4 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mnt := smallFS(t, tc.fsSize)
			if tc.prefill > 0 {
				writeFile(t, filepath.Join(mnt, "other"), tc.prefill)
			}
			m, _, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t)})
			ctx := context.Background()
			pct := tc.percent
			if _, err := m.UpdateSettings(ctx, SettingsUpdate{ImportReservePercent: &pct}); err != nil {
				t.Fatal(err)
			}
			loc := filepath.Join(mnt, "distro")
			op, err := m.Import(ctx, ImportRequest{Name: "big", Location: loc, Body: bigTar(tc.fileSize)})
			if err != nil {
				t.Fatal(err)
			}
			info, _ := m.WaitOperation(ctx, op.ID(), time.Minute)
			err = op.Err()
			var ise *archive.InsufficientStorageError
			if info.Status != StatusFailure || !errors.Is(err, ErrInsufficientStorage) || !errors.As(err, &ise) {
				t.Fatalf("import onto a full file system = %s, %v; want failure with ErrInsufficientStorage", info.Status, err)
			}
			if ise.MountPoint != mnt || ise.FSType != "tmpfs" || !strings.Contains(err.Error(), mnt+" (tmpfs)") || !strings.Contains(err.Error(), " free") || !strings.Contains(err.Error(), "import big") {
				t.Errorf("error = %q (%+v), want it to name %s (tmpfs) and its free space", err, ise, mnt)
			}
			t.Logf("error: %v", err)
			if ise.Reserve != tc.wantReserve {
				t.Errorf("reserve = %d, want %d", ise.Reserve, tc.wantReserve)
			}
			if _, err := m.Get(ctx, "big"); !errors.Is(err, ErrNotFound) {
				t.Errorf("failed import left a distro: %v", err)
			}
			if entries, _ := os.ReadDir(mnt); len(entries) != min(tc.prefill, 1) {
				t.Errorf("failed import left files on the file system: %v", entries)
			}
			for _, d := range []string{"tmp", "distros"} {
				if entries, _ := os.ReadDir(filepath.Join(data, d)); len(entries) != 0 {
					t.Errorf("failed import left %s/%v", d, entries)
				}
			}
		})
	}
}
