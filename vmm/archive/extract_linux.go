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

// Extract reads a tarball, plain or compressed (detected from its first
// bytes, never from a name), into dest, which must be an existing empty
// directory, and returns what it read.
//
// Every write goes through a directory handle opened inside dest: os.Root for
// paths of several components, which follows symlinks only while they stay
// inside dest, and *at system calls on a single component with O_NOFOLLOW for
// the entry itself. So an entry, a symlink planted by an earlier entry, or a
// hard link can never create, replace or link a file outside dest; such
// entries fail with ErrUnsafe. On any error the caller removes dest.
//
// The archive is read as GNU tar reads it (see tarReader): a header that GNU
// tar, bsdtar, Python or archive/tar would read differently is ErrCorrupt,
// naming the entry and the field, so that what `tar -tvf` shows is what is
// installed. A single zero block, or the end of the input, ends the archive
// as it does for GNU tar. An archive with no entries is ErrFormat.
//
// Names are taken as relative to dest ("x" and "./x"); absolute names, ".."
// components and NUL bytes are ErrUnsafe, as are relative symlink targets that
// climb above dest. Owners (numeric ids; the distro's own /etc/passwd is what
// counts) are applied only when running as root. Device nodes are made only
// under dev/, and only when permitted; the others are skipped and counted
// (Stats.SkippedDevices). Extended attributes the file system refuses are
// skipped with a warning (Stats.Warnings). Directory modes and times are
// applied at the end, so a read-only directory does not stop its later
// entries. Sparse files are written with their holes as holes.
//
// Limits bound the number of entries and the data they hold (ErrLimit), and
// keep free space on dest's file system: when an import would go below the
// reserve, or the file system is full, the error is an
// *InsufficientStorageError (ErrInsufficientStorage). A truncated or damaged
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
	space, err := newSpaceGuard(rootFd, dest, lim)
	if err != nil {
		return Stats{}, err
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
		space:      space,
		log:        slog.Default(),
	}
	x.tr = newTarReader(d, x.note)
	defer x.closeDirs()
	stats := func() Stats {
		x.stats.Warnings = append(x.warningLines(), d.Warnings()...)
		return x.stats
	}

	if err := x.run(); err != nil {
		return stats(), err
	}
	if x.made == 0 {
		return stats(), fmt.Errorf("%w: the archive holds no files", ErrFormat)
	}
	// Read what follows the end-of-archive blocks (usually a few KiB of
	// padding) so that the decoder reaches the gzip CRC or the xz and zstd
	// checksums: corruption of data already written is only detected there.
	// The cap stops a hostile stream of padding from being decoded forever.
	// A plain tarball has no checksum, so there is nothing to read for.
	if d.kind != "tar" {
		if _, err := io.CopyN(io.Discard, d, maxTrailer); err != nil && err != io.EOF {
			return stats(), x.tr.readErr(err, x.tr.off, "the end of the archive")
		}
	}
	if err := x.finishDirs(); err != nil {
		return stats(), err
	}
	// One syncfs instead of an fsync per file: the caller renames the tree into
	// place next, and must not publish a distro whose files are still in cache.
	if !syncAtEnd {
		return stats(), nil
	}
	if err := unix.Syncfs(rootFd); err != nil {
		if isNoSpace(err) {
			// Delayed allocation: the file system found it full only now.
			return stats(), x.space.full(0, err)
		}
		return stats(), fmt.Errorf("sync %s: %w", dest, err)
	}
	return stats(), nil
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
	tr         *tarReader
	space      *spaceGuard
	implicit   int // directories made for entries whose parents were missing
	made       int // entries applied to dest: files, directories, links, nodes
	log        *slog.Logger
	warnings   map[string]*warning
	notes      []string // warnings about the archive as a whole, in order
}

// warning counts one kind of problem that did not fail the import.
type warning struct {
	n     int
	first string // the first entry it happened to
	err   error
}

