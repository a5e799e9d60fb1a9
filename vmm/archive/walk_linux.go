package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// A tree that a distro made is walked by the server as root, and the
// distro's programs, which may be hostile, choose its shape: millions of
// entries in one directory, or a chain of directories far deeper than
// PATH_MAX. Walk and RemoveAll therefore hold, whatever the shape:
//
//   - a bounded number of descriptors (maxWalkFds);
//   - one name per level of depth, never a path per level, whose length
//     grows with the depth: paths kept for every level would take memory in
//     the square of the depth (about 400 MB at 20,000 levels);
//   - one batch of entries per open directory (direntBufSize), never a whole
//     listing, unless the names must be sorted (an export), in which case
//     they hold at most maxSortedBytes of names.

// maxWalkFds bounds the directory descriptors a Walk holds at once, besides
// the root's: the levels above the deepest maxWalkFds are closed, and
// reopened one at a time through ".." when the walk climbs back to them.
var maxWalkFds = 32

// maxSortedBytes bounds the names a sorted walk (an export) holds to visit
// each directory's entries in order: those of the directories on its path
// from the root, each name counting its length and sortedNameCost. A walk
// that would hold more stops with errTooManyNames. That allows a directory of
// about 2.5 million entries with names 20 bytes long, or 450,000 with the
// longest names.
var maxSortedBytes = 128 << 20

// sortedNameCost is what a name held for a sorted walk takes besides its
// bytes, about: its string header in the list and its allocation's rounding.
const sortedNameCost = 32

// errTooManyNames reports a directory too large to be listed in name order
// within maxSortedBytes.
var errTooManyNames = errors.New("too many entries to list in name order")

// errMoved reports that a directory was moved out from under the walk.
var errMoved = errors.New("directory moved during the walk")

// WalkEntry is one entry of a tree, as Walk hands it to its function. Walk
// reuses it from one call to the next.
type WalkEntry struct {
	// Dir is the open directory that holds the entry and Name its name in
	// it, for *at system calls (never following a symlink in Name). Dir is
	// -1 for the root, whose Name is ".". Dir is valid only during the call.
	Dir  int
	Name string
	// Stat is the entry's lstat; for a directory, the fstat of the
	// directory as Walk opened it.
	Stat unix.Stat_t
	// Fd is, for a directory, its own descriptor (opened with O_NOFOLLOW),
	// valid only during the call; -1 for other entries.
	Fd int

	w *walker // for the path of the directory that holds the entry
}

// Path returns the entry's path below the root, slash-separated; "" for the
// root itself. Walk keeps no path per entry (see above): Path builds one on
// each call, and is valid only during the call to Walk's function.
func (e *WalkEntry) Path() string {
	if e.Dir < 0 {
		return ""
	}
	var b strings.Builder
	b.Grow(len(e.w.path) + 1 + len(e.Name))
	b.Write(e.w.path)
	if len(e.w.path) > 0 {
		b.WriteByte('/')
	}
	b.WriteString(e.Name)
	return b.String()
}

// AppendPath appends the entry's Path to b and returns the extended buffer,
// for a caller that builds names in a buffer of its own.
func (e *WalkEntry) AppendPath(b []byte) []byte {
	if e.Dir < 0 {
		return b
	}
	b = append(b, e.w.path...)
	if len(e.w.path) > 0 {
		b = append(b, '/')
	}
	return append(b, e.Name...)
}

// WalkOptions tune Walk.
type WalkOptions struct {
	// Sorted visits each directory's entries in name order (exports are
	// then reproducible); otherwise in the order the file system lists them.
	// Sorting needs a directory's names all at once: see maxSortedBytes.
	Sorted bool
	// OneFileSystem leaves out directories on another file system than
	// the root's (mount points), with all below them, as du -x does.
	OneFileSystem bool
	// SkipMounts visits a directory that is the root of a mount (a bind
	// mount of the same file system too, which OneFileSystem cannot tell)
	// but not what is below it.
	SkipMounts bool
	// Changed, if set, hears of each entry that disappeared or changed its
	// type between being listed and being opened (a running distro changes
	// its tree at will); Walk skips those.
	Changed func(path string, err error)
}

