package archive

import (
	"errors"
	"strconv"
	"time"
	"unsafe"

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

// writeAll writes b to fd, retrying short writes.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return err
		}
		b = b[n:]
	}
	return nil
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
