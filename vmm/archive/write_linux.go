package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Write streams the tree at src to w as a PAX tarball in format f, for export
// and clone. Names are relative with a "./" prefix, as `tar -C src -c .` and
// mmdebstrap write them; owners are numeric; modes, nanosecond mtimes and
// extended attributes (security.capability among them) are kept; files with
// several links are written once and then as hard links; device nodes and
// fifos are kept and sockets skipped.
//
// The walk goes by file descriptor (see Walk): every open is openat(parent,
// name, O_NOFOLLOW) on one component, so a symlink that a running distro
// swaps in mid-walk is never followed and cannot make the server read a host
// file, and however deep the tree, the walk holds a bounded number of
// descriptors. A file that shrinks while it is read is padded with zeros, as
// GNU tar does. Write does not close w.
func Write(ctx context.Context, w io.Writer, src string, f Format) error {
	cw, closeFn, err := compressor(w, f)
	if err != nil {
		return err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	e := &exporter{
		ctx:   ctx,
		tw:    tar.NewWriter(cw),
		links: make(map[devIno]string),
		buf:   *bp,
		log:   slog.Default(),
	}
	opt := WalkOptions{Sorted: true, Changed: func(path string, err error) {
		// Swapped for a symlink or removed between stat and open: the
		// distro is changing under us. Skip it rather than follow anything.
		e.log.Warn("archive: skipped entry that changed during export", "entry", "./"+path, "err", err)
	}}
	if err := Walk(ctx, src, opt, e.entry); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("export: %w", err)
		}
		return err
	}
	if err := e.tw.Close(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	if err := closeFn(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}

type devIno struct{ dev, ino uint64 }

type exporter struct {
	ctx   context.Context
	tw    *tar.Writer
	links map[devIno]string // first name of each multiply linked file
	buf   []byte
	log   *slog.Logger
}

// entry writes the entry Walk visits.
func (e *exporter) entry(we *WalkEntry) error {
	aname := "./" + we.Path
	st := &we.Stat
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if we.Path != "" {
			aname += "/"
		}
		return e.header(aname, st, tar.TypeDir, "", e.xattrsFd(we.Fd))
	case unix.S_IFREG:
		key := devIno{st.Dev, st.Ino}
		if st.Nlink > 1 {
			if first, ok := e.links[key]; ok {
				return e.header(aname, st, tar.TypeLink, first, nil)
			}
		}
		written, err := e.file(we.Dir, we.Name, aname)
		if written && st.Nlink > 1 {
			e.links[key] = aname
		}
		return err
	case unix.S_IFLNK:
		target, err := readlinkat(we.Dir, we.Name)
		if err != nil {
			return fmt.Errorf("read symlink %q: %w", aname, err)
		}
		return e.header(aname, st, tar.TypeSymlink, target, e.xattrsAt(we.Dir, we.Name))
	case unix.S_IFCHR:
		return e.header(aname, st, tar.TypeChar, "", e.xattrsAt(we.Dir, we.Name))
	case unix.S_IFBLK:
		return e.header(aname, st, tar.TypeBlock, "", e.xattrsAt(we.Dir, we.Name))
	case unix.S_IFIFO:
		return e.header(aname, st, tar.TypeFifo, "", e.xattrsAt(we.Dir, we.Name))
	}
	e.log.Warn("archive: skipped socket", "entry", aname)
	return nil
}

func (e *exporter) openError(aname string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) {
		// Swapped for a symlink or removed between stat and open: the distro
		// is changing under us. Skip it rather than follow anything.
		e.log.Warn("archive: skipped entry that changed during export", "entry", aname, "err", err)
		return nil
	}
	return fmt.Errorf("open %q: %w", aname, err)
}