// walker is the state of one Walk.
type walker struct {
	root  string
	opt   WalkOptions
	fn    func(*WalkEntry) error
	dev   uint64      // the root's device, for OneFileSystem
	stack []walkFrame // the directories from the root down to the current one
	low   int         // stack[low:] are open; stack[1:low] are released
	path  []byte      // the path below the root of the directory on top of the stack
	bufs  direntBufs
	held  int // what the sorted listings on the stack count against maxSortedBytes
	entry WalkEntry
}

// walkFrame is one directory on the walk's path from the root.
type walkFrame struct {
	fd       int // -1 while released (see maxWalkFds)
	dev, ino uint64
	plen     int       // len(walker.path) before this directory's name was added
	list     dirLister // unsorted: the listing, read as the walk goes
	names    []string  // sorted: the names, those visited cleared
	next     int       // sorted: the index in names of the next entry
	cost     int       // sorted: what names counts against maxSortedBytes
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
// walk climbs back, and their listing resumes at the offset where it was
// left. A directory moved while the walk is inside it stops the walk with an
// error.
//
// Its memory grows with the depth only by a name and a few words per level,
// and an unsorted walk reads each directory in batches (see above). It
// visits at most as many entries of a directory as the directory held when
// it was opened, so that a program that keeps creating entries cannot keep
// the walk in it for ever. As in any listing of a directory that changes
// meanwhile, entries created or removed during the walk may or may not be
// visited.
//
// If fn returns fs.SkipDir for a directory, Walk does not enter it; any
// other error stops the walk and is returned. Cancelling ctx stops it too.
func Walk(ctx context.Context, root string, opt WalkOptions, fn func(*WalkEntry) error) error {
	// The root itself is the server's own path: follow symlinks to it.
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", root, err)
	}
	w := &walker{root: root, opt: opt, fn: fn, low: 1}
	defer w.close()
	e := &w.entry
	*e = WalkEntry{Dir: -1, Name: ".", Fd: fd, w: w}
	if err := unix.Fstat(fd, &e.Stat); err != nil {
		unix.Close(fd)
		return fmt.Errorf("stat %s: %w", root, err)
	}
	w.dev = e.Stat.Dev
	dev, ino := e.Stat.Dev, e.Stat.Ino
	if err := fn(e); err != nil {
		unix.Close(fd)
		if err == fs.SkipDir {
			return nil
		}
		return err
	}
	if err := w.push(fd, dev, ino, ""); err != nil {
		unix.Close(fd)
		return fmt.Errorf("read directory %s: %w", root, err)
	}
	for len(w.stack) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		top := &w.stack[len(w.stack)-1]
		name, err := w.next(top)
		if err != nil {
			return fmt.Errorf("read directory %s: %w", w.where(), err)
		}
		if name == "" {
			if err := w.pop(); err != nil {
				return fmt.Errorf("walk %s: climb back to %s: %w", root, w.where(), err)
			}
			continue
		}
		if err := w.visit(top.fd, name); err != nil {
			return err
		}
	}
	return nil
}

