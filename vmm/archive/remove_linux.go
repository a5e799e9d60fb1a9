package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxRemoveRounds bounds how often RemoveAll lists a directory again when
// removing it finds it refilled: a program that keeps creating entries must
// not keep the server removing for ever.
var maxRemoveRounds = 8

var (
	// errMountPoint reports a mount point below the tree being removed.
	errMountPoint = errors.New("mount point inside the tree: left it and what is mounted there")
	// ErrMountPoint is errMountPoint for callers that branch on it: the
	// rest of the tree was removed, the mount point and its parents left.
	ErrMountPoint = errMountPoint
	// errRefilled reports a directory that kept refilling during the removal.
	errRefilled = errors.New("directory kept refilling during the removal")
)

// removeAllEntered, when set (by tests), hears of every directory RemoveAll
// opens, with its depth below the path (the path itself is 0).
var removeAllEntered func(depth int)

// RemoveAll removes path and everything below it, as os.RemoveAll does (a
// path that does not exist is no error; a symlink given as path is removed,
// not followed), but safely for the tree of a distro whose programs may be
// hostile to the server and running during the removal:
//
//   - It goes by file descriptor, as Walk does: an entry is removed with
//     unlinkat(parent, name) and a directory entered with openat(parent,
//     name, O_NOFOLLOW|O_DIRECTORY) on one name, so a symlink is removed,
//     never followed, whatever is swapped in during the removal.
//   - However deep the tree (a distro can make one far deeper than the
//     server's RLIMIT_NOFILE), it holds at most about maxWalkFds descriptors,
//     where os.RemoveAll holds one per level: directories above the deepest
//     levels are closed and reopened through ".." on the way back up.
//   - Its memory is bounded as Walk's is: one name per level, and one batch
//     of a directory's entries at a time (it removes them as it reads them),
//     however many entries the directory has.
//   - Before it removes a directory it checks, by device and inode, that the
//     directory still sits in the parent it was found in (the ".." it
//     reopens is that parent). If a directory was moved during the removal,
//     it stops with an error rather than guess where it is: it goes on only
//     in directories it can place inside the tree. (What it removed in the
//     moved directory before it noticed was in the tree when it entered it.)
//   - It does not enter a mount point below path, where a distro's mount of
//     the host's files could have been left behind: it leaves it, and the
//     directories above it, removes the rest and then reports the mount
//     point. Path itself may be a mount point.
//
// Entries created while it runs are removed too, in up to maxRemoveRounds
// more listings of each directory; each listing hands out at most as many
// entries as the directory held when it began (see dirLister.start), so that
// a program creating entries as fast as they are removed cannot keep it
// going. The directories above path are the server's own and are resolved
// as any path.
func RemoveAll(path string) error {
	if path == "" {
		// As os.RemoveAll.
		return nil
	}
	// rmdir cannot remove ".", nor can anything remove "/".
	dir, base := filepath.Split(filepath.Clean(path))
	if strings.HasSuffix(path, "/.") || base == "" || base == "." || base == ".." {
		return &fs.PathError{Op: "RemoveAll", Path: path, Err: unix.EINVAL}
	}
	if dir == "" {
		dir = "."
	}
	// O_PATH: removing entries needs write permission on the parent, not
	// read permission.
	pfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil // nor can path exist
	}
	if err != nil {
		return fmt.Errorf("remove %s: open parent directory: %w", path, err)
	}
	r := &remover{stack: []removeFrame{{fd: pfd}}, low: 1}
	defer r.close()
	sx, err := statxAt(pfd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("remove %s: stat parent directory: %w", path, err)
	}
	r.stack[0].id = statxID(&sx)
	if err := r.run(base); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// removeFrame is one directory on RemoveAll's path down from the parent of
// the path it removes (stack[0], which is not listed: only that path's name
// is removed from it).
type removeFrame struct {
	fd     int // -1 while released (see maxWalkFds)
	id     devIno
	name   string    // in the frame above
	list   dirLister // the listing, read as the removal goes
	rounds int       // how often the listing began again
	kept   bool      // something below is left in place (a mount point)
}

