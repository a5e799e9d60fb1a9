package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxCachedDirs bounds the directory handles Extract keeps open. Archives list
// a directory's entries together, so a small cache catches nearly every lookup.
const maxCachedDirs = 256

// maxTrailer is how much decompressed data after the end of the archive
// Extract reads to reach the compressed stream's checksum.
const maxTrailer = 16 << 20

// syncAtEnd is cleared only by the benchmark that compares the extraction
// alone with tar(1), which does not sync.
var syncAtEnd = true

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Extract reads a tarball, plain or compressed with gzip, zstd or xz (detected
// from its first bytes, never from a name), into dest, which must be an
// existing empty directory, and returns what it read.
//
// Every write goes through a directory handle opened inside dest: os.Root for
// paths of several components, which follows symlinks only while they stay
// inside dest, and *at system calls on a single component with O_NOFOLLOW for
// the entry itself. So an entry, a symlink planted by an earlier entry, or a
// hard link can never create, replace or link a file outside dest; such
// entries fail with ErrUnsafe. On any error the caller removes dest.
//
// Names are taken as relative to dest ("x" and "./x"); absolute names, ".."
// components and NUL bytes are ErrUnsafe, as are relative symlink targets that
// climb above dest. Owners (numeric ids; the distro's own /etc/passwd is what
// counts) are applied only when running as root; device nodes that cannot be
// created (EPERM) and extended attributes the file system refuses are skipped
// with a warning. Directory modes and times are applied at the end, so a
// read-only directory does not stop its later entries. Limits bound the number
// of entries and the sum of their sizes (ErrLimit). A truncated or damaged
// archive is ErrCorrupt; an empty input or one that is not a tarball is
// ErrFormat. Cancelling ctx stops Extract between entries and inside large
// files. The data is synced to disk (syncfs) before Extract returns.
func Extract(ctx context.Context, r io.Reader, dest string, lim Limits) (Stats, error) {
	lim = lim.withDefaults()
	root, err := os.OpenRoot(dest)
	if err != nil {
		return Stats{}, fmt.Errorf("open destination: %w", err)
	}
	defer root.Close()
	rootDir, err := root.OpenFile(".", os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("open destination: %w", err)
	}
	defer rootDir.Close()
	if names, _ := rootDir.Readdirnames(1); len(names) > 0 {
		return Stats{}, fmt.Errorf("extract into %s: destination is not empty", dest)
	}
	rootFd := int(rootDir.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(rootFd, &st); err != nil {
		return Stats{}, fmt.Errorf("stat destination: %w", err)
	}

	d, err := openTar(r)
	if err != nil {
		return Stats{}, err
	}
	defer d.Close()

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	x := &extractor{
		ctx:    ctx,
		lim:    lim,
		root:   root,
		rootFd: rootFd,
		dirs:   make(map[string]dirHandle),
		meta:   make(map[string]*dirMeta),
		buf:    *bp,
		chown:  os.Geteuid() == 0,
		euid:   os.Geteuid(),
		egid:   os.Getegid(),
		// New entries take the group of a setgid parent; only dest can be one
		// while extracting, since directory modes are applied at the end.
		destSetgid: st.Mode&unix.S_ISGID != 0,
		log:        slog.Default(),
	}
	defer x.closeDirs()
	defer x.flushWarnings()

	if err := x.run(tar.NewReader(d)); err != nil {
		return x.stats, err
	}
	// Read what follows the end-of-archive blocks (usually a few KiB of
	// padding) so that the decoder reaches the gzip CRC or the xz and zstd
	// checksums: corruption of data already written is only detected there.
	// The cap stops a hostile stream of padding from being decoded forever.
	// A plain tarball has no checksum, so there is nothing to read for.
	if d.kind != "tar" {
		if _, err := io.CopyN(io.Discard, d, maxTrailer); err != nil && err != io.EOF {
			return x.stats, x.readError(err, "at the end of the archive")
		}
	}
	if err := x.finishDirs(); err != nil {
		return x.stats, err
	}
	// One syncfs instead of an fsync per file: the caller renames the tree into
	// place next, and must not publish a distro whose files are still in cache.
	if !syncAtEnd {
		return x.stats, nil
	}
	if err := unix.Syncfs(rootFd); err != nil {
		return x.stats, fmt.Errorf("sync %s: %w", dest, err)
	}
	return x.stats, nil
}

// dirHandle is an open directory inside the destination. f is set when the
// handle came from os.Root (it owns fd); otherwise fd came from openat.
type dirHandle struct {
	fd int
	f  *os.File
}

// dirMeta is what the archive says about a directory, applied at the end.
type dirMeta struct {
	name         string
	mode         uint32
	uid, gid     int
	atime, mtime time.Time
	pax          map[string]string
}

type extractor struct {
	ctx    context.Context
	lim    Limits
	root   *os.Root
	rootFd int
	// dirs caches open directories by cleaned path. Invariant: if a path is
	// cached, so is its parent; a removed entry drops itself and everything
	// below it. Every cached handle is a directory inside dest.
	dirs       map[string]dirHandle
	meta       map[string]*dirMeta
	buf        []byte
	chown      bool
	euid, egid int
	destSetgid bool
	stats      Stats
	implicit   int    // directories made for entries whose parents were missing
	last       string // name of the last entry read, for errors between entries
	log        *slog.Logger
	warnings   map[string]int
}

func (x *extractor) run(tr *tar.Reader) error {
	for {
		if err := x.ctx.Err(); err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return x.readError(err, "")
		}
		x.stats.Entries++
		if x.stats.Entries > x.lim.MaxEntries {
			return &EntryError{hdr.Name, fmt.Sprintf("more than %d entries", x.lim.MaxEntries), ErrLimit}
		}
		if hdr.Size < 0 {
			return &EntryError{hdr.Name, "negative size", ErrCorrupt}
		}
		if hdr.Size > x.lim.MaxExpandedBytes-x.stats.Bytes {
			return &EntryError{hdr.Name, fmt.Sprintf("expands to more than %d bytes", x.lim.MaxExpandedBytes), ErrLimit}
		}
		x.stats.Bytes += hdr.Size
		if err := x.entry(tr, hdr); err != nil {
			return err
		}
		x.last = hdr.Name
		if len(x.dirs) > maxCachedDirs {
			x.closeDirs()
		}
	}
}

// errTooMany reports that implicit directories pushed the entry count over
// MaxEntries.
var errTooMany = errors.New("too many entries")

// readError classifies an error of the tar reader between entries; where
// says where it happened, "" for after the last entry read.
func (x *extractor) readError(err error, where string) error {
	switch {
	case where != "":
	case x.last == "":
		where = "at the first entry"
	default:
		where = fmt.Sprintf("after entry %q", x.last)
	}
	var se *sourceError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("read archive %s: %w", where, se.err)
	case errors.Is(err, ErrCorrupt):
		return fmt.Errorf("%s: %w", where, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: archive is truncated %s", ErrCorrupt, where)
	}
	return fmt.Errorf("%w: %s: %v", ErrCorrupt, where, err)
}

// dataError classifies an error while reading an entry's data.
func dataError(name string, err error) error {
	var se *sourceError
	switch {
	case errors.As(err, &se):
		return &EntryError{name, "read archive", se.err}
	case errors.Is(err, ErrCorrupt):
		return &EntryError{name, "read data", err}
	case errors.Is(err, io.ErrUnexpectedEOF), err == io.EOF:
		return &EntryError{name, "archive is truncated", ErrCorrupt}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &EntryError{name, "extract", err}
	}
	return &EntryError{name, "read data", fmt.Errorf("%w: %v", ErrCorrupt, err)}
}

// fsError classifies an error of the file system for entry name: escapes
// refused by os.Root are ErrUnsafe; what the archive's own shape causes (a
// parent that is a file, a missing link target, a loop) is ErrCorrupt; the
// rest (a full disk, say) is the host's and passed through.
func fsError(name, what string, err error) error {
	switch {
	case errors.Is(err, errTooMany):
		return &EntryError{name, what + ": too many implicit directories", ErrLimit}
	case isEscape(err):
		return &EntryError{name, what + ": path leaves the destination through a symlink", fmt.Errorf("%w: %v", ErrUnsafe, err)}
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ENOENT), errors.Is(err, unix.ELOOP),
		errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST), errors.Is(err, unix.EISDIR),
		errors.Is(err, unix.ENAMETOOLONG), errors.Is(err, unix.EINVAL):
		return &EntryError{name, what, fmt.Errorf("%w: %v", ErrCorrupt, err)}
	}
	return &EntryError{name, what, err}
}