// visit calls fn for the entry name of the directory dirfd, and enters it
// (pushes it) if it is a directory.
func (w *walker) visit(dirfd int, name string) error {
	const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	e := &w.entry
	*e = WalkEntry{Dir: dirfd, Name: name, Fd: -1, w: w}
	if err := unix.Fstatat(dirfd, name, &e.Stat, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			w.changed(e, err)
			return nil
		}
		return fmt.Errorf("stat %q: %w", e.Path(), err)
	}
	if e.Stat.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := w.fn(e); err != nil && err != fs.SkipDir {
			return err
		}
		return nil
	}
	if w.opt.OneFileSystem && e.Stat.Dev != w.dev {
		return nil
	}
	cfd, err := unix.Openat(dirfd, name, dirFlags, 0)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR || err == unix.ENOENT {
			w.changed(e, err)
			return nil
		}
		return fmt.Errorf("open %q: %w", e.Path(), err)
	}
	// Describe what was opened, not what was stat'ed a moment before.
	if err := unix.Fstat(cfd, &e.Stat); err != nil {
		unix.Close(cfd)
		return fmt.Errorf("stat %q: %w", e.Path(), err)
	}
	if w.opt.OneFileSystem && e.Stat.Dev != w.dev {
		unix.Close(cfd)
		return nil
	}
	e.Fd = cfd
	if w.opt.SkipMounts && isMountFd(cfd, e.Stat.Dev, w.stack[len(w.stack)-1].dev) {
		err := w.fn(e)
		unix.Close(cfd)
		if err != nil && err != fs.SkipDir {
			return err
		}
		return nil
	}
	dev, ino := e.Stat.Dev, e.Stat.Ino // fn may change e
	err = w.fn(e)
	if err == nil {
		if err = w.push(cfd, dev, ino, name); err != nil {
			err = fmt.Errorf("read directory %q: %w", e.Path(), err)
		}
	}
	if err != nil {
		unix.Close(cfd)
		if err == fs.SkipDir {
			return nil
		}
		return err
	}
	return nil
}

// changed tells opt.Changed of the entry e, which changed under the walk.
func (w *walker) changed(e *WalkEntry, err error) {
	if w.opt.Changed != nil {
		w.opt.Changed(e.Path(), err)
	}
}

// push readies the listing of the directory open as fd, named name in the
// directory on top of the stack ("" for the root), and puts it on the
// stack, releasing the highest open directory below the root if more than
// maxWalkFds are open. On error, fd is left open and the stack as it was.
func (w *walker) push(fd int, dev, ino uint64, name string) error {
	f := walkFrame{fd: fd, dev: dev, ino: ino, plen: len(w.path)}
	if w.opt.Sorted {
		var err error
		if f.names, f.cost, err = w.readSorted(fd); err != nil {
			return err
		}
	} else if err := f.list.start(fd, w.bufs.get()); err != nil {
		w.bufs.put(f.list.release())
		return err
	}
	if name != "" {
		if len(w.path) > 0 {
			w.path = append(w.path, '/')
		}
		w.path = append(w.path, name...)
	}
	w.stack = append(w.stack, f)
	if len(w.stack)-w.low > maxWalkFds {
		r := &w.stack[w.low]
		unix.Close(r.fd)
		r.fd = -1
		w.bufs.put(r.list.release())
		w.low++
	}
	return nil
}

// pop takes the directory on top of the stack, whose entries are all
// visited, off it and closes it. If the directory below was released, it
// reopens it through "..", which is never a symlink, makes sure it is the
// same directory, and resumes its listing.
func (w *walker) pop() error {
	n := len(w.stack) - 1
	child := &w.stack[n]
	cfd := child.fd
	defer unix.Close(cfd)
	w.bufs.put(child.list.release())
	w.held -= child.cost
	w.path = w.path[:child.plen]
	*child = walkFrame{} // let the collector have its names
	w.stack = w.stack[:n]
	if n == 0 {
		return nil
	}
	parent := &w.stack[n-1]
	if parent.fd >= 0 {
		return nil
	}
	const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	pfd, err := unix.Openat(cfd, "..", dirFlags, 0)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err = unix.Fstat(pfd, &st); err == nil && (st.Dev != parent.dev || st.Ino != parent.ino) {
		err = errMoved
	}
	if err == nil && !w.opt.Sorted {
		err = parent.list.resume(pfd, w.bufs.get())
	}
	if err != nil {
		unix.Close(pfd)
		return err
	}
	parent.fd = pfd
	w.low = n - 1
	return nil
}