func (x *extractor) run() error {
	for {
		if err := x.ctx.Err(); err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		e, err := x.tr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		x.stats.Entries++
		if x.stats.Entries > x.lim.MaxEntries {
			return &EntryError{e.Name, fmt.Sprintf("more than %d entries", x.lim.MaxEntries), ErrLimit}
		}
		// The data the archive holds, which is what a file allocates: a
		// sparse file's holes are not in it and are not written.
		if e.data > x.lim.MaxExpandedBytes-x.stats.Bytes {
			return &EntryError{e.Name, fmt.Sprintf("expands to more than %d bytes", x.lim.MaxExpandedBytes), ErrLimit}
		}
		x.stats.Bytes += e.data
		if err := x.entry(e); err != nil {
			return err
		}
		if len(x.dirs) > maxCachedDirs {
			x.closeDirs()
		}
	}
}

// errTooMany reports that implicit directories pushed the entry count over
// MaxEntries.
var errTooMany = errors.New("too many entries")

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
// parent that is a file, a missing link target, a loop) is ErrCorrupt; a full
// file system is an *InsufficientStorageError that names it; the rest is the
// host's and passed through.
func (x *extractor) fsError(name, what string, err error) error {
	switch {
	case errors.Is(err, ErrInsufficientStorage):
		return &EntryError{name, what, err}
	case isNoSpace(err):
		return &EntryError{name, what, x.space.full(0, err)}
	case errors.Is(err, unix.EFBIG):
		return &EntryError{name, what + ": larger than the file system allows", fmt.Errorf("%w: %v", ErrLimit, err)}
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

func (x *extractor) entry(e *tarEntry) error {
	hdr := e.Header
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil // its records change nothing that Extract uses (see globalRefused)
	case 'V':
		return nil // a GNU volume label: a name for the archive, not a file
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		if strings.HasSuffix(hdr.Name, "/") {
			// As GNU tar extracts it (tarReader made sure it has no data).
			hdr.Typeflag = tar.TypeDir
		}
	case 'D':
		// A GNU dumpdir (incremental archives): a directory, and the list
		// of its files as data, which only tar itself uses.
		hdr.Typeflag = tar.TypeDir
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		x.warn("skipped entries of unknown type", hdr.Name, fmt.Errorf("type %q", hdr.Typeflag))
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
	return x.file(e, name)
}

func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// dir returns an open handle of directory p (a cleaned path, "" for dest),
// opening it from the deepest cached ancestor one component at a time. A
// component that is a symlink is resolved by os.Root, which refuses to leave
// dest; every other component is opened with openat(parent, component,
// O_NOFOLLOW), so an entry costs one system call for its directory instead
// of one per component. With create, missing directories are made (archives
// may omit parents), with the default mode tar uses for them.
//
// The handles opened on the way are cached while the cache has room and
// closed otherwise, so a deep name (up to PATH_MAX, some 2,000 levels) holds
// no more than maxCachedDirs descriptors, plus the one returned.
func (x *extractor) dir(p string, create bool) (int, error) {
	if p == "" {
		return x.rootFd, nil
	}
	if h, ok := x.dirs[p]; ok {
		return h.fd, nil
	}
	fd, i := x.rootFd, 0
	for j := strings.LastIndexByte(p, '/'); j > 0; j = strings.LastIndexByte(p[:j], '/') {
		if h, ok := x.dirs[p[:j]]; ok {
			fd, i = h.fd, j+1
			break
		}
	}
	var owned *dirHandle // an uncached handle on the way, closed when passed
	defer func() {
		if owned != nil {
			x.closeHandle(*owned)
		}
	}()
	for {
		sub := p
		if k := strings.IndexByte(p[i:], '/'); k >= 0 {
			sub = p[:i+k]
		}
		h, err := x.openDir(fd, sub, p[i:len(sub)], create)
		if owned != nil {
			x.closeHandle(*owned)
			owned = nil
		}
		if err != nil {
			return -1, err
		}
		if sub == p || len(x.dirs) < maxCachedDirs {
			x.dirs[sub] = h
		} else {
			owned = &h
		}
		if sub == p {
			return h.fd, nil
		}
		fd, i = h.fd, len(sub)+1
	}
}

// openDir opens directory sub (a cleaned path) whose last component base is
// in the directory pfd; see dir.
func (x *extractor) openDir(pfd int, sub, base string, create bool) (dirHandle, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0)
	if err == unix.ENOENT && create {
		// Directories the archive does not list count against MaxEntries
		// too, or one long name could make thousands of them.
		if x.implicit++; x.stats.Entries+x.implicit > x.lim.MaxEntries {
			return dirHandle{}, &os.PathError{Op: "mkdirat", Path: sub, Err: errTooMany}
		}
		if err := x.space.use(x.space.bsize, 0); err != nil {
			return dirHandle{}, err
		}
		if err := unix.Mkdirat(pfd, base, 0o755); err != nil && err != unix.EEXIST {
			return dirHandle{}, &os.PathError{Op: "mkdirat", Path: sub, Err: err}
		}
		fd, err = unix.Openat(pfd, base, flags, 0)
	}
	if err == unix.ENOTDIR || err == unix.ELOOP {
		// A symlink (lib -> usr/lib; O_DIRECTORY|O_NOFOLLOW reports one as
		// ENOTDIR) or a file: os.Root follows a symlink as long as it stays
		// inside dest, fails with "path escapes from parent" otherwise, and
		// with ENOTDIR for a file.
		f, err := x.root.OpenFile(sub, os.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return dirHandle{}, err
		}
		return dirHandle{fd: int(f.Fd()), f: f}, nil
	}
	if err != nil {
		return dirHandle{}, &os.PathError{Op: "openat", Path: sub, Err: err}
	}
	return dirHandle{fd: fd}, nil
}

// parent returns the handle of the directory that holds name and name's
// last component, creating missing parents.
func (x *extractor) parent(hdr *tar.Header, name string) (int, string, error) {
	dir, base := splitPath(name)
	pfd, err := x.dir(dir, true)
	if err != nil {
		return -1, "", x.fsError(hdr.Name, "open parent directory", err)
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
		if err := x.space.use(x.space.bsize, 0); err != nil {
			return &EntryError{hdr.Name, "create directory", err}
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
			return x.fsError(hdr.Name, "create directory", err)
		}
	}
	x.made++
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

func (x *extractor) file(e *tarEntry, name string) error {
	hdr := e.Header
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
		return x.fsError(hdr.Name, "create file", err)
	}
	x.made++
	x.stats.ApparentBytes += hdr.Size
	err = x.copyData(fd, e)
	if err == nil {
		err = x.setMeta(fd, hdr, uint32(hdr.Mode&0o7777), hdr.Uid, hdr.Gid, hdr.AccessTime, hdr.ModTime, hdr.PAXRecords)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = x.fsError(hdr.Name, "write file", cerr)
	}
	return err
}

// copyData writes the entry's data to fd in chunks of the pooled buffer,
// checking ctx between chunks so that cancelling a large import is prompt,
// and the free space before each. A sparse file's fragments go to their
// offsets and the file is then cut to its size, so its holes are never
// written and take no space, as with `tar --sparse -x`.
func (x *extractor) copyData(fd int, e *tarEntry) error {
	frags := e.sparse
	if frags == nil {
		frags = []fragment{{0, e.data}}
	}
	left := e.data // still to write, for InsufficientStorageError.Needed
	for _, f := range frags {
		for done := int64(0); done < f.n; {
			if err := x.ctx.Err(); err != nil {
				return &EntryError{e.Name, "extract", err}
			}
			chunk := x.buf[:min(int64(len(x.buf)), f.n-done)]
			if err := x.space.use(x.space.blocks(int64(len(chunk))), left); err != nil {
				return &EntryError{e.Name, "write file", err}
			}
			if _, err := io.ReadFull(x.tr, chunk); err != nil {
				return dataError(e.Name, err)
			}
			if err := pwriteAll(fd, chunk, f.off+done); err != nil {
				return x.fsError(e.Name, "write file", err)
			}
			done += int64(len(chunk))
			left -= int64(len(chunk))
		}
	}
	if e.sparse != nil {
		if err := unix.Ftruncate(fd, e.Size); err != nil {
			return x.fsError(e.Name, "set the size of sparse file", err)
		}
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
		return x.fsError(hdr.Name, "create symlink", err)
	}
	x.made++
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
		return x.fsError(hdr.Name, fmt.Sprintf("hard link target %q", hdr.Linkname), err)
	}
	pfd, base, err := x.parent(hdr, name)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil &&
		(st.Mode&unix.S_IFMT == unix.S_IFCHR || st.Mode&unix.S_IFMT == unix.S_IFBLK) && !x.inDev(pfd, name) {
		// A second name for a node of dev/ is a device node outside it.
		x.stats.SkippedDevices++
		x.warn("skipped device nodes outside /dev", hdr.Name, nil)
		return nil
	}
	err = x.create(pfd, base, name, func() error { return unix.Linkat(tfd, tbase, pfd, base, 0) })
	switch {
	case err == unix.ENOENT:
		return &EntryError{hdr.Name, fmt.Sprintf("hard link target %q does not exist", hdr.Linkname), ErrCorrupt}
	case err == unix.EPERM:
		return &EntryError{hdr.Name, fmt.Sprintf("cannot hard link to %q (a directory?)", hdr.Linkname), ErrCorrupt}
	case err != nil:
		return x.fsError(hdr.Name, "create hard link", err)
	}
	x.made++
	return nil
}