func (x *extractor) entry(tr *tar.Reader, hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil // archive/tar has already applied it
	case tar.TypeDir, tar.TypeReg, '\x00', tar.TypeCont, tar.TypeGNUSparse,
		tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		x.warn("skipped entry of unknown type", hdr.Name, fmt.Errorf("type %q", hdr.Typeflag))
		return nil
	}
	name, why := cleanName(hdr.Name)
	if why != "" {
		if hdr.Name == "" {
			return &EntryError{hdr.Name, why, ErrCorrupt}
		}
		return &EntryError{hdr.Name, why, ErrUnsafe}
	}
	if name == "" && hdr.Typeflag != tar.TypeDir {
		return &EntryError{hdr.Name, "entry would replace the destination itself", ErrUnsafe}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.mkdir(hdr, name)
	case tar.TypeSymlink:
		return x.symlink(hdr, name)
	case tar.TypeLink:
		return x.link(hdr, name)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return x.mknod(hdr, name)
	}
	return x.file(tr, hdr, name)
}

func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// dir returns an open handle of directory p (a cleaned path, "" for dest),
// opening and caching it and its parents. A component that is a symlink is
// resolved by os.Root, which refuses to leave dest; every other component is
// opened with openat(parent, component, O_NOFOLLOW) from a cached parent, so
// an entry costs one system call for its directory instead of one per
// component. With create, missing directories are made (archives may omit
// parents), with the default mode tar uses for them.
func (x *extractor) dir(p string, create bool) (int, error) {
	if p == "" {
		return x.rootFd, nil
	}
	if h, ok := x.dirs[p]; ok {
		return h.fd, nil
	}
	parent, base := splitPath(p)
	pfd, err := x.dir(parent, create)
	if err != nil {
		return -1, err
	}
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0)
	if err == unix.ENOENT && create {
		// Directories the archive does not list count against MaxEntries
		// too, or one long name could make thousands of them.
		if x.implicit++; x.stats.Entries+x.implicit > x.lim.MaxEntries {
			return -1, &os.PathError{Op: "mkdirat", Path: p, Err: errTooMany}
		}
		if err := unix.Mkdirat(pfd, base, 0o755); err != nil && err != unix.EEXIST {
			return -1, &os.PathError{Op: "mkdirat", Path: p, Err: err}
		}
		fd, err = unix.Openat(pfd, base, flags, 0)
	}
	if err == unix.ENOTDIR || err == unix.ELOOP {
		// A symlink (lib -> usr/lib; O_DIRECTORY|O_NOFOLLOW reports one as
		// ENOTDIR) or a file: os.Root follows a symlink as long as it stays
		// inside dest, fails with "path escapes from parent" otherwise, and
		// with ENOTDIR for a file.
		f, err := x.root.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return -1, err
		}
		h := dirHandle{fd: int(f.Fd()), f: f}
		x.dirs[p] = h
		return h.fd, nil
	}
	if err != nil {
		return -1, &os.PathError{Op: "openat", Path: p, Err: err}
	}
	x.dirs[p] = dirHandle{fd: fd}
	return fd, nil
}