// file writes a regular file; written reports whether its header went out,
// so that later hard links may refer to it.
func (e *exporter) file(dirfd int, name, aname string) (written bool, err error) {
	// O_NONBLOCK so that a fifo swapped in cannot block the open; O_NOFOLLOW
	// so that a symlink swapped in is not followed.
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, e.openError(aname, err)
	}
	f := os.NewFile(uintptr(fd), aname)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("stat %q: %w", aname, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		e.log.Warn("archive: skipped entry that changed during export", "entry", aname)
		return false, nil
	}
	if err := e.header(aname, &st, tar.TypeReg, "", e.xattrsFd(fd)); err != nil {
		return false, err
	}
	// Copy exactly the size in the header: a file that grows is cut, one
	// that shrinks is padded with zeros (the header is already written).
	left := st.Size
	for left > 0 {
		if err := e.ctx.Err(); err != nil {
			return true, err
		}
		chunk := e.buf[:min(int64(len(e.buf)), left)]
		n, err := io.ReadFull(f, chunk)
		if n > 0 {
			if _, werr := e.tw.Write(chunk[:n]); werr != nil {
				return true, fmt.Errorf("write archive: %w", werr)
			}
			left -= int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			e.log.Warn("archive: file shrank during export; padding with zeros", "entry", aname, "missing", left)
			clear(e.buf)
			for left > 0 {
				n := min(int64(len(e.buf)), left)
				if _, werr := e.tw.Write(e.buf[:n]); werr != nil {
					return true, fmt.Errorf("write archive: %w", werr)
				}
				left -= n
			}
			break
		}
		if err != nil {
			return true, fmt.Errorf("read %q: %w", aname, err)
		}
	}
	return true, nil
}

// header writes one entry's header from its stat.
func (e *exporter) header(aname string, st *unix.Stat_t, typ byte, link string, xattrs map[string]string) error {
	hdr := &tar.Header{
		Typeflag:   typ,
		Name:       aname,
		Linkname:   link,
		Mode:       int64(st.Mode & 0o7777),
		Uid:        int(st.Uid),
		Gid:        int(st.Gid),
		ModTime:    time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		PAXRecords: xattrs,
		Format:     tar.FormatPAX, // keeps nanoseconds, long names, big ids
	}
	switch typ {
	case tar.TypeReg:
		hdr.Size = st.Size
	case tar.TypeChar, tar.TypeBlock:
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	}
	if err := e.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write archive header for %q: %w", aname, err)
	}
	return nil
}

// skipXattr tells which attributes not to export: an SELinux label is the
// host's policy, not the distro's.
func skipXattr(name string) bool {
	return name == "security.selinux"
}

// xattrsFd returns the extended attributes of the open file fd as PAX records.
func (e *exporter) xattrsFd(fd int) map[string]string {
	return readXattrs(
		func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
		func(name string, b []byte) (int, error) { return unix.Fgetxattr(fd, name, b) })
}

// xattrsAt returns the extended attributes of entry name of dirfd, which may
// be a symlink or a device and so is not opened.
func (e *exporter) xattrsAt(dirfd int, name string) map[string]string {
	p := procPath(dirfd, name)
	return readXattrs(
		func(b []byte) (int, error) { return unix.Llistxattr(p, b) },
		func(attr string, b []byte) (int, error) { return unix.Lgetxattr(p, attr, b) })
}

func readXattrs(list func([]byte) (int, error), get func(string, []byte) (int, error)) map[string]string {
	names, err := growCall(list)
	if err != nil || len(names) == 0 {
		return nil // no attributes, or a file system without them
	}
	var recs map[string]string
	for name := range strings.SplitSeq(strings.TrimRight(string(names), "\x00"), "\x00") {
		if name == "" || skipXattr(name) {
			continue
		}
		val, err := growCall(func(b []byte) (int, error) { return get(name, b) })
		if err != nil {
			continue
		}
		if recs == nil {
			recs = make(map[string]string)
		}
		recs[xattrPrefix+name] = string(val)
	}
	return recs
}

// growCall calls a get/list xattr function with a buffer that grows on ERANGE.
func growCall(call func([]byte) (int, error)) ([]byte, error) {
	n, err := call(nil)
	if err != nil {
		return nil, err
	}
	for {
		if n == 0 {
			return nil, nil
		}
		b := make([]byte, n)
		m, err := call(b)
		if err == unix.ERANGE {
			n *= 2 // it grew between the calls
			continue
		}
		if err != nil {
			return nil, err
		}
		return b[:m], nil
	}
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		b := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, b)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(b[:n]), nil
		}
	}
}

