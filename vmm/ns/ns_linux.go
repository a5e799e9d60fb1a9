package ns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/cgroup"
)

const (
	// startTimeout bounds how long a new agent may take to answer hello.
	startTimeout = 30 * time.Second
	// stopTimeout bounds how long a distro may take to end after its agent
	// accepted shutdown: a distro's systemd stops its services in that time.
	stopTimeout = 30 * time.Second
	// helloTimeout bounds hello on an existing socket, so a hung agent cannot
	// hang Start or Connect.
	helloTimeout = 10 * time.Second
	// maxSocketPath is what fits in sockaddr_un.sun_path with its NUL.
	maxSocketPath = 107
)

// idPattern is the distro name rule (vmm.ValidateName's); ids name files in
// RunDir, so nothing else may pass. Compiled on first use rather than at
// package init, which every CLI verb would pay for.
var idPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)
})

// Backend runs version 1 distros. It is safe for concurrent use; calls for the
// same distro are serialized. Distros outlive the Backend and the server
// process: a new Backend with the same RunDir adopts them.
type Backend struct {
	cfg Config
	log *slog.Logger

	// cg holds the distros' cgroups; nil without Config.Cgroup or cgroup v2.
	cg *cgroupParent
	// legacy holds the distros' cgroups in the cgroup v1 hierarchies of the
	// limits' controllers, on a host whose cgroup v2 lacks them; nil
	// otherwise.
	legacy *legacyCgroups

	mu     sync.Mutex
	locks  map[string]*sync.Mutex // per distro id
	agents map[string]*child      // agents this value started and still waits for
}

// child is an agent started by this Backend. A goroutine owned by the Backend
// waits for it, so it never lingers as a zombie; done closes when it has.
type child struct {
	pid  int
	done chan struct{}
}

var (
	_ vmm.Backend   = (*Backend)(nil)
	_ vmm.Forgetter = (*Backend)(nil)
)

// New returns a Backend. It starts nothing.
func New(cfg Config) *Backend {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// The agent runs with / as its working directory, and is exec'd by a path
	// that must not depend on the server's: both are made absolute here.
	for _, p := range []*string{&cfg.RunDir, &cfg.AgentPath} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	b := &Backend{
		cfg:    cfg,
		log:    cfg.Logger,
		locks:  make(map[string]*sync.Mutex),
		agents: make(map[string]*child),
	}
	if cfg.Cgroup != "" {
		cg, err := openCgroupParent(cfg.Cgroup)
		if err != nil {
			b.log.Warn("distros get no cgroup of their own; the firewall matches their ports one by one", "err", err)
		} else {
			b.cg = cg
		}
		if b.cg == nil || b.cg.controllers != nil {
			if l, err := openLegacyCgroups(cfg.Cgroup); err == nil {
				b.log.Info("distros' limits and figures use the host's cgroup v1 hierarchies", "controllers", len(l.dirs))
				b.legacy = l
			}
		}
	}
	return b
}

// Cgroup returns the distro's cgroup v2 path, "/<Config.Cgroup>/<id>", or ""
// when distros have none.
func (b *Backend) Cgroup(s vmm.Spec) string {
	if b.cg == nil {
		return ""
	}
	return b.cg.path(s.ID)
}

// DistroCgroup returns the cgroup (v2) that holds every distro's processes, as
// its id and its depth in the hierarchy; ok is false when distros have none.
func (b *Backend) DistroCgroup() (id uint64, level uint32, ok bool) {
	if b.cg == nil {
		return 0, 0, false
	}
	return b.cg.id, b.cg.level, true
}

// Start adopts the distro's agent when one answers on its socket, or starts a
// new agent in new namespaces and waits until it answers hello.
func (b *Backend) Start(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	if err := b.check(s); err != nil {
		return nil, err
	}
	if s.RootFS == "" || s.Name == "" {
		return nil, fmt.Errorf("start distro %q: spec needs RootFS and Name", s.ID)
	}
	defer b.lock(s.ID)()
	c, pid, err := b.connect(ctx, s.ID)
	if err == nil {
		b.log.Info("adopted running distro", "distro", s.Name, "id", s.ID)
		b.adoptCgroup(s, pid)
		return c, nil
	}
	if !errors.Is(err, vmm.ErrNotRunning) {
		return nil, fmt.Errorf("start distro %q: %w", s.Name, err)
	}
	c, err = b.launch(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("start distro %q: %w", s.Name, err)
	}
	return c, nil
}

