package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
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
// descriptors. Its memory grows with the depth by a name and a few words
// per level and is otherwise bounded: the names it holds to list each
// directory in order (for reproducible archives) and to write hard links
// are capped by maxSortedBytes and maxExportLinkBytes, and a tree that
// needs more fails the export with an error that says so. A file that shrinks while it is read is padded with
// zeros, as GNU tar does. Write does not close w.
func Write(ctx context.Context, w io.Writer, src string, f Format) error {
	return write(ctx, w, src, f, false)
}

// WriteSkippingMounts is Write that leaves out what is mounted below src
// (the mount points themselves are kept, empty), as tar --one-file-system
// does but telling bind mounts too: for a tree seen from inside a running
// distro, whose /proc, /sys and /mnt/host (the host's root) are mounts.
func WriteSkippingMounts(ctx context.Context, w io.Writer, src string, f Format) error {
	return write(ctx, w, src, f, true)
}

func write(ctx context.Context, w io.Writer, src string, f Format, skipMounts bool) error {
	cw, closeFn, err := compressor(w, f)
	if err != nil {
		return err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	e := &exporter{
		ctx:   ctx,
		tw:    tar.NewWriter(cw),
		links: make(map[devIno]linkTarget),
		buf:   *bp,
		log:   slog.Default(),
	}
	opt := WalkOptions{Sorted: true, SkipMounts: skipMounts, Changed: func(path string, err error) {
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

// maxExportLinkBytes bounds the names of multiply linked files an export
// holds, to write the files' other links as hard links to them: a distro
// can make millions of such files. A name is held only while links of its
// file are still to come, as GNU tar does; an export that would hold more
// (a name counting its length and linkTargetCost) stops with
// errTooManyLinks, rather than write the files again in full, which a
// file with thousands of links would make huge.
var maxExportLinkBytes = 64 << 20

// linkTargetCost is what a held name takes besides its bytes, about: its
// map entry.
const linkTargetCost = 64

// errTooManyLinks reports a tree with too many multiply linked files to
// export within maxExportLinkBytes.
var errTooManyLinks = errors.New("too many hard-linked files to export")

// linkTarget is a multiply linked file already written.
type linkTarget struct {
	name string // its name in the archive
	left uint64 // how many of its links are still to come
}

type exporter struct {
	ctx       context.Context
	tw        *tar.Writer
	links     map[devIno]linkTarget // multiply linked files with links to come
	linkBytes int                   // what links counts against maxExportLinkBytes
	name      []byte                // the entry's archive name, built anew for each
	buf       []byte
	log       *slog.Logger
}

// entry writes the entry Walk visits.
func (e *exporter) entry(we *WalkEntry) error {
	st := &we.Stat
	// Walk keeps no paths: build the name here, in a buffer reused.
	e.name = we.AppendPath(append(e.name[:0], "./"...))
	if st.Mode&unix.S_IFMT == unix.S_IFDIR && we.Dir >= 0 {
		e.name = append(e.name, '/')
	}
	aname := string(e.name)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return e.header(aname, st, tar.TypeDir, "", e.xattrsFd(we.Fd))
	case unix.S_IFREG:
		key := devIno{st.Dev, st.Ino}
		if st.Nlink > 1 {
			if t, ok := e.links[key]; ok {
				e.linkWritten(key, t)
				return e.header(aname, st, tar.TypeLink, t.name, nil)
			}
		}
		written, err := e.file(we.Dir, we.Name, aname)
		if err == nil && written && st.Nlink > 1 {
			err = e.remember(key, aname, st.Nlink-1)
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

// remember holds the name of a multiply linked file just written, for its
// left other links to come.
func (e *exporter) remember(key devIno, name string, left uint64) error {
	cost := len(name) + linkTargetCost
	if e.linkBytes+cost > maxExportLinkBytes {
		return fmt.Errorf("export %q: %w: the names of those whose other links are still to come would take more than %d MiB",
			name, errTooManyLinks, maxExportLinkBytes>>20)
	}
	e.links[key] = linkTarget{name: name, left: left}
	e.linkBytes += cost
	return nil
}

// linkWritten counts a link to t written, and forgets t after its last.
func (e *exporter) linkWritten(key devIno, t linkTarget) {
	if t.left > 1 {
		t.left--
		e.links[key] = t
		return
	}
	delete(e.links, key)
	e.linkBytes -= len(t.name) + linkTargetCost
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
