package agent

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/vmm/archive"
)

// asUser runs fn on an OS thread of its own whose file system uid and gid
// and supplementary groups are a's, and waits for it. The agent's other
// threads keep root's credentials: setfsuid, setfsgid and the raw
// setgroups system call change only the calling thread (glibc and Go's
// syscall.Setgroups would change every thread), and for a user other than
// root the thread drops every capability (capset on itself), so the kernel
// checks every access of fn as it would for the user's own programs. The thread is never unlocked: it
// ends with its goroutine, so nothing else ever runs on it.
//
// fn must do its path work on the calling goroutine (no goroutines of its
// own that open or create files); reading and writing descriptors it opened
// is fine anywhere.
func asUser(a account, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := setThreadCreds(a); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// setThreadCreds gives the calling (locked) thread a's file system
// credentials and groups.
func setThreadCreds(a account) error {
	gids := make([]uint32, len(a.Groups))
	for i, g := range a.Groups {
		gids[i] = uint32(g)
	}
	var p unsafe.Pointer
	if len(gids) > 0 {
		p = unsafe.Pointer(&gids[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(p), 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	// setfsgid and setfsuid return the previous id and no error; asking with
	// an invalid id (-1) reads the current one back.
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(a.GID), 0, 0)
	if g, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, uintptr(^uint32(0)), 0, 0); int(uint32(g)) != a.GID {
		return fmt.Errorf("setfsgid %d did not take", a.GID)
	}
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(a.UID), 0, 0)
	if u, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, uintptr(^uint32(0)), 0, 0); int(uint32(u)) != a.UID {
		return fmt.Errorf("setfsuid %d did not take", a.UID)
	}
	if a.UID != 0 {
		// A new fsuid drops only the file capabilities; CAP_SYS_PTRACE
		// would still open another user's /proc/PID/maps or root, and
		// CAP_SYS_ADMIN more. A user's operation holds none: capset on
		// this thread (header pid 0) empties all three sets.
		var data [2]unix.CapUserData
		if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &data[0]); err != nil {
			return fmt.Errorf("drop capabilities: %w", err)
		}
	}
	return nil
}

// fileErr maps a system call's error to the file operations' sentinels,
// naming the path.
func fileErr(what, p string, err error) error {
	var sentinel error
	switch {
	case errors.Is(err, unix.ENOENT):
		sentinel = ErrNoSuchFile
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM), errors.Is(err, unix.EROFS):
		sentinel = ErrPermission
	case errors.Is(err, unix.EEXIST):
		sentinel = ErrFileExists
	case errors.Is(err, unix.ENOTEMPTY):
		sentinel = ErrDirNotEmpty
	case errors.Is(err, unix.ENOTDIR):
		sentinel = ErrNotDir
	case errors.Is(err, unix.EISDIR):
		sentinel = ErrIsDir
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENAMETOOLONG), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EXDEV):
		sentinel = ErrInvalidPath
	default:
		return fmt.Errorf("%s %q: %w", what, p, err)
	}
	return fmt.Errorf("%w: %s %q: %v", sentinel, what, p, err)
}

// idNames maps the distro's uids and gids to names.
type idNames struct {
	users, groups map[int]string
}

func (n idNames) user(uid int) string {
	if s, ok := n.users[uid]; ok {
		return s
	}
	return strconv.Itoa(uid)
}

func (n idNames) group(gid int) string {
	if s, ok := n.groups[gid]; ok {
		return s
	}
	return strconv.Itoa(gid)
}

// fileAccount resolves the request's user and the distro's id names.
func (s *Server) fileAccount(user string) (account, idNames, error) {
	passwd, err := readSmallFile(s.cfg.PasswdFile)
	if err != nil {
		return account{}, idNames{}, err
	}
	group, err := readSmallFile(s.cfg.GroupFile)
	if err != nil {
		return account{}, idNames{}, err
	}
	acct, err := lookupAccount(passwd, group, user)
	if err != nil {
		return account{}, idNames{}, err
	}
	n := idNames{users: map[int]string{}, groups: map[int]string{}}
	for _, u := range parsePasswd(passwd) {
		if _, ok := n.users[u.uid]; !ok {
			n.users[u.uid] = u.name
		}
	}
	for _, g := range parseGroup(group) {
		if _, ok := n.groups[g.gid]; !ok {
			n.groups[g.gid] = g.name
		}
	}
	return acct, n, nil
}

