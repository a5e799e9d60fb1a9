package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxAccountFile bounds how much of /etc/passwd and /etc/group is read.
const maxAccountFile = 4 << 20

// reaper collects every child of the process: the ones exec started and, when
// the agent is PID 1, every orphan of the distro. There is one per process,
// because wait4(-1) takes any child; it runs for the life of the process.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan ExitStatus
}

var (
	theReaper     = &reaper{waiters: make(map[int]chan ExitStatus)}
	startReaperMu sync.Once
)

// startReaper starts the reaper goroutine once. Its owner is the process: it
// must outlive every child, so it never stops.
func startReaper() {
	startReaperMu.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, unix.SIGCHLD)
		go func() {
			for range ch {
				theReaper.reap()
			}
		}()
		// Children that exited before Notify took effect.
		theReaper.reap()
	})
}

// start starts cmd and registers it, with the lock held across both so that a
// child exiting at once cannot be reaped before anyone waits for it.
func (r *reaper) start(cmd *exec.Cmd) (<-chan ExitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan ExitStatus, 1)
	r.waiters[cmd.Process.Pid] = ch
	return ch, nil
}

// reap collects every child that has exited. It reports whether any child is
// left.
func (r *reaper) reap() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return !errors.Is(err, unix.ECHILD)
		}
		if pid <= 0 {
			return true
		}
		if !ws.Exited() && !ws.Signaled() {
			continue // stopped or continued: not an exit
		}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- exitStatus(ws)
		}
	}
}

// reapAll reaps until no child is left or done is closed; for shutdown, after
// everything was killed.
func (r *reaper) reapAll(done <-chan struct{}) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for r.reap() {
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

func exitStatus(ws unix.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: signalName(ws.Signal())}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}

// signalName is "KILL" for SIGKILL, or the number for signals without a name.
func signalName(sig unix.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return strings.TrimPrefix(n, "SIG")
	}
	return strconv.Itoa(int(sig))
}

func (s *Server) startProcess(req ExecRequest) (process, error) {
	startReaper()
	passwd, err := readSmallFile(s.cfg.PasswdFile)
	if err != nil {
		return nil, err
	}
	group, err := readSmallFile(s.cfg.GroupFile)
	if err != nil {
		return nil, err
	}
	acct, err := lookupAccount(passwd, group, req.User)
	if err != nil {
		return nil, err
	}
	env, err := buildEnv(acct, req.TTY, req.Env)
	if err != nil {
		return nil, err
	}

	cwd := req.Cwd
	if cwd == "" {
		cwd = acct.Home
		if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
			cwd = "/"
		}
	} else if fi, err := os.Stat(cwd); err != nil {
		return nil, fmt.Errorf("%w: working directory %q", ErrNoSuchFile, cwd)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%w: working directory %q is not a directory", ErrNoSuchFile, cwd)
	}

	var prog string
	argv := req.Argv
	if len(argv) == 0 {
		prog = acct.Shell
		argv0 := prog
		if req.Login {
			argv0 = "-" + path.Base(prog)
		}
		argv = []string{argv0}
	} else {
		if prog, err = lookPath(argv[0], lookEnv(env, "PATH"), cwd); err != nil {
			return nil, err
		}
	}
	for _, a := range argv {
		if strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("%w: argument contains a NUL byte", ErrBadRequest)
		}
	}

	cmd := &exec.Cmd{Path: prog, Args: argv, Env: env, Dir: cwd}
	attr := &syscall.SysProcAttr{Setsid: true}
	if acct.UID != os.Getuid() || acct.GID != os.Getgid() || os.Getuid() == 0 {
		groups := make([]uint32, len(acct.Groups))
		for i, g := range acct.Groups {
			groups[i] = uint32(g)
		}
		attr.Credential = &syscall.Credential{Uid: uint32(acct.UID), Gid: uint32(acct.GID), Groups: groups}
	}
	cmd.SysProcAttr = attr

	p := &linuxProcess{argv: argv, user: acct.Name}
	if p.user == "" {
		p.user = strconv.Itoa(acct.UID)
	}
	var child []*os.File // the child's ends, closed here once it has them
	defer func() {
		for _, f := range child {
			f.Close()
		}
	}()
	if req.TTY {
		ptmx, tty, err := openPTY()
		if err != nil {
			return nil, fmt.Errorf("open pty: %w", err)
		}
		child = append(child, tty)
		cols, rows := req.Cols, req.Rows
		if cols == 0 || rows == 0 {
			cols, rows = 80, 24
		}
		if err := setWinsize(ptmx, cols, rows); err != nil {
			ptmx.Close()
			return nil, fmt.Errorf("set terminal size: %w", err)
		}
		p.tty, p.ptmx, p.in, p.out = true, ptmx, ptmx, ptmx
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		// The terminal becomes the new session's controlling terminal; Ctty is
		// the child's fd number for it.
		attr.Setctty, attr.Ctty = true, 0
	} else {
		inR, inW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			inR.Close()
			inW.Close()
			return nil, err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			inR.Close()
			inW.Close()
			outR.Close()
			outW.Close()
			return nil, err
		}
		child = append(child, inR, outW, errW)
		p.in, p.out, p.err = inW, outR, errR
		cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	}

	exited, err := theReaper.start(cmd)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("start %s: %w", prog, classifyStartError(err))
	}
	p.pidv, p.exit = cmd.Process.Pid, exited
	return p, nil
}

// classifyStartError maps exec failures to the protocol's sentinels.
func classifyStartError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %v", ErrNoSuchFile, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %v", ErrPermission, err)
	}
	return err
}