// parent returns the handle of the directory that holds name and name's
// last component, creating missing parents.
func (x *extractor) parent(hdr *tar.Header, name string) (int, string, error) {
	dir, base := splitPath(name)
	pfd, err := x.dir(dir, true)
	if err != nil {
		return -1, "", fsError(hdr.Name, "open parent directory", err)
	}
	return pfd, base, nil
}

func (x *extractor) closeDirs() {
	for p, h := range x.dirs {
		x.closeHandle(h)
		delete(x.dirs, p)
	}
}

func (x *extractor) closeHandle(h dirHandle) {
	if h.f != nil {
		h.f.Close()
	} else {
		unix.Close(h.fd)
	}
}

// create runs mk, which makes base in pfd and fails with EEXIST if something
// is there. Tar archives may hold an entry twice, and the later one wins, so
// on EEXIST the old entry is removed (never opened: it may be a symlink) and
// mk runs again.
func (x *extractor) create(pfd int, base, name string, mk func() error) error {
	err := mk()
	if err != unix.EEXIST {
		return err
	}
	if err := x.remove(pfd, base, name); err != nil {
		return err
	}
	return mk()
}

// remove deletes entry base of pfd (a file, a symlink or an empty directory)
// and forgets cached handles at and below name.
func (x *extractor) remove(pfd int, base, name string) error {
	err := unix.Unlinkat(pfd, base, 0)
	if err == unix.EISDIR || err == unix.EPERM {
		err = unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return &os.PathError{Op: "replace", Path: name, Err: err}
	}
	delete(x.meta, name)
	if h, ok := x.dirs[name]; ok {
		x.closeHandle(h)
		delete(x.dirs, name)
		prefix := name + "/"
		for p, h := range x.dirs {
			if strings.HasPrefix(p, prefix) {
				x.closeHandle(h)
				delete(x.dirs, p)
			}
		}
	}
	return nil
}