// info builds p's FileInfo from its stat.
func (n idNames) info(p string, st *unix.Stat_t, target string) FileInfo {
	fi := FileInfo{Name: path.Base(p), Path: p, Size: st.Size, Mode: st.Mode & 0o7777,
		MTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC(),
		UID:   int(st.Uid), GID: int(st.Gid), User: n.user(int(st.Uid)), Group: n.group(int(st.Gid)),
		Target: target}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		fi.Type = FileTypeFile
	case unix.S_IFDIR:
		fi.Type = FileTypeDir
	case unix.S_IFLNK:
		fi.Type = FileTypeSymlink
	default:
		fi.Type = FileTypeOther
	}
	return fi
}

// statAt describes name in dirfd (the path p, for the FileInfo) without
// following a symlink; the caller runs as the user.
func (n idNames) statAt(dirfd int, name, p string, follow bool) (FileInfo, error) {
	var st unix.Stat_t
	flags := unix.AT_SYMLINK_NOFOLLOW
	if follow {
		flags = 0
	}
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Fstatat(dirfd, name, &st, flags); err != nil {
		return FileInfo{}, fileErr("stat", p, err)
	}
	target := ""
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		t, err := readlinkat(dirfd, name)
		if err != nil {
			return FileInfo{}, fileErr("readlink", p, err)
		}
		target = t
	}
	return n.info(p, &st, target), nil
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
		if size >= unix.PathMax*2 {
			return string(buf[:n]), nil
		}
	}
}

// handleFile serves the file operations.
func (s *Server) handleFile(ctx context.Context, st *yamux.Stream, br *bufio.Reader, req request) {
	fail := func(err error) {
		s.log.Debug("file operation failed", "op", req.Op, "err", err)
		s.replyError(st, req.Op, err)
	}
	p, err := CleanPath(req.Path)
	if err != nil {
		fail(err)
		return
	}
	req.Path = p
	acct, names, err := s.fileAccount(req.User)
	if err != nil {
		fail(err)
		return
	}
	switch req.Op {
	case opFileStat:
		var fi FileInfo
		err := asUser(acct, func() (err error) {
			fi, err = names.statAt(unix.AT_FDCWD, p, p, req.Follow)
			return err
		})
		if err != nil {
			fail(err)
			return
		}
		writeHeader(st, reply{OK: true, File: &fi})
	case opFileList:
		s.fileList(ctx, st, br, acct, names, p, fail)
	case opFileRead:
		s.fileRead(ctx, st, br, acct, names, req.FileRequest, fail)
	case opFileWrite:
		s.fileWrite(st, br, acct, names, req.FileRequest, fail)
	case opFileMkdir:
		var fi FileInfo
		err := asUser(acct, func() error {
			if req.Parents {
				if err := os.MkdirAll(p, 0o755); err != nil {
					return fileErr("mkdir", p, err)
				}
			} else if err := unix.Mkdir(p, 0o755); err != nil {
				return fileErr("mkdir", p, err)
			}
			var err error
			fi, err = names.statAt(unix.AT_FDCWD, p, p, false)
			return err
		})
		if err != nil {
			fail(err)
			return
		}
		writeHeader(st, reply{OK: true, File: &fi})
	case opFileRename:
		to, err := CleanPath(req.To)
		if err != nil {
			fail(err)
			return
		}
		var fi FileInfo
		err = asUser(acct, func() error {
			if err := renameNoReplace(p, to); err != nil {
				return err
			}
			var err error
			fi, err = names.statAt(unix.AT_FDCWD, to, to, false)
			return err
		})
		if err != nil {
			fail(err)
			return
		}
		writeHeader(st, reply{OK: true, File: &fi})
	case opFileRemove:
		if p == "/" {
			fail(fmt.Errorf("%w: refusing to remove /", ErrInvalidPath))
			return
		}
		err := asUser(acct, func() error {
			var sx unix.Stat_t
			if err := unix.Lstat(p, &sx); err != nil {
				return fileErr("remove", p, err)
			}
			if sx.Mode&unix.S_IFMT != unix.S_IFDIR {
				if err := unix.Unlink(p); err != nil {
					return fileErr("remove", p, err)
				}
				return nil
			}
			if !req.Recursive {
				err := unix.Rmdir(p)
				if errors.Is(err, unix.EEXIST) {
					err = unix.ENOTEMPTY
				}
				if err != nil {
					return fileErr("remove", p, err)
				}
				return nil
			}
			// By descriptor, without following symlinks or entering file
			// systems mounted below (the host's files at /mnt/host).
			if err := archive.RemoveAll(p); err != nil {
				if errors.Is(err, archive.ErrMountPoint) {
					// What is mounted there stays, so the directory is
					// not empty; the message names the mount point.
					return fmt.Errorf("%w: remove %q: %v", ErrDirNotEmpty, p, err)
				}
				return fileErr("remove", p, err)
			}
			return nil
		})
		if err != nil {
			fail(err)
			return
		}
		writeHeader(st, reply{OK: true})
	case opFileArchive:
		s.fileArchive(ctx, st, br, acct, p, fail)
	}
}