// Connect returns a client for the distro's running agent, or an error
// wrapping vmm.ErrNotRunning when none answers.
func (b *Backend) Connect(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	if err := b.check(s); err != nil {
		return nil, err
	}
	defer b.lock(s.ID)()
	c, pid, err := b.connect(ctx, s.ID)
	if err != nil {
		return nil, fmt.Errorf("connect distro %q: %w", s.Name, err)
	}
	b.adoptCgroup(s, pid)
	return c, nil
}

// adoptCgroup moves a running distro that is not in its cgroup (started by a
// server without cgroups) into it, every process of it, so that the firewall
// treats its sockets as a distro's.
func (b *Backend) adoptCgroup(s vmm.Spec, agentPID int) {
	b.sweepLegacy(s, agentPID)
	if b.cg == nil || agentPID <= 0 {
		return
	}
	if err := b.cg.adopt(s.ID, agentPID); err != nil {
		b.log.Warn("distro runs outside its cgroup", "distro", s.Name, "err", err)
	}
}

// Stop asks the agent to end every process and exit, and waits until the
// agent process is gone, bounded by ctx. An agent that does not answer is
// killed (killing a PID namespace's init kills the whole namespace).
func (b *Backend) Stop(ctx context.Context, s vmm.Spec) error {
	if err := b.check(s); err != nil {
		return err
	}
	defer b.lock(s.ID)()
	sock, pidFile, _ := b.paths(s.ID)

	c, pid, err := b.connect(ctx, s.ID)
	var pidfd = -1
	if pid > 0 {
		// Taken while the connection holds the agent, so the pid is its.
		if pidfd, _ = unix.PidfdOpen(pid, 0); pidfd >= 0 {
			defer unix.Close(pidfd)
		}
	}
	switch {
	case err == nil:
		b.log.Info("stopping distro", "distro", s.Name, "id", s.ID)
		serr := c.Shutdown(ctx)
		c.Close()
		if serr != nil {
			b.log.Warn("agent did not shut down; killing it", "distro", s.Name, "err", serr)
			b.kill(pid, pidfd)
		}
	case errors.Is(err, vmm.ErrNotRunning):
		// Nothing answers. An agent we started may still be setting up.
		b.mu.Lock()
		ch := b.agents[s.ID]
		b.mu.Unlock()
		if ch != nil {
			unix.Kill(ch.pid, unix.SIGKILL)
		}
	case pid > 0:
		b.log.Warn("agent does not answer; killing it", "distro", s.Name, "err", err)
		b.kill(pid, pidfd)
	default:
		return fmt.Errorf("stop distro %q: %w", s.Name, err)
	}

	if pidfd >= 0 {
		// A distro's systemd stops its services first; one that hangs is
		// killed, as is an agent that does not exit.
		wctx, cancel := context.WithTimeout(ctx, stopTimeout)
		err := waitPidfd(wctx, pidfd)
		cancel()
		if err != nil && ctx.Err() == nil {
			b.log.Warn("distro did not end in time; killing it", "distro", s.Name, "after", stopTimeout)
			b.kill(pid, pidfd)
			err = waitPidfd(ctx, pidfd)
		}
		if err != nil {
			return fmt.Errorf("stop distro %q: wait for agent: %w", s.Name, err)
		}
	}
	b.mu.Lock()
	ch := b.agents[s.ID]
	b.mu.Unlock()
	if ch != nil {
		select {
		case <-ch.done:
		case <-ctx.Done():
			return fmt.Errorf("stop distro %q: wait for agent: %w", s.Name, ctx.Err())
		}
	}
	for _, f := range []string{sock, pidFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			b.log.Warn("remove", "path", f, "err", err)
		}
	}
	if b.cg != nil {
		if err := b.cg.remove(s.ID); err != nil {
			b.log.Warn("distro cgroup left behind", "distro", s.Name, "err", err)
		}
	}
	if b.legacy != nil {
		if err := b.legacy.remove(s.ID); err != nil {
			b.log.Warn("distro cgroup v1 left behind", "distro", s.Name, "err", err)
		}
	}
	return nil
}

