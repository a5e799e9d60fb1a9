package archive

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// xattrPrefix is the PAX record prefix GNU tar, star and archive/tar use for
// extended attributes.
const xattrPrefix = "SCHILY.xattr."

// timespec converts t for utimensat.
func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// times returns the utimensat pair for an entry: its mtime, and its atime when
// the archive has one; otherwise the atime is left as created (now).
func times(atime, mtime time.Time) [2]unix.Timespec {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, timespec(mtime)}
	if !atime.IsZero() {
		ts[0] = timespec(atime)
	}
	return ts
}

// futimens sets the times of the file open as fd, with nanoseconds
// (unix.Futimes has only microseconds): utimensat with a NULL path.
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// procPath names the entry base in the directory open as dirfd through
// /proc/self/fd, for the few calls with no *at form (lsetxattr, llistxattr).
// The kernel resolves the fd link to that very directory, never by a path
// string, so the result is as confined as dirfd; base is one component and
// those calls do not follow a symlink in it.
func procPath(dirfd int, base string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
}

// isEscape reports whether err is os.Root refusing a path that leaves the
// root (through "..", or a symlink that is absolute or climbs out). os.Root
// does not export that error, so match its text, which is stable since Go 1.24.
func isEscape(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}

// pwriteAll writes b to fd at offset off, retrying short writes.
func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return err
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// isNoSpace reports whether err says a file system is full: no blocks or
// inodes left (ENOSPC), or the user's quota spent (EDQUOT).
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// spaceCheckEvery is how much an import may write, by its own count, between
// two looks at the file system's free space (others write to it too).
const spaceCheckEvery = 64 << 20

// spaceGuard keeps an import from taking the last free space of its file
// system: it counts what the import allocates and asks the file system
// (fstatfs) every spaceCheckEvery bytes, and at every step once the count
// says the reserve is near, so that it stops before the reserve is touched.
type spaceGuard struct {
	fd      int    // the destination directory, for fstatfs
	path    string // its name, for errors
	reserve int64  // free space to leave
	free    int64  // free space at the last look, less what was written since
	since   int64  // written since the last look
	bsize   int64  // the file system's block size, the unit of allocation
	off     bool   // no reserve: only ENOSPC and EDQUOT stop an import
}

// newSpaceGuard looks at the file system of the directory fd (named path)
// once, and fails at once if its free space is below the reserve.
func newSpaceGuard(fd int, path string, lim Limits) (*spaceGuard, error) {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", path, err)
	}
	g := &spaceGuard{fd: fd, path: path, bsize: max(fs.Bsize, 512), off: lim.ReserveBytes < 0 && lim.ReservePercent < 0}
	g.reserve = lim.reserve(int64(fs.Blocks) * fs.Bsize)
	g.free = int64(fs.Bavail) * fs.Bsize
	if g.free < g.reserve {
		return nil, g.error(0, nil)
	}
	return g, nil
}

// blocks returns n rounded up to whole blocks, which is what n bytes of data
// take.
func (g *spaceGuard) blocks(n int64) int64 {
	return (n + g.bsize - 1) / g.bsize * g.bsize
}

// use accounts for n bytes the import is about to allocate, and returns an
// *InsufficientStorageError if they would leave less than the reserve free.
// needed is what the entry being written still needs in all, for the error.
func (g *spaceGuard) use(n, needed int64) error {
	if g.off {
		return nil
	}
	if g.since+n >= spaceCheckEvery || g.free-n < g.reserve {
		var fs unix.Statfs_t
		if err := unix.Fstatfs(g.fd, &fs); err == nil {
			g.free, g.since = int64(fs.Bavail)*fs.Bsize, 0
		}
	}
	if g.free-n < g.reserve {
		return g.error(needed, nil)
	}
	g.free -= n
	g.since += n
	return nil
}

// full explains err, the file system's ENOSPC or EDQUOT.
func (g *spaceGuard) full(needed int64, err error) *InsufficientStorageError {
	var fs unix.Statfs_t
	if unix.Fstatfs(g.fd, &fs) == nil {
		g.free = int64(fs.Bavail) * fs.Bsize
	}
	return g.error(needed, err)
}

func (g *spaceGuard) error(needed int64, err error) *InsufficientStorageError {
	e := &InsufficientStorageError{Path: g.path, Free: max(g.free, 0), Needed: needed, Reserve: g.reserve, Err: err}
	e.MountPoint, e.FSType = mountOf(g.fd)
	return e
}

// mountOf returns the mount point and file system type of the file system
// that holds the open directory fd, from /proc/self/mountinfo: the mount
// with fd's device whose mount point is the longest prefix of fd's path.
// Both are "" if they cannot be found.
func mountOf(fd int) (mountPoint, fsType string) {
	path, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", ""
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return "", ""
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return "", ""
	}
	major, minor := int(unix.Major(st.Dev)), int(unix.Minor(st.Dev))
	var bestDev, best, bestType, anyBest, anyType string
	for _, m := range mounts {
		mp := m.Mountpoint
		if mp != "/" && path != mp && !strings.HasPrefix(path, mp+"/") {
			continue
		}
		if m.Major == major && m.Minor == minor && len(mp) >= len(bestDev) {
			bestDev, best, bestType = mp, mp, m.FSType
		}
		if len(mp) >= len(anyBest) {
			anyBest, anyType = mp, m.FSType
		}
	}
	if best != "" {
		return best, bestType
	}
	// btrfs subvolumes report another device than their mount.
	return anyBest, anyType
}