// maxWalkFds bounds the directory descriptors a Walk holds at once, besides
// the root's: the levels above the deepest maxWalkFds are closed, and
// reopened one at a time through ".." when the walk climbs back to them.
var maxWalkFds = 32

// WalkEntry is one entry of a tree, as Walk hands it to its function.
type WalkEntry struct {
	// Path is the entry's path below the root, slash-separated; "" for the
	// root itself.
	Path string
	// Dir is the open directory that holds the entry and Name its name in
	// it, for *at system calls (never following a symlink in Name). Dir is
	// -1 for the root. It is valid only during the call.
	Dir  int
	Name string
	// Stat is the entry's lstat; for a directory, the fstat of the
	// directory as Walk opened it.
	Stat unix.Stat_t
	// Fd is, for a directory, its own descriptor (opened with O_NOFOLLOW),
	// valid only during the call; -1 for other entries.
	Fd int
}

// WalkOptions tune Walk.
type WalkOptions struct {
	// Sorted visits each directory's entries in name order (exports are
	// then reproducible); otherwise in the order the file system lists them.
	Sorted bool
	// OneFileSystem leaves out directories on another file system than
	// the root's (mount points), with all below them, as du -x does.
	OneFileSystem bool
	// Changed, if set, hears of each entry that disappeared or changed its
	// type between being listed and being opened (a running distro changes
	// its tree at will); Walk skips those.
	Changed func(path string, err error)
}

// errMoved reports that a directory was moved out from under the walk.
var errMoved = errors.New("directory moved during the walk")

// walkFrame is one directory on the walk's path from the root.
type walkFrame struct {
	fd       int // -1 while released (see maxWalkFds)
	dev, ino uint64
	path     string
	names    []string
	next     int
}