// Forget removes what the backend keeps of a distro that is gone for good
// (unregistered): its agent log, and the socket, pid file and cgroup that a
// stop leaves none of already. The distro must be stopped.
func (b *Backend) Forget(ctx context.Context, s vmm.Spec) error {
	if err := b.check(s); err != nil {
		return err
	}
	unlock := b.lock(s.ID)
	sock, pidFile, logFile := b.paths(s.ID)
	var errs []error
	for _, f := range []string{sock, pidFile, logFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("forget distro %q: %w", s.Name, err))
		}
	}
	if b.cg != nil {
		if err := b.cg.remove(s.ID); err != nil {
			errs = append(errs, fmt.Errorf("forget distro %q: %w", s.Name, err))
		}
	}
	if b.legacy != nil {
		if err := b.legacy.remove(s.ID); err != nil {
			errs = append(errs, fmt.Errorf("forget distro %q: %w", s.Name, err))
		}
	}
	unlock()
	b.mu.Lock()
	delete(b.locks, s.ID)
	b.mu.Unlock()
	return errors.Join(errs...)
}

func (b *Backend) check(s vmm.Spec) error {
	if !idPattern().MatchString(s.ID) {
		return fmt.Errorf("distro id %q is not a valid name", s.ID)
	}
	if b.cfg.RunDir == "" || b.cfg.AgentPath == "" {
		return errors.New("ns backend: Config needs RunDir and AgentPath")
	}
	if sock, _, _ := b.paths(s.ID); len(sock) > maxSocketPath {
		return fmt.Errorf("socket path %q is longer than %d bytes; use a shorter RunDir", sock, maxSocketPath)
	}
	return nil
}

func (b *Backend) paths(id string) (sock, pidFile, logFile string) {
	base := filepath.Join(b.cfg.RunDir, id)
	return base + ".sock", base + ".pid", base + ".log"
}

// lock serializes calls for one distro and returns the unlock.
func (b *Backend) lock(id string) func() {
	b.mu.Lock()
	l, ok := b.locks[id]
	if !ok {
		l = new(sync.Mutex)
		b.locks[id] = l
	}
	b.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// connect dials the distro's socket and says hello. It returns the agent's host
// pid (from the socket's peer credentials) whenever the dial worked, even if
// hello then failed, so that Stop can kill a hung agent.
func (b *Backend) connect(ctx context.Context, id string) (*agent.Client, int, error) {
	sock, _, _ := b.paths(id)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, 0, fmt.Errorf("%w: %v", vmm.ErrNotRunning, err)
		}
		return nil, 0, fmt.Errorf("dial agent: %w", err)
	}
	pid := peerPID(conn)
	c, err := agent.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, pid, err
	}
	hctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	if _, err := c.Hello(hctx); err != nil {
		c.Close()
		if errors.Is(err, agent.ErrDisconnected) {
			// The agent is exiting: its socket still accepted us.
			return nil, pid, fmt.Errorf("%w: %v", vmm.ErrNotRunning, err)
		}
		return nil, pid, err
	}
	return c, pid, nil
}