func (x *extractor) mkdir(hdr *tar.Header, name string) error {
	if name != "" {
		pfd, base, err := x.parent(hdr, name)
		if err != nil {
			return err
		}
		// 0700 while extracting, so later entries can be written into it even
		// when the archive says read-only; finishDirs applies the real mode.
		err = unix.Mkdirat(pfd, base, 0o700)
		if err == unix.EEXIST {
			var st unix.Stat_t
			if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				// Like tar, replace a file or symlink with the directory
				// rather than write through it.
				if err = x.remove(pfd, base, name); err == nil {
					err = unix.Mkdirat(pfd, base, 0o700)
				}
			}
		}
		if err != nil {
			return fsError(hdr.Name, "create directory", err)
		}
	}
	m := x.meta[name]
	if m == nil {
		m = &dirMeta{name: name}
		x.meta[name] = m
	}
	m.mode = uint32(hdr.Mode & 0o7777)
	m.uid, m.gid = hdr.Uid, hdr.Gid
	m.atime, m.mtime = hdr.AccessTime, hdr.ModTime
	m.pax = nil // keep only xattrs: a rootfs has thousands of directories
	for k, v := range hdr.PAXRecords {
		if strings.HasPrefix(k, xattrPrefix) {
			if m.pax == nil {
				m.pax = make(map[string]string)
			}
			m.pax[k] = v
		}
	}
	return nil
}