// renameNoReplace renames from to to, never replacing to. It runs as the
// user.
func renameNoReplace(from, to string) error {
	if from == "/" || to == "/" {
		return fmt.Errorf("%w: cannot rename /", ErrInvalidPath)
	}
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) {
		// EINVAL is a directory moved into itself, or a file system
		// without RENAME_NOREPLACE. For the latter, check and rename: a
		// race with a program creating the target can still lose it.
		var st unix.Stat_t
		if len(to) > len(from) && to[:len(from)+1] == from+"/" {
			return fileErr("rename", from, err)
		}
		if lerr := unix.Lstat(to, &st); lerr == nil {
			return fileErr("rename", to, unix.EEXIST)
		}
		err = unix.Rename(from, to)
	}
	if err != nil {
		return fileErr("rename", from, err)
	}
	return nil
}

// watchClient cancels the returned context when the client closes its
// side of st or ctx ends, and unblocks writes to st then. The caller calls
// stop once it no longer reads br.
func watchClient(ctx context.Context, st *yamux.Stream, br *bufio.Reader) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(io.Discard, br)
		cancel()
		st.SetWriteDeadline(time.Unix(1, 0))
	})
	stopAfter := context.AfterFunc(ctx, func() { st.SetWriteDeadline(time.Unix(1, 0)) })
	return ctx, func() {
		st.SetReadDeadline(time.Unix(1, 0))
		wg.Wait()
		stopAfter()
		cancel()
	}
}

// endData sends a data stream's closing frame with err, if any.
func endData(st io.Writer, op string, err error, fi *FileInfo) error {
	var end dataEnd
	if err != nil {
		end.Error = &wireError{Code: errorCode(err), Message: err.Error()}
	}
	end.File = fi
	b, _ := json.Marshal(end)
	return writeFrame(st, frameDataEnd, b)
}

func (s *Server) fileList(ctx context.Context, st *yamux.Stream, br *bufio.Reader, acct account, names idNames, p string, fail func(error)) {
	var dir FileInfo
	var entries []FileInfo
	err := asUser(acct, func() error {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fileErr("list", p, err)
		}
		f := os.NewFile(uintptr(fd), p)
		defer f.Close()
		if dir, err = names.statAt(fd, "", p, false); err != nil {
			return err
		}
		list, err := f.Readdirnames(-1)
		if err != nil {
			return fileErr("list", p, err)
		}
		slices.Sort(list)
		entries = make([]FileInfo, 0, len(list))
		for _, name := range list {
			fi, err := names.statAt(fd, name, path.Join(p, name), false)
			if err != nil {
				// Removed since the listing: leave it out.
				continue
			}
			entries = append(entries, fi)
		}
		return nil
	})
	if err != nil {
		fail(err)
		return
	}
	if err := writeHeader(st, reply{OK: true, File: &dir}); err != nil {
		return
	}
	ctx, stop := watchClient(ctx, st, br)
	defer stop()
	b, err := json.Marshal(entries)
	if err == nil {
		_, err = (&frameWriter{w: st}).Write(b)
	}
	if ctx.Err() == nil {
		endData(st, opFileList, err, nil)
	}
}