// launch starts a new agent for s and waits for it to answer.
func (b *Backend) launch(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	sock, pidFile, logFile := b.paths(s.ID)
	if err := os.MkdirAll(b.cfg.RunDir, 0o700); err != nil {
		return nil, err
	}
	// No agent answered: what is left is stale.
	for _, f := range []string{sock, pidFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	lf, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	root, err := filepath.Abs(s.RootFS)
	if err != nil {
		lf.Close()
		return nil, err
	}
	// -flag=value, so that no value can pass for a flag.
	cmd := exec.Command(b.cfg.AgentPath,
		"-socket="+sock, "-pidfile="+pidFile, "-root="+root, "-hostname="+s.Name)
	// The agent inherits nothing of the server: no environment, no cwd, only
	// /dev/null and its log as fds 0–2.
	cmd.Dir = "/"
	cmd.Env = []string{}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
		// Its own session, and no Pdeathsig: the distro must outlive the
		// server (a restart, or kill -9).
		Setsid: true,
	}
	if b.cg != nil {
		// Born in its cgroup (clone3's CLONE_INTO_CGROUP), so every process
		// of the distro is in it from the start — a distro outside it would
		// escape the firewall's distro rules, so it does not start — and in
		// a cgroup namespace rooted there, which a distro's systemd takes
		// as its delegated tree.
		cg, err := b.cg.open(s.ID)
		if err != nil {
			lf.Close()
			return nil, err
		}
		defer cg.Close()
		// The limits hold before the distro's first process runs.
		if err := b.applyLimits(s.ID, s.Limits); err != nil {
			lf.Close()
			return nil, err
		}
		cmd.SysProcAttr.Cloneflags |= unix.CLONE_NEWCGROUP
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cg.Fd())
	} else if s.Systemd {
		lf.Close()
		return nil, errors.New("systemd needs a cgroup (v2) of the distro's own, and distros have none on this host")
	} else if err := b.applyLimits(s.ID, s.Limits); err != nil {
		lf.Close()
		return nil, err
	}
	if s.Systemd {
		cmd.Args = append(cmd.Args, "-systemd")
	}
	err = cmd.Start()
	lf.Close()
	if err != nil {
		return nil, fmt.Errorf("run agent: %w", err)
	}
	if b.legacy != nil {
		// v1 hierarchies have no clone-into: the agent joins them at once,
		// before it answers (and so before any process of the distro is
		// asked for); what it started meanwhile (systemd's copy of it) is
		// swept in once it answers.
		if err := b.legacy.join(s.ID, cmd.Process.Pid); err != nil {
			unix.Kill(cmd.Process.Pid, unix.SIGKILL)
			cmd.Wait()
			return nil, err
		}
	}
	ch := &child{pid: cmd.Process.Pid, done: make(chan struct{})}
	b.mu.Lock()
	b.agents[s.ID] = ch
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		b.log.Info("agent exited", "distro", s.Name, "id", s.ID, "pid", ch.pid, "status", err)
		b.mu.Lock()
		if b.agents[s.ID] == ch {
			delete(b.agents, s.ID)
		}
		b.mu.Unlock()
		close(ch.done)
	}()
	b.log.Info("started distro", "distro", s.Name, "id", s.ID, "pid", ch.pid)

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		c, _, err := b.connect(ctx, s.ID)
		if err == nil {
			b.sweepLegacy(s, ch.pid)
			return c, nil
		}
		select {
		case <-ch.done:
			return nil, fmt.Errorf("agent exited during start: %s", logTail(logFile))
		case <-ctx.Done():
			// Do not leave a distro half started.
			unix.Kill(ch.pid, unix.SIGKILL)
			<-ch.done
			return nil, fmt.Errorf("agent did not answer: %w (last error: %v; log: %s)", ctx.Err(), err, logTail(logFile))
		case <-tick.C:
		}
	}
}

// kill ends an agent, and with it its PID namespace.
func (b *Backend) kill(pid, pidfd int) {
	var err error
	if pidfd >= 0 {
		err = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	} else {
		err = unix.Kill(pid, unix.SIGKILL)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		b.log.Warn("kill agent", "pid", pid, "err", err)
	}
}

// peerPID is the pid of the process that listens on the other end of a unix
// connection, as this process's PID namespace sees it; 0 if unknown.
func peerPID(conn net.Conn) int {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	rc.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// waitPidfd waits until the process behind pidfd has exited, bounded by ctx.
func waitPidfd(ctx context.Context, pidfd int) error {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 50)
		if n > 0 {
			return nil
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// logTail is the end of an agent log, for error messages.
func logTail(name string) string {
	f, err := os.Open(name)
	if err != nil {
		return "no log"
	}
	defer f.Close()
	const max = 2048
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "empty log"
	}
	return s
}

// applyLimits writes a distro's limits where this host keeps them: the
// cgroup v1 hierarchies on a hybrid host, else its cgroup v2. Without either,
// a limit fails with cgroup.ErrNoController and no limit is nothing to do.
func (b *Backend) applyLimits(id string, l cgroup.Limits) error {
	switch {
	case b.legacy != nil:
		return b.legacy.apply(id, l)
	case b.cg != nil:
		return b.cg.apply(id, l)
	case l != (cgroup.Limits{}):
		return fmt.Errorf("%w: distros have no cgroup on this host, so their limits cannot apply (remove the limits to start it)", cgroup.ErrNoController)
	}
	return nil
}

// sweepLegacy moves every process of a running distro (those in its agent's
// PID namespace) into its cgroup v1 hierarchies, on a host that uses them.
func (b *Backend) sweepLegacy(s vmm.Spec, agentPID int) {
	if b.legacy == nil || agentPID <= 0 {
		return
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", agentPID))
	if err != nil {
		return
	}
	pids := []int{agentPID}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == agentPID {
			continue
		}
		if n, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && n == ns {
			pids = append(pids, pid)
		}
	}
	if err := b.legacy.join(s.ID, pids...); err != nil {
		b.log.Warn("distro processes outside its cgroup v1 hierarchies", "distro", s.Name, "err", err)
	}
}