// Walk calls fn for the directory root and every entry below it, a
// directory before its entries, depth first. It walks by file descriptor, as
// a tree that a running distro may change at will must be walked by a
// server running as root: every entry is reached with fstatat and openat on
// one name relative to its open parent, with O_NOFOLLOW, so no symlink is
// ever followed (a symlink is an entry like any other), and however deep
// the tree (a distro can make one deeper than PATH_MAX), Walk holds at most
// a few dozen descriptors: the directories above the deepest levels are
// closed and reopened through "..", checked by device and inode, when the
// walk climbs back. A directory moved while the walk is inside it stops the
// walk with an error.
//
// If fn returns fs.SkipDir for a directory, Walk does not enter it; any
// other error stops the walk and is returned. Cancelling ctx stops it too.
func Walk(ctx context.Context, root string, opt WalkOptions, fn func(*WalkEntry) error) error {
	const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	// The root itself is the server's own path: follow symlinks to it.
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", root, err)
	}
	stack := []walkFrame{{fd: fd}}
	defer func() {
		for _, f := range stack {
			if f.fd >= 0 {
				unix.Close(f.fd)
			}
		}
	}()
	e := &WalkEntry{Dir: -1, Name: ".", Fd: fd}
	if err := unix.Fstat(fd, &e.Stat); err != nil {
		return fmt.Errorf("stat %s: %w", root, err)
	}
	rootDev := e.Stat.Dev
	stack[0].dev, stack[0].ino = e.Stat.Dev, e.Stat.Ino
	if err := fn(e); err != nil {
		if err == fs.SkipDir {
			return nil
		}
		return err
	}
	if stack[0].names, err = readNames(fd, opt.Sorted); err != nil {
		return fmt.Errorf("read directory %s: %w", root, err)
	}
	changed := func(path string, err error) {
		if opt.Changed != nil {
			opt.Changed(path, err)
		}
	}
	low := 1 // stack[low:] are open; stack[1:low] are released
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		top := &stack[len(stack)-1]
		if top.next == len(top.names) {
			child := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if n := len(stack); n > 0 && stack[n-1].fd < 0 {
				// Climb back to a released parent through "..", which is
				// never a symlink, and make sure it is the same directory.
				pfd, err := unix.Openat(child.fd, "..", dirFlags, 0)
				var st unix.Stat_t
				if err == nil {
					if err = unix.Fstat(pfd, &st); err == nil && (st.Dev != stack[n-1].dev || st.Ino != stack[n-1].ino) {
						err = errMoved
					}
				}
				if err != nil {
					if pfd >= 0 {
						unix.Close(pfd)
					}
					unix.Close(child.fd)
					return fmt.Errorf("walk %s: climb back to %q: %w", root, stack[n-1].path, err)
				}
				stack[n-1].fd = pfd
				low = n - 1
			}
			unix.Close(child.fd)
			continue
		}
		name := top.names[top.next]
		top.next++
		path := name
		if top.path != "" {
			path = top.path + "/" + name
		}
		e := &WalkEntry{Path: path, Dir: top.fd, Name: name, Fd: -1}
		if err := unix.Fstatat(top.fd, name, &e.Stat, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				changed(path, err)
				continue
			}
			return fmt.Errorf("stat %q: %w", path, err)
		}
		if e.Stat.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := fn(e); err != nil && err != fs.SkipDir {
				return err
			}
			continue
		}
		if opt.OneFileSystem && e.Stat.Dev != rootDev {
			continue
		}
		cfd, err := unix.Openat(top.fd, name, dirFlags, 0)
		if err != nil {
			if err == unix.ELOOP || err == unix.ENOTDIR || err == unix.ENOENT {
				changed(path, err)
				continue
			}
			return fmt.Errorf("open %q: %w", path, err)
		}
		// Describe what was opened, not what was stat'ed a moment before.
		if err := unix.Fstat(cfd, &e.Stat); err != nil {
			unix.Close(cfd)
			return fmt.Errorf("stat %q: %w", path, err)
		}
		if opt.OneFileSystem && e.Stat.Dev != rootDev {
			unix.Close(cfd)
			continue
		}
		e.Fd = cfd
		err = fn(e)
		var names []string
		if err == nil {
			if names, err = readNames(cfd, opt.Sorted); err != nil {
				err = fmt.Errorf("read directory %q: %w", path, err)
			}
		}
		if err != nil {
			unix.Close(cfd)
			if err == fs.SkipDir {
				continue
			}
			return err
		}
		stack = append(stack, walkFrame{fd: cfd, dev: e.Stat.Dev, ino: e.Stat.Ino, path: path, names: names})
		if len(stack)-low > maxWalkFds {
			unix.Close(stack[low].fd)
			stack[low].fd = -1
			low++
		}
	}
	return nil
}

// readNames lists the directory open as fd, through a duplicate so that
// closing the *os.File used for reading leaves fd open.
func readNames(fd int, sorted bool) ([]string, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	df := os.NewFile(uintptr(dup), "")
	names, err := df.Readdirnames(-1)
	df.Close()
	if sorted {
		slices.Sort(names)
	}
	return names, err
}

// DiskUsage adds up the space the tree at root takes on root's file system,
// like du -sx, walking it as Walk does (by file descriptor, never following a
// symlink, with a bounded number of descriptors), so that it is safe on the
// tree of a running distro. What vanishes during the walk is not counted.
func DiskUsage(ctx context.Context, root string) (Usage, error) {
	var u Usage
	seen := make(map[devIno]bool)
	err := Walk(ctx, root, WalkOptions{OneFileSystem: true}, func(e *WalkEntry) error {
		if e.Stat.Nlink > 1 && e.Stat.Mode&unix.S_IFMT != unix.S_IFDIR {
			k := devIno{e.Stat.Dev, e.Stat.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		u.Bytes += e.Stat.Blocks * 512
		u.Apparent += e.Stat.Size
		u.Entries++
		return nil
	})
	return u, err
}