func (s *Server) fileRead(ctx context.Context, st *yamux.Stream, br *bufio.Reader, acct account, names idNames, req FileRequest, fail func(error)) {
	p := req.Path
	if req.Offset < 0 || req.Length < 0 {
		fail(fmt.Errorf("%w: negative offset or length", ErrBadRequest))
		return
	}
	var f *os.File
	var fi FileInfo
	err := asUser(acct, func() error {
		// O_NONBLOCK: a fifo must not hang the open; it is refused below.
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
		if err != nil {
			return fileErr("open", p, err)
		}
		if fi, err = names.statAt(fd, "", p, false); err != nil {
			unix.Close(fd)
			return err
		}
		switch fi.Type {
		case FileTypeFile:
		case FileTypeDir:
			unix.Close(fd)
			return fmt.Errorf("%w: %q", ErrIsDir, p)
		default:
			unix.Close(fd)
			return fmt.Errorf("%w: %q is not a regular file", ErrInvalidPath, p)
		}
		f = os.NewFile(uintptr(fd), p)
		return nil
	})
	if err != nil {
		fail(err)
		return
	}
	defer f.Close()
	if err := writeHeader(st, reply{OK: true, File: &fi}); err != nil {
		return
	}
	ctx, stop := watchClient(ctx, st, br)
	defer stop()
	buf := make([]byte, dataChunk)
	off, left := req.Offset, req.Length
	var rerr error
	for ctx.Err() == nil {
		want := len(buf)
		if req.Length > 0 {
			if left == 0 {
				break
			}
			want = int(min(int64(want), left))
		}
		n, err := f.ReadAt(buf[:want], off)
		if n > 0 {
			if werr := writeFrame(st, frameData, buf[:n]); werr != nil {
				return
			}
			off += int64(n)
			left -= int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			rerr = fileErr("read", p, err)
			break
		}
	}
	if ctx.Err() == nil {
		endData(st, opFileRead, rerr, nil)
	}
}

// tempName is a hidden name beside base for a file being written.
func tempName(base string) string {
	var b [6]byte
	rand.Read(b[:])
	if len(base) > 200 {
		base = base[:200]
	}
	return "." + base + ".subsys-" + hex.EncodeToString(b[:])
}

func (s *Server) fileWrite(st *yamux.Stream, br *bufio.Reader, acct account, names idNames, req FileRequest, fail func(error)) {
	p := req.Path
	if p == "/" {
		fail(fmt.Errorf("%w: /", ErrIsDir))
		return
	}
	if req.FileMode != nil && *req.FileMode&^0o7777 != 0 {
		fail(fmt.Errorf("%w: mode %o", ErrBadRequest, *req.FileMode))
		return
	}
	dirPath, base := path.Dir(p), path.Base(p)
	var pfd, tfd int = -1, -1
	tmp := tempName(base)
	mode := uint32(0o644)
	owner := [2]int{-1, -1}
	err := asUser(acct, func() error {
		fd, err := unix.Open(dirPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fileErr("open directory", dirPath, err)
		}
		var old unix.Stat_t
		switch err := unix.Fstatat(fd, base, &old, unix.AT_SYMLINK_NOFOLLOW); {
		case err == nil && old.Mode&unix.S_IFMT == unix.S_IFDIR:
			unix.Close(fd)
			return fmt.Errorf("%w: %q", ErrIsDir, p)
		case err == nil && old.Mode&unix.S_IFMT == unix.S_IFREG:
			mode = old.Mode & 0o7777
			// Root replacing a user's file keeps it theirs, as an editor
			// run as root would.
			if acct.UID == 0 {
				owner = [2]int{int(old.Uid), int(old.Gid)}
			}
		case err != nil && !errors.Is(err, unix.ENOENT):
			unix.Close(fd)
			return fileErr("stat", p, err)
		}
		t, err := unix.Openat(fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			unix.Close(fd)
			return fileErr("create", p, err)
		}
		pfd, tfd = fd, t
		return nil
	})
	if err != nil {
		fail(err)
		return
	}
	if req.FileMode != nil {
		mode = *req.FileMode
	}
	defer unix.Close(pfd)
	tf := os.NewFile(uintptr(tfd), tmp)
	committed := false
	defer func() {
		tf.Close()
		if !committed {
			asUser(acct, func() error { return unix.Unlinkat(pfd, tmp, 0) })
		}
	}()
	if err := writeHeader(st, reply{OK: true}); err != nil {
		return
	}
	// Take every upload frame, also after a write failed, so the client is
	// never left blocked on a full window; the end frame says the outcome.
	buf := make([]byte, dataChunk)
	var werr error
	for {
		t, payload, err := readFrame(br, buf)
		if err != nil {
			return // the client is gone: the temporary file goes
		}
		if t == frameUpload {
			if werr == nil {
				if _, err := tf.Write(payload); err != nil {
					werr = fileErr("write", p, err)
				}
			}
			continue
		}
		if t != frameUploadEnd {
			continue
		}
		var end dataEnd
		if err := json.Unmarshal(payload, &end); err != nil {
			werr = fmt.Errorf("%w: bad upload-end frame", ErrProtocol)
		} else if end.Error != nil && werr == nil {
			werr = fmt.Errorf("%w: the client aborted the upload: %s", ErrBadRequest, end.Error.Message)
		}
		break
	}
	var fi FileInfo
	if werr == nil {
		werr = asUser(acct, func() error {
			if owner[0] >= 0 {
				if err := unix.Fchown(tfd, owner[0], owner[1]); err != nil {
					return fileErr("chown", p, err)
				}
			}
			if err := unix.Fchmod(tfd, mode); err != nil {
				return fileErr("chmod", p, err)
			}
			if err := unix.Fsync(tfd); err != nil {
				return fileErr("sync", p, err)
			}
			if err := unix.Renameat(pfd, tmp, pfd, base); err != nil {
				return fileErr("rename", p, err)
			}
			committed = true
			var err error
			fi, err = names.statAt(pfd, base, p, false)
			return err
		})
	}
	if werr != nil {
		endData(st, opFileWrite, werr, nil)
		return
	}
	endData(st, opFileWrite, nil, &fi)
}

