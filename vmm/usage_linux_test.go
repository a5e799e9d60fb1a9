package vmm

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// naiveDiskUsage is the walk by path that diskUsage used to be, with hook run
// as it visits each directory: kept here to show what the attack does to it.
func naiveDiskUsage(root string, hook func(rel string)) int64 {
	var total int64
	seen := map[[2]uint64]bool{}
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && hook != nil {
			rel, _ := filepath.Rel(root, path)
			hook(rel)
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total
}

// writeFile writes size bytes of data (not sparse) to p.
func writeFile(t *testing.T, p string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Repeat("x", size)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// swapper returns a hook that, when the walk reaches dir victim, replaces it
// with a symlink to target, as a distro's root can at any moment.
func swapper(t *testing.T, root, victim, target string) func(string) {
	return func(rel string) {
		if rel != victim {
			return
		}
		p := filepath.Join(root, victim)
		if err := os.Rename(p, p+".moved"); err != nil {
			t.Errorf("swap: %v", err)
			return
		}
		if err := os.Symlink(target, p); err != nil {
			t.Errorf("swap: %v", err)
		}
	}
}

// TestDiskUsageSwappedForSymlink: a distro swaps a directory of its tree for a
// symlink to the host's / (or any host directory) while the sampler walks it.
// A walk by path then walks the host as root (shown first, with the swap made
// at the worst moment); the sampler's walk by descriptor never follows it,
// whether the link is there from the start or comes and goes during walks.
func TestDiskUsageSwappedForSymlink(t *testing.T) {
	const hostBytes = 4 << 20
	host := t.TempDir()
	writeFile(t, filepath.Join(host, "host-secret"), hostBytes)
	build := func(t *testing.T) string {
		root := filepath.Join(t.TempDir(), "rootfs")
		writeFile(t, filepath.Join(root, "etc", "passwd"), 1000)
		writeFile(t, filepath.Join(root, "victim", "small"), 1000)
		return root
	}

	// The attack works on a walk by path: it counts the host's file.
	root := build(t)
	if got := naiveDiskUsage(root, swapper(t, root, "victim", host)); got < hostBytes {
		t.Fatalf("the naive walk counted %d bytes: the swap did not reach the host, so this test proves nothing", got)
	}

	for _, target := range []string{host, "/"} {
		t.Run("link to "+target, func(t *testing.T) {
			root := build(t)
			swapper(t, root, "victim", target)("victim")
			if got := diskUsage(context.Background(), root); got >= hostBytes || got == 0 {
				t.Errorf("diskUsage = %d bytes: it followed the symlink to %s (or counted nothing)", got, target)
			}
		})
	}

	t.Run("link comes and goes", func(t *testing.T) {
		root := build(t)
		victim := filepath.Join(root, "victim")
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				os.Rename(victim, victim+".dir")
				os.Symlink(host, victim)
				os.Remove(victim)
				os.Rename(victim+".dir", victim)
			}
		}()
		defer func() { close(stop); <-done }()
		for i := range 300 {
			if got := diskUsage(context.Background(), root); got >= hostBytes {
				t.Fatalf("walk %d: diskUsage = %d bytes: it followed the symlink to the host", i, got)
			}
		}
	})
}

// TestDiskUsageCounts: the sampler's walk counts what the walk by path did
// on a quiet tree (hard links once, symlinks not followed, a tree deeper than
// a path can name), leaks no descriptor, and leaves out file systems mounted
// in the tree.
func TestDiskUsageCounts(t *testing.T) {
	root := filepath.Join(t.TempDir(), "rootfs")
	writeFile(t, filepath.Join(root, "a", "f"), 100_000)
	writeFile(t, filepath.Join(root, "b", "g"), 5000)
	os.Link(filepath.Join(root, "a", "f"), filepath.Join(root, "b", "hardlink"))
	os.Symlink("/", filepath.Join(root, "hostroot"))
	os.Symlink("../a", filepath.Join(root, "b", "up"))
	deep := root
	for i := range 200 {
		deep = filepath.Join(deep, "d")
		if i%50 == 0 {
			writeFile(t, filepath.Join(deep, "leaf"), 3000)
		}
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "z", "after-the-deep-one"), 7000)
	want := naiveDiskUsage(root, nil)

	base := openFDs(t)
	got := diskUsage(context.Background(), root)
	if got != want {
		t.Errorf("diskUsage = %d, want %d (the walk by path on a quiet tree)", got, want)
	}
	if n := openFDs(t) - base; n != 0 {
		t.Errorf("the walk leaked %d descriptors", n)
	}

	// A file system mounted in the tree is not the distro's.
	if os.Geteuid() != 0 {
		testenv.SkipPart(t, "not root: the check that the walk stays off other file systems needs a mount")
		return
	}
	mnt := filepath.Join(root, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=16m"); err != nil {
		testenv.SkipOrFailf(t, "mount tmpfs: %v", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	writeFile(t, filepath.Join(mnt, "other-fs"), 4<<20)
	if after := diskUsage(context.Background(), root); after > got+64<<10 {
		t.Errorf("diskUsage with a tmpfs mounted in the tree = %d, want about %d: it crossed into the mount", after, got)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		testenv.SkipOrFailf(t, "no /proc/self/fd: %v", err)
	}
	return len(entries)
}