// inDev reports whether entry name is in dev/ or below, reached through
// directories alone (a symlink on the way, such as dev -> etc, does not
// count), and pfd, the handle its parent was opened as, is that directory.
func (x *extractor) inDev(pfd int, name string) bool {
	dir, _ := splitPath(name)
	if dir != "dev" && !strings.HasPrefix(dir, "dev/") {
		return false
	}
	fd := x.rootFd
	for c := range strings.SplitSeq(dir, "/") {
		nfd, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if fd != x.rootFd {
			unix.Close(fd)
		}
		if err != nil {
			return false
		}
		fd = nfd
	}
	defer unix.Close(fd)
	var a, b unix.Stat_t
	return unix.Fstat(fd, &a) == nil && unix.Fstat(pfd, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino
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
	device := hdr.Typeflag != tar.TypeFifo
	if device && !x.inDev(pfd, name) {
		// A device node elsewhere serves a distro nothing, and would give
		// its users a way to a host device the distro's own /dev (a fresh
		// mount at start) does not offer.
		x.stats.SkippedDevices++
		x.warn("skipped device nodes outside /dev", hdr.Name, nil)
		return nil
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	err = x.create(pfd, base, name, func() error { return unix.Mknodat(pfd, base, mode, int(dev)) })
	if err == unix.EPERM && device {
		// Not root, or in a user namespace: the distro's /dev is a fresh mount
		// at start anyway, so a missing node in the tree is no loss.
		x.stats.SkippedDevices++
		x.warn("skipped device nodes the kernel did not permit", hdr.Name, err)
		return nil
	}
	if err != nil {
		return x.fsError(hdr.Name, "create device node", err)
	}
	x.made++
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
					return x.fsError(m.name, "open directory", err)
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

// warn records a problem with entry name that does not fail the import, for
// Stats.Warnings, and logs the first few of each kind.
func (x *extractor) warn(msg, name string, err error) {
	if x.warnings == nil {
		x.warnings = make(map[string]*warning)
	}
	w := x.warnings[msg]
	if w == nil {
		w = &warning{first: name, err: err}
		x.warnings[msg] = w
	}
	w.n++
	if w.n <= 3 {
		x.log.Warn("archive: "+msg, "entry", name, "err", err)
	}
}

// note records a warning about the archive as a whole.
func (x *extractor) note(msg string) {
	if !slices.Contains(x.notes, msg) {
		x.notes = append(x.notes, msg)
		x.log.Warn("archive: " + msg)
	}
}

// warningLines returns the warnings for Stats: the notes, then one line per
// kind of entry warning with its count and first entry, sorted.
func (x *extractor) warningLines() []string {
	lines := slices.Clone(x.notes)
	var kinds []string
	for msg, w := range x.warnings {
		line := fmt.Sprintf("%s: %q", msg, w.first)
		if w.n > 1 {
			line = fmt.Sprintf("%s: %d entries, the first %q", msg, w.n, w.first)
		}
		if w.err != nil {
			line += fmt.Sprintf(" (%v)", w.err)
		}
		kinds = append(kinds, line)
	}
	slices.Sort(kinds)
	return append(lines, kinds...)
}