func (x *extractor) file(tr *tar.Reader, hdr *tar.Header, name string) error {
	pfd, base, err := x.parent(hdr, name)
	if err != nil {
		return err
	}
	var fd int
	err = x.create(pfd, base, name, func() (err error) {
		// O_EXCL: never open what is there, a symlink least of all.
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return fsError(hdr.Name, "create file", err)
	}
	err = x.copyData(fd, tr, hdr)
	if err == nil {
		err = x.setMeta(fd, hdr, uint32(hdr.Mode&0o7777), hdr.Uid, hdr.Gid, hdr.AccessTime, hdr.ModTime, hdr.PAXRecords)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = &EntryError{hdr.Name, "write file", cerr}
	}
	return err
}

// copyData copies the entry's data to fd in chunks of the pooled buffer,
// checking ctx between chunks so that cancelling a large import is prompt.
func (x *extractor) copyData(fd int, tr *tar.Reader, hdr *tar.Header) error {
	for left := hdr.Size; left > 0; {
		if err := x.ctx.Err(); err != nil {
			return &EntryError{hdr.Name, "extract", err}
		}
		chunk := x.buf[:min(int64(len(x.buf)), left)]
		n, err := io.ReadFull(tr, chunk)
		if err != nil {
			return dataError(hdr.Name, err)
		}
		if err := writeAll(fd, chunk[:n]); err != nil {
			return &EntryError{hdr.Name, "write file", err}
		}
		left -= int64(n)
	}
	return nil
}

// setMeta applies owner, extended attributes, mode and times to the open file
// or directory fd, in the order that keeps each: chown clears setuid, setgid
// and security.capability, so it goes first, and the times go last.
func (x *extractor) setMeta(fd int, hdr *tar.Header, mode uint32, uid, gid int, atime, mtime time.Time, pax map[string]string) error {
	if x.needChown(uid, gid) {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			x.warn("could not set owner", hdr.Name, err)
		}
	}
	for k, v := range pax {
		if attr, ok := strings.CutPrefix(k, xattrPrefix); ok {
			if err := unix.Fsetxattr(fd, attr, []byte(v), 0); err != nil {
				x.warn("could not set extended attribute "+attr, hdr.Name, err)
			}
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return &EntryError{hdr.Name, "set mode", err}
	}
	ts := times(atime, mtime)
	if err := futimens(fd, &ts); err != nil {
		return &EntryError{hdr.Name, "set times", err}
	}
	return nil
}

// needChown reports whether an entry needs a chown: only root may give files
// away, and a file we create already has our ids unless dest is setgid.
func (x *extractor) needChown(uid, gid int) bool {
	return x.chown && (uid != x.euid || gid != x.egid || x.destSetgid)
}

// setMetaAt is setMeta for entries that cannot be opened (symlinks, devices,
// fifos), by name in the directory pfd, without following a symlink.
func (x *extractor) setMetaAt(pfd int, base string, hdr *tar.Header, symlink bool) error {
	if x.needChown(hdr.Uid, hdr.Gid) {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			x.warn("could not set owner", hdr.Name, err)
		}
	}
	for k, v := range hdr.PAXRecords {
		if attr, ok := strings.CutPrefix(k, xattrPrefix); ok {
			if err := unix.Lsetxattr(procPath(pfd, base), attr, []byte(v), 0); err != nil {
				x.warn("could not set extended attribute "+attr, hdr.Name, err)
			}
		}
	}
	if !symlink {
		// Not a symlink, as we just made it, so following is moot; Linux's
		// fchmodat has no working AT_SYMLINK_NOFOLLOW before fchmodat2.
		if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return &EntryError{hdr.Name, "set mode", err}
		}
	}
	ts := times(hdr.AccessTime, hdr.ModTime)
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &EntryError{hdr.Name, "set times", err}
	}
	return nil
}

func (x *extractor) symlink(hdr *tar.Header, name string) error {
	if why := checkSymlinkTarget(name, hdr.Linkname); why != "" {
		if hdr.Linkname == "" {
			return &EntryError{hdr.Name, why, ErrCorrupt}
		}
		return &EntryError{hdr.Name, why, ErrUnsafe}
	}
	pfd, base, err := x.parent(hdr, name)
	if err != nil {
		return err
	}
	if err := x.create(pfd, base, name, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) }); err != nil {
		return fsError(hdr.Name, "create symlink", err)
	}
	return x.setMetaAt(pfd, base, hdr, true)
}

