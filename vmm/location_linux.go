package vmm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A distro's directory holds its root file system, with the distro's setuid
// programs and device nodes in it; only root may look inside. Every directory
// above it must be one that no other user can change, or that user could
// rename it away and put a symlink in its place, and the server (root) would
// then write, chmod or delete wherever the link points.

// trustedUID reports whether uid may own a directory above a distro: root, or
// the user the server runs as.
func trustedUID(uid uint32) bool {
	return uid == 0 || int(uid) == os.Geteuid()
}

// checkDirStat says why a directory with st (at path) lets a user other than
// root (or the server's) change what its entries are, or "" when it does not:
// it belongs to another user, or a group or everyone may write to it. A
// sticky directory writable by others (/tmp) is safe: others cannot rename or
// remove entries they do not own, and each entry below it is checked in turn.
func checkDirStat(path string, st *unix.Stat_t) string {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Sprintf("%s is not a directory", path)
	}
	if !trustedUID(st.Uid) {
		return fmt.Sprintf("%s belongs to uid %d, who could replace what is in it", path, st.Uid)
	}
	if st.Mode&unix.S_ISVTX != 0 {
		return ""
	}
	switch {
	case st.Mode&0o002 != 0:
		return fmt.Sprintf("%s can be written by every user (mode %04o, not sticky)", path, st.Mode&0o7777)
	case st.Mode&0o020 != 0:
		// Also group root: it may have members other than root. With a POSIX
		// ACL, these bits are its mask, so a user the ACL lets write shows here.
		return fmt.Sprintf("%s can be written by the members of group %d (mode %04o)", path, st.Gid, st.Mode&0o7777)
	}
	return ""
}

// resolveExisting resolves the symlinks in the longest existing prefix of
// the absolute, clean path p and returns the resolved path with the rest
// appended: the path the directory walk then follows without any symlink.
func resolveExisting(p string) (string, error) {
	rest := ""
	for cur := p; ; {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return "", err
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// errUnsafeParent is wrapped by openParent's errors that say a directory above
// the path may be changed by another user.
var errUnsafeParent = errors.New("unsafe parent directory")

// openParent walks from / to the parent directory of the absolute, clean path
// p by file descriptor, following no symlink, and returns that parent open
// (O_PATH). Each directory on the way must be one that only root (or the
// server's user) can change (checkDirStat); with create, missing ones are
// made with mode 0755. Errors that say a directory is unsafe wrap
// errUnsafeParent.
func openParent(p string, create bool) (int, error) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if !filepath.IsAbs(p) || len(parts) == 0 || parts[0] == "" {
		return -1, fmt.Errorf("%s has no parent directory", p)
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /: %w", err)
	}
	at := "/"
	for i := 0; ; i++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("stat %s: %w", at, err)
		}
		if why := checkDirStat(at, &st); why != "" {
			unix.Close(fd)
			return -1, fmt.Errorf("%w: %s", errUnsafeParent, why)
		}
		if i == len(parts)-1 {
			return fd, nil
		}
		name, next := parts[i], filepath.Join(at, parts[i])
		nfd, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, name, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				nfd, err = unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		unix.Close(fd)
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
			// O_NOFOLLOW|O_DIRECTORY on a symlink fails with ENOTDIR or ELOOP.
			var lst unix.Stat_t
			if unix.Lstat(next, &lst) == nil && lst.Mode&unix.S_IFMT == unix.S_IFLNK {
				return -1, fmt.Errorf("%w: %s is a symbolic link", errUnsafeParent, next)
			}
			return -1, fmt.Errorf("%s is not a directory", next)
		default:
			return -1, fmt.Errorf("open %s: %w", next, err)
		}
		fd, at = nfd, next
	}
}