// lookPath finds prog the way execvp does, but with the process's own PATH
// rather than the agent's. A name with a slash is taken as is.
func lookPath(prog, pathEnv, cwd string) (string, error) {
	if prog == "" {
		return "", fmt.Errorf("%w: empty program name", ErrBadRequest)
	}
	if strings.Contains(prog, "/") {
		p := prog
		if !path.IsAbs(p) {
			p = path.Join(cwd, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", err
		}
		return prog, nil
	}
	var firstErr error
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, prog)
		if !path.IsAbs(p) {
			p = path.Join(cwd, p)
		}
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if firstErr == nil && !errors.Is(err, ErrNoSuchFile) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", fmt.Errorf("%w: %q not found in PATH", ErrNoSuchFile, prog)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s", ErrNoSuchFile, p)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrPermission, err)
	case fi.IsDir():
		return fmt.Errorf("%w: %s is a directory", ErrPermission, p)
	case fi.Mode()&0o111 == 0:
		return fmt.Errorf("%w: %s is not executable", ErrPermission, p)
	}
	return nil
}

// readSmallFile reads a distro file that is expected to be small. A missing
// file is empty: a rootfs without /etc/group still runs as root.
func readSmallFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAccountFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxAccountFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxAccountFile)
	}
	return b, nil
}

// linuxProcess is a child started by exec.
type linuxProcess struct {
	pidv    int
	argv    []string // as started, for session listings
	user    string   // the account's name, or its uid
	tty     bool
	ptmx    *os.File // the terminal's master side, with a TTY
	in      *os.File // stdin: a pipe's write end, or ptmx
	out     *os.File // stdout: a pipe's read end, or ptmx
	err     *os.File // stderr: a pipe's read end; nil with a TTY
	exit    <-chan ExitStatus
	closeMu sync.Mutex
	closed  bool
}

func (p *linuxProcess) pid() int                       { return p.pidv }
func (p *linuxProcess) stdin() io.Writer               { return p.in }
func (p *linuxProcess) outputs() (*os.File, *os.File)  { return p.out, p.err }
func (p *linuxProcess) exited() <-chan ExitStatus      { return p.exit }
func (p *linuxProcess) resize(cols, rows uint16) error { return p.resizeTTY(cols, rows) }
func (p *linuxProcess) command() ([]string, string)    { return p.argv, p.user }

func (p *linuxProcess) closeStdin() {
	if p.tty {
		// A terminal has no end of file, only the EOF character; in canonical
		// mode at the start of a line it reads as end of file.
		p.ptmx.Write([]byte{4})
		return
	}
	p.in.Close()
}

func (p *linuxProcess) resizeTTY(cols, rows uint16) error {
	if !p.tty {
		return fmt.Errorf("%w: resize without a terminal", ErrBadRequest)
	}
	return setWinsize(p.ptmx, cols, rows)
}

// signal sends to the process group: the session leader and what it started in
// its group. Signals to a process that has been reaped are dropped, so a reused
// pid is never hit.
func (p *linuxProcess) signal(m signalMsg) error {
	sig, err := m.signal()
	if err != nil {
		return err
	}
	theReaper.mu.Lock()
	defer theReaper.mu.Unlock()
	if _, ok := theReaper.waiters[p.pidv]; !ok {
		return nil
	}
	err = unix.Kill(-p.pidv, sig)
	if errors.Is(err, unix.ESRCH) {
		// The group is gone but the leader not yet reaped (a zombie).
		err = nil
	}
	return err
}

// signalForeground sends to the terminal's foreground process group, as the
// terminal's own Ctrl-C does: a shell's running command rather than the shell.
// Without a terminal, or when nothing holds the terminal, it is signal.
func (p *linuxProcess) signalForeground(m signalMsg) error {
	sig, err := m.signal()
	if err != nil {
		return err
	}
	if !p.tty {
		return p.signal(m)
	}
	rc, err := p.ptmx.SyscallConn()
	if err != nil {
		return p.signal(m)
	}
	pgrp := 0
	var ierr error
	// On a master TIOCGPGRP reads the foreground group of its terminal.
	if err := rc.Control(func(fd uintptr) { pgrp, ierr = unix.IoctlGetInt(int(fd), unix.TIOCGPGRP) }); err != nil || ierr != nil || pgrp <= 0 {
		return p.signal(m)
	}
	err = unix.Kill(-pgrp, sig)
	if errors.Is(err, unix.ESRCH) {
		err = nil
	}
	return err
}

// signal maps the message to this platform's signal number.
func (m signalMsg) signal() (unix.Signal, error) {
	sig := unix.Signal(m.Number)
	if m.Name != "" {
		sig = unix.SignalNum("SIG" + m.Name)
		if sig == 0 {
			return 0, fmt.Errorf("%w: unknown signal %q", ErrBadRequest, m.Name)
		}
	}
	if sig <= 0 {
		return 0, fmt.Errorf("%w: no signal", ErrBadRequest)
	}
	return sig, nil
}

func (p *linuxProcess) close() {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, f := range []*os.File{p.in, p.out, p.err} {
		if f != nil {
			f.Close()
		}
	}
}

// openPTY opens a new pseudo-terminal in this mount namespace's devpts. The
// master stays non-blocking so reads honour deadlines and Close wakes them;
// creack/pty's helpers call Fd(), which would switch it to blocking mode.
func openPTY() (ptmx, tty *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	// TIOCGPTPEER opens the peer through the master fd, not by path, so it
	// cannot be fooled by whatever /dev/pts holds.
	tfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("open pty peer: %w", errno)
	}
	ptmx = os.NewFile(uintptr(fd), "/dev/ptmx")
	return ptmx, os.NewFile(uintptr(tfd), "pty"), nil
}

func setWinsize(f *os.File, cols, rows uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	})
	if err != nil {
		return err
	}
	return serr
}