func (x *extractor) link(hdr *tar.Header, name string) error {
	target, why := cleanName(hdr.Linkname)
	switch {
	case hdr.Linkname == "":
		return &EntryError{hdr.Name, "hard link without a target", ErrCorrupt}
	case why != "":
		return &EntryError{hdr.Name, "hard link target: " + why, ErrUnsafe}
	case target == "":
		return &EntryError{hdr.Name, "hard link to the destination directory", ErrCorrupt}
	case target == name:
		return nil // a link to itself: GNU tar writes these for some duplicates
	}
	// Both ends are resolved inside dest, and linkat does not follow a
	// symlink at the target, so a link can never reach a host file.
	tdir, tbase := splitPath(target)
	tfd, err := x.dir(tdir, false)
	if err != nil {
		return fsError(hdr.Name, fmt.Sprintf("hard link target %q", hdr.Linkname), err)
	}
	pfd, base, err := x.parent(hdr, name)
	if err != nil {
		return err
	}
	err = x.create(pfd, base, name, func() error { return unix.Linkat(tfd, tbase, pfd, base, 0) })
	switch {
	case err == unix.ENOENT:
		return &EntryError{hdr.Name, fmt.Sprintf("hard link target %q does not exist", hdr.Linkname), ErrCorrupt}
	case err == unix.EPERM:
		return &EntryError{hdr.Name, fmt.Sprintf("cannot hard link to %q (a directory?)", hdr.Linkname), ErrCorrupt}
	case err != nil:
		return fsError(hdr.Name, "create hard link", err)
	}
	return nil
}

func (x *extractor) mknod(hdr *tar.Header, name string) error {
	pfd, base, err := x.parent(hdr, name)
	if err != nil {
		return err
	}
	mode := uint32(hdr.Mode & 0o777)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	err = x.create(pfd, base, name, func() error { return unix.Mknodat(pfd, base, mode, int(dev)) })
	if err == unix.EPERM {
		// Not root, or in a user namespace: the distro's /dev is a fresh mount
		// at start anyway, so a missing node in the tree is no loss.
		x.warn("skipped device node", hdr.Name, err)
		return nil
	}
	if err != nil {
		return fsError(hdr.Name, "create device node", err)
	}
	return x.setMetaAt(pfd, base, hdr, false)
}

// finishDirs applies the recorded directory metadata, deepest first, so that a
// directory made read-only (or unsearchable) does not stop the ones below it.
// A recorded directory that a later entry replaced is skipped.
func (x *extractor) finishDirs() error {
	list := make([]*dirMeta, 0, len(x.meta))
	for _, m := range x.meta {
		list = append(list, m)
	}
	slices.SortFunc(list, func(a, b *dirMeta) int {
		if da, db := strings.Count(a.name, "/"), strings.Count(b.name, "/"); da != db {
			return db - da
		}
		if a.name == "" || b.name == "" { // dest itself goes last
			return len(b.name) - len(a.name)
		}
		return strings.Compare(a.name, b.name)
	})
	for i, m := range list {
		if i%1024 == 0 {
			if err := x.ctx.Err(); err != nil {
				return fmt.Errorf("extract: %w", err)
			}
		}
		if len(x.dirs) > maxCachedDirs {
			x.closeDirs()
		}
		fd := x.rootFd
		if m.name != "" {
			dir, base := splitPath(m.name)
			pfd, err := x.dir(dir, false)
			if err != nil {
				if isEscape(err) {
					return fsError(m.name, "open directory", err)
				}
				continue
			}
			fd, err = unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue // replaced by a later entry
			}
		}
		hdr := &tar.Header{Name: m.name}
		if m.name == "" {
			hdr.Name = "./"
		}
		err := x.setMeta(fd, hdr, m.mode, m.uid, m.gid, m.atime, m.mtime, m.pax)
		if fd != x.rootFd {
			unix.Close(fd)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// warn logs a problem that does not fail the import; after a few of one kind
// it only counts them, and flushWarnings logs the totals.
func (x *extractor) warn(msg, name string, err error) {
	if x.warnings == nil {
		x.warnings = make(map[string]int)
	}
	x.warnings[msg]++
	if x.warnings[msg] <= 3 {
		x.log.Warn("archive: "+msg, "entry", name, "err", err)
	}
}

func (x *extractor) flushWarnings() {
	for msg, n := range x.warnings {
		if n > 3 {
			x.log.Warn("archive: "+msg, "count", n)
		}
	}
}