// next returns the name of the next entry of f to visit, or "" when there
// are none left.
func (w *walker) next(f *walkFrame) (string, error) {
	if !w.opt.Sorted {
		return f.list.next(f.fd)
	}
	if f.next == len(f.names) {
		return "", nil
	}
	name := f.names[f.next]
	f.names[f.next] = "" // visited: the collector may have it
	f.next++
	return name, nil
}

// readSorted lists the directory open as fd whole, in name order, within
// what maxSortedBytes leaves, and returns its names and what they count.
func (w *walker) readSorted(fd int) ([]string, int, error) {
	l := dirLister{buf: w.bufs.get(), left: math.MaxInt}
	defer func() { w.bufs.put(l.release()) }()
	var names []string
	cost := 0
	for {
		name, err := l.next(fd)
		if err != nil {
			return nil, 0, err
		}
		if name == "" {
			break
		}
		cost += len(name) + sortedNameCost
		if w.held+cost > maxSortedBytes {
			return nil, 0, fmt.Errorf("%w: over %d entries here, and the names of the directories being walked would take more than %d MiB",
				errTooManyNames, len(names), maxSortedBytes>>20)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	w.held += cost
	return names, cost, nil
}

// where names the directory on top of the stack for an error.
func (w *walker) where() string {
	if len(w.path) == 0 {
		return w.root
	}
	return fmt.Sprintf("%q", w.path)
}

func (w *walker) close() {
	for _, f := range w.stack {
		if f.fd >= 0 {
			unix.Close(f.fd)
		}
	}
}

// direntBufSize is the size of the buffer a directory is listed into with
// getdents64, as os.File.ReadDir's: a few hundred entries at a time.
const direntBufSize = 8 << 10

// direntBufs recycles listing buffers within a walk: only the directories a
// walk holds open have one, so it uses at most maxWalkFds+2 of them however
// deep it goes.
type direntBufs [][]byte

func (p *direntBufs) get() []byte {
	if n := len(*p); n > 0 {
		b := (*p)[n-1]
		*p = (*p)[:n-1]
		return b
	}
	return make([]byte, direntBufSize)
}

func (p *direntBufs) put(b []byte) {
	if b != nil {
		*p = append(*p, b)
	}
}

// dirLister lists a directory in batches with getdents64, for Walk and
// RemoveAll: it holds one batch of entries however many the directory has.
// It remembers the offset after the last entry it handed out, so that the
// listing can resume there once the directory is reopened after being
// released (see maxWalkFds), and it hands out at most left entries.
type dirLister struct {
	buf      []byte // the batch read; nil while the directory is released
	pos, end int    // what of buf is not handed out yet
	off      int64  // the offset after the last entry handed out
	left     int    // how many more entries it may hand out
}

// start readies the listing of the directory open as fd from its
// beginning, reading into buf. It first counts the directory's entries and
// then hands out no more than that many: a program that keeps creating
// entries behind the listing's back cannot make it go on for ever, which
// it could, were the listing simply read to its end while the caller works
// on each entry, on a file system that puts new entries last.
func (l *dirLister) start(fd int, buf []byte) error {
	*l = dirLister{buf: buf}
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return err
	}
	n := 0
	for {
		m, err := getdents(fd, buf)
		if err != nil {
			return err
		}
		if m == 0 {
			break
		}
		for b := buf[:m]; len(b) > 0; {
			name, _, size, err := parseDirent(b)
			if err != nil {
				return err
			}
			if name != nil {
				n++
			}
			b = b[size:]
		}
	}
	l.left = n
	_, err := unix.Seek(fd, 0, io.SeekStart)
	return err
}

// next returns the next entry's name, or "" at the end of the listing.
func (l *dirLister) next(fd int) (string, error) {
	for l.left > 0 {
		if l.pos == l.end {
			n, err := getdents(fd, l.buf)
			if err != nil {
				return "", err
			}
			if n == 0 {
				l.left = 0
				break
			}
			l.pos, l.end = 0, n
		}
		name, off, size, err := parseDirent(l.buf[l.pos:l.end])
		if err != nil {
			return "", err
		}
		l.pos += size
		l.off = off
		if name != nil {
			l.left--
			return string(name), nil
		}
	}
	return "", nil
}

// release gives up the batch buffer, for the directory is being closed:
// the listing keeps only its offset, to resume.
func (l *dirLister) release() []byte {
	b := l.buf
	l.buf, l.pos, l.end = nil, 0, 0
	return b
}

// resume readies the listing again once its directory, released, is open
// again as fd: it goes on after the last entry handed out. The offsets
// getdents64 gives are the file system's cookies for that (what telldir and
// seekdir use, and NFS servers), valid in a new open file description.
func (l *dirLister) resume(fd int, buf []byte) error {
	l.buf, l.pos, l.end = buf, 0, 0
	_, err := unix.Seek(fd, l.off, io.SeekStart)
	return err
}

func getdents(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Getdents(fd, buf)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// direntHeader is the size of a struct linux_dirent64 before its name:
// d_ino (8 bytes), d_off (8), d_reclen (2) and d_type (1).
const direntHeader = 19

var errBadDirent = errors.New("malformed directory entry from getdents64")

// parseDirent parses the first record of b, what getdents64 read: the
// entry's name, which is nil for "." and ".." and for records of no file
// (inode 0, which some file systems leave); the offset after it; and the
// record's length.
func parseDirent(b []byte) (name []byte, off int64, size int, err error) {
	if len(b) < direntHeader {
		return nil, 0, 0, errBadDirent
	}
	size = int(binary.NativeEndian.Uint16(b[16:]))
	if size <= direntHeader || size > len(b) {
		return nil, 0, 0, errBadDirent
	}
	ino := binary.NativeEndian.Uint64(b)
	off = int64(binary.NativeEndian.Uint64(b[8:]))
	name = b[direntHeader:size]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	if ino == 0 || len(name) == 0 || string(name) == "." || string(name) == ".." {
		name = nil
	}
	return name, off, size, nil
}

// maxUsageLinks bounds how many multiply linked files DiskUsage remembers
// (a few dozen bytes each) to count each once, for a distro can make
// millions. Past it, such a file counts its share 1/nlink at each link,
// which adds up to once when all its links are in the tree.
var maxUsageLinks = 1 << 20

// DiskUsage adds up the space the tree at root takes on root's file system,
// like du -sx, walking it as Walk does (by file descriptor, never following a
// symlink, with a bounded number of descriptors and bounded memory), so that
// it is safe on the tree of a running distro. What vanishes during the walk
// is not counted.
func DiskUsage(ctx context.Context, root string) (Usage, error) {
	var u Usage
	seen := make(map[devIno]struct{})
	var shares struct{ bytes, apparent, entries float64 } // past maxUsageLinks
	err := Walk(ctx, root, WalkOptions{OneFileSystem: true}, func(e *WalkEntry) error {
		st := &e.Stat
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			k := devIno{st.Dev, st.Ino}
			if _, ok := seen[k]; ok {
				return nil
			}
			if len(seen) >= maxUsageLinks {
				n := float64(st.Nlink)
				shares.bytes += float64(st.Blocks*512) / n
				shares.apparent += float64(st.Size) / n
				shares.entries += 1 / n
				return nil
			}
			seen[k] = struct{}{}
		}
		u.Bytes += st.Blocks * 512
		u.Apparent += st.Size
		u.Entries++
		return nil
	})
	u.Bytes += int64(math.Round(shares.bytes))
	u.Apparent += int64(math.Round(shares.apparent))
	u.Entries += int64(math.Round(shares.entries))
	return u, err
}

// isMountFd reports whether the open directory fd (on device dev, in a
// parent on parentDev) is the root of a mount; see isMountRoot.
func isMountFd(fd int, dev, parentDev uint64) bool {
	var sx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_TYPE, &sx); err == nil &&
		sx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return sx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
	}
	return dev != parentDev
}