func (s *Server) fileArchive(ctx context.Context, st *yamux.Stream, br *bufio.Reader, acct account, p string, fail func(error)) {
	ctx, stop := watchClient(ctx, st, br)
	defer stop()
	started := false
	var written int64
	err := asUser(acct, func() error {
		var sx unix.Stat_t
		if err := unix.Stat(p, &sx); err != nil {
			return fileErr("archive", p, err)
		}
		typ := sx.Mode & unix.S_IFMT
		if typ != unix.S_IFDIR && typ != unix.S_IFREG {
			return fmt.Errorf("%w: %q is neither a directory nor a regular file", ErrInvalidPath, p)
		}
		var f *os.File
		if typ == unix.S_IFREG {
			// Open before the header, so an unreadable file fails the request.
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
			if err != nil {
				return fileErr("open", p, err)
			}
			f = os.NewFile(uintptr(fd), p)
			defer f.Close()
		}
		if err := writeHeader(st, reply{OK: true}); err != nil {
			return err
		}
		started = true
		fw := &frameWriter{w: st}
		defer func() { written = fw.n }()
		if typ == unix.S_IFDIR {
			// Not what is mounted below: /proc, /sys, and the host's
			// root at /mnt/host.
			return archive.WriteSkippingMounts(ctx, fw, p, archive.TarGz)
		}
		return writeOneFileTarGz(fw, f, path.Base(p))
	})
	if !started {
		fail(err)
		return
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		s.log.Info("file archive failed", "bytes", written, "err", err)
	}
	endData(st, opFileArchive, err, nil)
}

// writeOneFileTarGz writes a tar.gz of the one regular file f as name.
func writeOneFileTarGz(w io.Writer, f *os.File, name string) error {
	var sx unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &sx); err != nil {
		return err
	}
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: sx.Size, Mode: int64(sx.Mode & 0o7777),
		Uid: int(sx.Uid), Gid: int(sx.Gid), ModTime: time.Unix(sx.Mtim.Sec, sx.Mtim.Nsec), Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	// A file that shrinks meanwhile is padded with zeros, as GNU tar does.
	n, err := io.Copy(tw, io.LimitReader(f, sx.Size))
	if err != nil {
		return err
	}
	if n < sx.Size {
		if _, err := io.CopyN(tw, zeroReader{}, sx.Size-n); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