// remover is the state of one RemoveAll. Only names, not paths, are kept
// per level: a path per level would take memory in the square of the depth.
type remover struct {
	stack []removeFrame
	low   int // stack[low:] are open; stack[1:low] are released
	bufs  direntBufs
	kept  error // why the first entry left in place was left
}

func (r *remover) close() {
	for _, f := range r.stack {
		if f.fd >= 0 {
			unix.Close(f.fd)
		}
	}
}

// run removes base from stack[0] and, if it is a directory, the entries of
// the top frame one by one, entering directories and leaving them once
// empty, until only stack[0] is left. It stops at the first error, but for
// mount points, which it leaves.
func (r *remover) run(base string) error {
	if err := r.remove(&r.stack[0], base); err != nil {
		return err
	}
	for len(r.stack) > 1 {
		top := &r.stack[len(r.stack)-1]
		name, err := top.list.next(top.fd)
		if err != nil {
			return r.errorf("read directory", "", err)
		}
		if name == "" {
			err = r.leave()
		} else {
			err = r.remove(top, name)
		}
		if err != nil {
			return err
		}
	}
	return r.kept
}

// remove removes the entry name of top if it is not a directory, and
// otherwise enters it (pushes it on the stack).
func (r *remover) remove(top *removeFrame, name string) error {
	// Most entries are not directories: try to unlink first, which never
	// follows a symlink, and find out it is a directory from EISDIR.
	uerr := unix.Unlinkat(top.fd, name, 0)
	if uerr == nil || uerr == unix.ENOENT {
		return nil
	}
	// EPERM and EACCES may also be what a directory gets (with the sticky
	// bit, or in a directory we may not write): see whether it is one.
	if uerr != unix.EISDIR && uerr != unix.EPERM && uerr != unix.EACCES {
		return r.errorf("remove", name, uerr)
	}
	fd, err := openDirNoFollow(top.fd, name)
	switch {
	case err == unix.ENOENT:
		return nil
	case err == unix.ENOTDIR || err == unix.ELOOP:
		return r.errorf("remove", name, uerr) // not a directory after all
	case err != nil:
		return r.errorf("open", name, err)
	}
	sx, err := statxAt(fd, "", unix.AT_EMPTY_PATH)
	if err == nil && len(r.stack) > 1 && isMountRoot(&sx, top.id) {
		unix.Close(fd)
		top.kept = true
		if r.kept == nil {
			r.kept = r.errorf("leave", name, errMountPoint)
		}
		return nil
	}
	f := removeFrame{fd: fd, id: statxID(&sx), name: name}
	if err == nil {
		err = f.list.start(fd, r.bufs.get())
	}
	if err != nil {
		r.bufs.put(f.list.release())
		unix.Close(fd)
		return r.errorf("open", name, err)
	}
	r.push(f)
	if removeAllEntered != nil {
		removeAllEntered(len(r.stack) - 2)
	}
	return nil
}

// push puts f on the stack and releases the highest open directory below
// stack[0] when more than maxWalkFds are open.
func (r *remover) push(f removeFrame) {
	r.stack = append(r.stack, f)
	if len(r.stack)-r.low > maxWalkFds {
		rf := &r.stack[r.low]
		unix.Close(rf.fd)
		rf.fd = -1
		r.bufs.put(rf.list.release())
		r.low++
	}
}