// prepareLocation makes dir, a user-chosen location for a new distro, safe to
// use, and returns its path with the symlinks above it resolved (created
// says whether it made the directory). Every directory above it must belong
// to root (or the server's user) and be writable by nobody else, sticky
// directories aside; missing ones are made (mode 0755). dir itself is made,
// or must be an empty directory of root (or the server's user); either way it
// is left with mode 0700, so that no other user reaches the distro's setuid
// programs or device nodes. The walk goes by file descriptor and follows no
// symlink, so a directory swapped for a link while it runs fails it. Errors
// wrap ErrInvalid.
func prepareLocation(dir string) (real string, created bool, err error) {
	real, err = resolveExisting(dir)
	if err != nil {
		return "", false, fmt.Errorf("%w: location %s: %v", ErrInvalid, dir, err)
	}
	pfd, err := openParent(real, true)
	if err != nil {
		if errors.Is(err, errUnsafeParent) {
			return "", false, fmt.Errorf("%w: location %s: %v: choose a location whose parent directories belong to root and that only root can write to", ErrInvalid, dir, err)
		}
		return "", false, fmt.Errorf("%w: location %s: %v", ErrInvalid, dir, err)
	}
	defer unix.Close(pfd)
	name := filepath.Base(real)
	if err := unix.Mkdirat(pfd, name, 0o700); err == nil {
		created = true
	} else if !errors.Is(err, unix.EEXIST) {
		return "", false, fmt.Errorf("%w: location %s: create: %v", ErrInvalid, dir, err)
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false, fmt.Errorf("%w: location %s is not a directory: %v", ErrInvalid, dir, err)
	}
	defer unix.Close(fd)
	fail := func(err error) (string, bool, error) {
		if created {
			unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
		}
		return "", false, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(fmt.Errorf("location %s: stat: %w", dir, err))
	}
	if !trustedUID(st.Uid) {
		return fail(fmt.Errorf("%w: location %s belongs to uid %d: give a new directory, or an empty one of root's", ErrInvalid, dir, st.Uid))
	}
	if !created {
		names, err := readDirNames(fd, 1)
		if err != nil {
			return fail(fmt.Errorf("%w: location %s: %v", ErrInvalid, dir, err))
		}
		if len(names) > 0 {
			return fail(fmt.Errorf("%w: location %s is not empty", ErrInvalid, dir))
		}
	}
	if err := unix.Fchmod(fd, 0o700); err != nil {
		return fail(fmt.Errorf("location %s: chmod: %w", dir, err))
	}
	return real, created, nil
}

// securePrivateDir makes sure that dir, a directory the server keeps distros
// (or their staging) in, belongs to root (or the server's user) and is
// reachable by nobody else: it tightens a looser mode to 0700 and says so
// (tightened), and refuses a directory of another user, or a symlink.
func securePrivateDir(dir string) (tightened bool, err error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", dir, err)
	}
	if !trustedUID(st.Uid) {
		return false, fmt.Errorf("%s belongs to uid %d; only root (or the server's user) may own it", dir, st.Uid)
	}
	if st.Mode&0o077 == 0 {
		return false, nil
	}
	if err := unix.Fchmod(fd, st.Mode&0o7700); err != nil {
		return false, fmt.Errorf("chmod %s: %w", dir, err)
	}
	return true, nil
}

// unsafeParents says why the directories above dir let another user swap
// it, or "" when they do not.
func unsafeParents(dir string) string {
	fd, err := openParent(filepath.Clean(dir), false)
	if err != nil {
		return err.Error()
	}
	unix.Close(fd)
	return ""
}

// readDirNames reads the names in the directory open as fd (without "." and
// ".."), up to max of them when max > 0. It reads through the descriptor, so
// no path is looked up.
func readDirNames(fd, max int) ([]string, error) {
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return names, fmt.Errorf("read directory: %w", err)
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
		if max > 0 && len(names) >= max {
			return names[:max], nil
		}
	}
}

// isNoSpace reports whether err is the file system's "full" (ENOSPC, or
// EDQUOT: over the user's quota).
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}
