package archive

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// memoryUse is what measureMemory saw of one call.
type memoryUse struct {
	Total uint64 // bytes allocated in all (runtime.MemStats.TotalAlloc)
	Peak  uint64 // most bytes live at once, above what was live before
}

func (m memoryUse) String() string {
	return fmt.Sprintf("%.1f MiB allocated, %.2f MiB live at most", float64(m.Total)/(1<<20), float64(m.Peak)/(1<<20))
}

// measureMemory runs fn and measures its memory. The peak is the live heap
// the garbage collector found, sampled every millisecond while fn runs;
// collecting often (GOGC=20) makes those samples close together, and what
// a walk holds for a whole directory or a whole descent is held across
// many of them.
func measureMemory(fn func()) memoryUse {
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	runtime.GC()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	base := live[0].Value.Uint64()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	total := ms.TotalAlloc

	done, most := make(chan struct{}), make(chan uint64)
	go func() {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var peak uint64
		for {
			select {
			case <-done:
				most <- peak
				return
			case <-tick.C:
				metrics.Read(s)
				peak = max(peak, s[0].Value.Uint64())
			}
		}
	}()
	fn()
	runtime.GC() // one last sample of what fn left live
	time.Sleep(2 * time.Millisecond)
	close(done)
	peak := <-most
	runtime.ReadMemStats(&ms)
	u := memoryUse{Total: ms.TotalAlloc - total}
	if peak > base {
		u.Peak = peak - base
	}
	return u
}

// TestDeepTreeMemory walks a tree 20,000 levels deep, as a distro can make
// with mkdir and cd in a loop, for its disk usage (what the server does every
// minute for every running distro), exports it and removes it. A walk that
// kept the path of every level held about 400 MB at the bottom (level i's
// path is 2i bytes long); one name per level is about a megabyte.
func TestDeepTreeMemory(t *testing.T) {
	testenv.SkipIfShort(t, "builds a tree 20,000 levels deep")
	const depth = 20000
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	// os.RemoveAll, TempDir's, holds a descriptor per level.
	t.Cleanup(func() { RemoveAll(tree) })
	deepTree(t, tree, depth)
	ctx := context.Background()

	var u Usage
	var err error
	m := measureMemory(func() { u, err = DiskUsage(ctx, tree) })
	t.Logf("DiskUsage of %d levels: %v", depth, m)
	if want := int64(depth + 1 + depth/1000); err != nil || u.Entries != want {
		t.Fatalf("DiskUsage = %+v, %v, want %d entries", u, err, want)
	}
	if m.Total > 40<<20 || m.Peak > 16<<20 {
		t.Errorf("DiskUsage of a tree %d levels deep: %v, want at most 40 MiB allocated and 16 MiB live", depth, m)
	}

	// The archive's names are 40 KB long at the bottom: what is allocated
	// grows with the square of the depth, but none of it need stay.
	const exportDepth = 10000
	m = measureMemory(func() { err = Write(ctx, io.Discard, exportTreeOf(t, tree, exportDepth), Tar) })
	t.Logf("Write of %d levels: %v", exportDepth, m)
	if err != nil {
		t.Fatalf("Write = %v", err)
	}
	if m.Peak > 16<<20 {
		t.Errorf("Write of a tree %d levels deep held %v, want at most 16 MiB live", exportDepth, m)
	}

	m = measureMemory(func() { err = RemoveAll(tree) })
	t.Logf("RemoveAll of %d levels: %v", depth, m)
	if err != nil {
		t.Fatalf("RemoveAll = %v", err)
	}
	if m.Peak > 16<<20 {
		t.Errorf("RemoveAll of a tree %d levels deep held %v, want at most 16 MiB live", depth, m)
	}
}

// exportTreeOf returns a directory holding a chain of depth directories
// with the same shape as deepTree's: a second, shallower tree next to
// tree, so that the export does not take minutes.
func exportTreeOf(t *testing.T, tree string, depth int) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(tree), "export")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveAll(dir) })
	deepTree(t, dir, depth)
	return dir
}

// TestWideDirectoryMemory lists a directory of 100,000 entries for its disk
// usage and removes it: a listing read whole held every name at once (about
// 8 MB here, and a distro can make millions); read in batches, it holds one.
func TestWideDirectoryMemory(t *testing.T) {
	testenv.SkipIfShort(t, "makes 100,000 files")
	const entries = 100000
	dir := filepath.Join(t.TempDir(), "wide")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		// 48-byte names, as long as those of a cache or a mail directory.
		if err := unix.Mknodat(fd, fmt.Sprintf("%048d", i), unix.S_IFREG|0o644, 0); err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
	}
	unix.Close(fd)
	ctx := context.Background()

	var u Usage
	m := measureMemory(func() { u, err = DiskUsage(ctx, dir) })
	t.Logf("DiskUsage of %d entries: %v", entries, m)
	if err != nil || u.Entries != entries+1 {
		t.Fatalf("DiskUsage = %+v, %v, want %d entries", u, err, entries+1)
	}
	if m.Peak > 2<<20 {
		t.Errorf("DiskUsage of a directory of %d entries held %v, want at most 2 MiB live", entries, m)
	}

	m = measureMemory(func() { err = RemoveAll(dir) })
	t.Logf("RemoveAll of %d entries: %v", entries, m)
	if err != nil {
		t.Fatalf("RemoveAll = %v", err)
	}
	if _, err := os.Lstat(dir); err == nil {
		t.Errorf("after RemoveAll: the directory is still there")
	}
	if m.Peak > 2<<20 {
		t.Errorf("RemoveAll of a directory of %d entries held %v, want at most 2 MiB live", entries, m)
	}
}