// leave pops the top directory, which has no entries left, makes sure it
// is still in its parent (reopening the parent through ".." if it was
// released) and removes it; if it has been refilled meanwhile, it lists it
// again and pushes it back. A directory with entries kept is kept too.
func (r *remover) leave() error {
	child := r.stack[len(r.stack)-1]
	r.stack = r.stack[:len(r.stack)-1]
	buf := child.list.release()
	parent := &r.stack[len(r.stack)-1]
	if err := r.checkParent(&child, parent); err != nil {
		r.bufs.put(buf)
		unix.Close(child.fd)
		return err
	}
	if child.kept {
		r.bufs.put(buf)
		unix.Close(child.fd)
		parent.kept = true
		return nil
	}
	err := unix.Unlinkat(parent.fd, child.name, unix.AT_REMOVEDIR)
	if (err == unix.ENOTEMPTY || err == unix.EEXIST) && child.rounds < maxRemoveRounds {
		// Something was created in it since its listing began, or more
		// than the listing would hand out: list it again from the start.
		if err := child.list.start(child.fd, buf); err != nil {
			r.bufs.put(child.list.release())
			unix.Close(child.fd)
			return r.errorf("read directory", child.name, err)
		}
		child.rounds++
		r.push(child)
		return nil
	}
	r.bufs.put(buf)
	unix.Close(child.fd)
	switch {
	case err == nil || err == unix.ENOENT:
		return nil
	case err == unix.ENOTEMPTY || err == unix.EEXIST:
		err = errRefilled
	}
	return r.errorf("remove", child.name, err)
}

// checkParent checks that the directory open as child.fd is still in
// parent: that its ".." is the directory recorded for parent. If parent was
// released, that ".." is opened to become parent's descriptor again, and
// parent's listing resumes where it was left.
func (r *remover) checkParent(child, parent *removeFrame) error {
	pfd := -1
	var sx unix.Statx_t
	var err error
	if parent.fd >= 0 {
		sx, err = statxAt(child.fd, "..", unix.AT_SYMLINK_NOFOLLOW)
	} else if pfd, err = openDirNoFollow(child.fd, ".."); err == nil {
		sx, err = statxAt(pfd, "", unix.AT_EMPTY_PATH)
	}
	if err == nil && statxID(&sx) != parent.id {
		err = errMoved
	}
	if err == nil && pfd >= 0 {
		if err = parent.list.resume(pfd, r.bufs.get()); err != nil {
			r.bufs.put(parent.list.release())
		}
	}
	if err != nil {
		if pfd >= 0 {
			unix.Close(pfd)
		}
		return r.errorf("go back up from", child.name, err)
	}
	if pfd >= 0 {
		parent.fd = pfd
		r.low = len(r.stack) - 1
	}
	return nil
}

// errorf wraps err with op and where name, in the top frame, is below the
// path being removed; name "" is the top frame itself.
func (r *remover) errorf(op, name string, err error) error {
	return fmt.Errorf("%s %q: %w", op, r.where(name), err)
}

// where returns the path of name in the top frame (of the top frame itself
// if name is "") relative to the path being removed, shortened in the
// middle when it is deep.
func (r *remover) where(name string) string {
	var parts []string
	if len(r.stack) > 2 {
		for _, f := range r.stack[2:] {
			parts = append(parts, f.name)
		}
	}
	if len(r.stack) > 1 && name != "" {
		parts = append(parts, name)
	}
	if len(parts) == 0 {
		return "."
	}
	const head, tail = 4, 8
	if n := len(parts); n > head+tail+1 {
		parts = append(append(parts[:head:head], fmt.Sprintf("…(%d levels)…", n-head-tail)), parts[n-tail:]...)
	}
	return strings.Join(parts, "/")
}

// openDirNoFollow opens the directory name in dirfd, never following a
// symlink, without updating its access time where the kernel lets us.
func openDirNoFollow(dirfd int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		// O_NOATIME is for the owner or CAP_FOWNER only.
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	return fd, err
}

// statxAt is statx for the inode number, type and mount-root attribute.
func statxAt(dirfd int, name string, flags int) (unix.Statx_t, error) {
	var sx unix.Statx_t
	err := unix.Statx(dirfd, name, flags|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_TYPE|unix.STATX_INO, &sx)
	return sx, err
}

func statxID(sx *unix.Statx_t) devIno {
	return devIno{unix.Mkdev(sx.Dev_major, sx.Dev_minor), sx.Ino}
}

// isMountRoot reports whether sx, a directory in parent, is the root of a
// mount. Kernels before 5.8 do not say; there a directory on another device
// than its parent counts as one (a btrfs subvolume too, unfortunately).
func isMountRoot(sx *unix.Statx_t, parent devIno) bool {
	if sx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return sx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
	}
	return statxID(sx).dev != parent.dev
}
