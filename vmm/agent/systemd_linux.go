package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// systemdPaths are where distributions install systemd's PID 1 program,
// looked up inside the distro's root.
var systemdPaths = []string{"/usr/lib/systemd/systemd", "/lib/systemd/systemd"}

// sigPowerOff is SIGRTMIN+4 as the C library numbers it (SIGRTMIN is 34
// there), which systemd as PID 1 takes as "power off": it stops every unit and,
// in a PID namespace, exits, which ends the namespace.
const sigPowerOff = syscall.Signal(34 + 4)

// systemdSocket is the socket systemd (PID 1) answers systemctl on, and
// systemdWait how long the agent waits for it before serving anyway: the
// server's start waits 30 s for the agent.
const (
	systemdSocket = "/run/systemd/private"
	systemdWait   = 20 * time.Second
)

// waitForFile waits until path exists, checking every 20 ms, for at most
// limit.
func waitForFile(ctx context.Context, path string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Lstat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// cgroupRoot is where a distro with systemd gets its cgroup tree.
const cgroupRoot = "/sys/fs/cgroup"

// findSystemd returns the path of systemd's program in the distro (after the
// pivot), or an error that says how to get one.
func findSystemd() (string, error) {
	for _, p := range systemdPaths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("systemd is turned on for this distro but it has no %s: install systemd in it (apt-get install systemd), or turn systemd off", systemdPaths[0])
}

// checkCgroupNamespace refuses systemd outside a cgroup namespace of the
// distro's own: mounting cgroup2 writable there would hand the distro the
// host's (or the VM's) whole cgroup tree.
func checkCgroupNamespace() error {
	self, err := os.Readlink("/proc/self/ns/cgroup")
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	parent, err := parentNamespace("cgroup")
	if err != nil {
		return fmt.Errorf("init: cannot tell the parent's cgroup namespace, refusing to start systemd: %w", err)
	}
	if self == parent {
		return errors.New("init: systemd needs the distro in a cgroup namespace of its own, and it is in its parent's")
	}
	raw, err := readSmallFile("/proc/self/cgroup")
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	// The cgroup v2 line; a host with v1 hierarchies too lists them first.
	for _, l := range strings.Split(string(raw), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			if p != "/" {
				return fmt.Errorf("init: systemd needs the distro at the root of its cgroup namespace, not at %q", p)
			}
			return nil
		}
	}
	return errors.New("init: systemd needs cgroup v2, and this process is in no v2 cgroup")
}

// mountSystemdExtras gives systemd what it needs of the distro's mounts: its
// cgroup tree, writable (the namespace shows only the distro's cgroup), and a
// read-only /proc/sys, so that a version 1 distro's boot (systemd-sysctl and
// friends) cannot set the host kernel's parameters, as in other containers.
func mountSystemdExtras(root int) error {
	if err := mountIn(root, "sys/fs/cgroup", "cgroup2", "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "nsdelegate"); err != nil {
		// nsdelegate is for the namespace's root only on some kernels.
		if err := mountIn(root, "sys/fs/cgroup", "cgroup2", "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return err
		}
	}
	for _, p := range []string{"proc/sys", "proc/sysrq-trigger"} {
		// Some kernels have no sysrq-trigger.
		if err := bindReadOnly(root, p); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}

// bindReadOnly binds p (inside root) onto itself read-only.
func bindReadOnly(root int, p string) error {
	fd, err := unix.Openat2(root, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return fmt.Errorf("open /%s: %w", p, err)
	}
	defer unix.Close(fd)
	if err := unix.Mount(procFD(fd), procFD(fd), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind /%s: %w", p, err)
	}
	// The fd names the directory under the new bind; reopen it to reach the
	// bind itself.
	top, err := unix.Openat2(root, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return fmt.Errorf("open /%s: %w", p, err)
	}
	defer unix.Close(top)
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount("", procFD(top), "", flags, ""); err != nil {
		return fmt.Errorf("make /%s read-only: %w", p, err)
	}
	return nil
}

// execSystemd is the end of RunInit for a distro with systemd: it starts the
// agent's server in a copy of this program (RunBesideSystemd) with the
// listening socket and in the cgroup AgentCgroup, then replaces this
// process, the PID namespace's init, with systemd. It returns only on failure.
func execSystemd(ln net.Listener, log *slog.Logger) error {
	path, err := findSystemd()
	if err != nil {
		return err
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		return fmt.Errorf("init: listener is a %T, not a unix socket", ln)
	}
	lf, err := ul.File() // a duplicate, which the copy inherits as fd 3
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	defer lf.Close()
	dir := filepath.Join(cgroupRoot, AgentCgroup)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("init: create the agent's cgroup: %w", err)
	}
	cg, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("init: open the agent's cgroup: %w", err)
	}
	defer cg.Close()

	// /proc/self/exe still names this program after the pivot, though no
	// path in the distro does.
	cmd := exec.Command("/proc/self/exe", "-beside-systemd", "-listen-fd=3")
	cmd.Dir = "/"
	cmd.Env = []string{}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("init: start the agent beside systemd: %w", err)
	}
	log.Info("starting systemd", "path", path, "agent", cmd.Process.Pid)
	// systemd reaps the copy, as every other orphan, once we are it.
	cmd.Process.Release()
	// The distro's PID 1 gets what a container's does: `container` tells
	// systemd not to touch hardware, and it logs to our stderr (the agent's
	// log on the host, the VM's console for version 2).
	env := []string{"container=subsys", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	signal.Reset()
	err = unix.Exec(path, []string{path}, env)
	// The copy serves a distro whose init is gone: end it.
	cmd.Process.Kill()
	return fmt.Errorf("init: exec %s: %w", path, err)
}

// RunBesideSystemd is the agent's life beside systemd, which is the distro's
// PID 1 (InitConfig.Systemd): it serves the socket that PID 1 opened and
// passed as cfg.ListenFD, until a client asks for shutdown. Then it asks
// systemd to power off, which stops the distro's services and ends the PID
// namespace, and with it this process. It does not return then.
func RunBesideSystemd(ctx context.Context, cfg BesideConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if os.Getpid() == 1 {
		return errors.New("agent beside systemd: running as PID 1; this mode is for the copy that systemd's PID 1 starts")
	}
	f := os.NewFile(uintptr(cfg.ListenFD), "listener")
	if f == nil {
		return fmt.Errorf("agent beside systemd: fd %d is not open", cfg.ListenFD)
	}
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("agent beside systemd: listener: %w", err)
	}
	defer ln.Close()
	unix.Umask(0o022)
	// systemd's final kill sends SIGTERM to every process; other processes of
	// the distro may send it too. Only the first ends the agent, and only
	// once the distro is going down.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGQUIT)
	defer signal.Stop(sigs)
	startReaper()

	// Clients come to a distro with a working systemctl: the agent answers
	// once systemd listens on its private socket (its first act after its
	// mounts), or after a while without, which it logs.
	if err := waitForFile(ctx, systemdSocket, systemdWait); err != nil {
		log.Warn("systemd has not come up; serving anyway", "socket", systemdSocket, "err", err)
	}
	srv := NewServer(ServerConfig{Logger: log})
	defer srv.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	log.Info("serving beside systemd")
	stopping := false
	for {
		select {
		case s := <-sigs:
			if s == unix.SIGTERM && (stopping || systemdShuttingDown()) {
				log.Info("systemd is shutting down")
				return nil
			}
			log.Info("ignoring signal", "signal", s)
		case <-srv.ShutdownRequested():
			if stopping {
				continue
			}
			stopping = true
			// Keep serving meanwhile, so that clients see their processes'
			// exits; the namespace's end ends this process.
			log.Info("asking systemd to power off")
			if err := unix.Kill(1, sigPowerOff); err != nil {
				return fmt.Errorf("agent beside systemd: signal systemd: %w", err)
			}
		case <-ctx.Done():
			return nil
		case err := <-served:
			return err
		}
	}
}

// systemdShuttingDown tells whether PID 1 is going down: systemd re-executes
// itself as systemd-shutdown for the last step, which sends every process
// SIGTERM.
func systemdShuttingDown() bool {
	raw, err := readSmallFile("/proc/1/comm")
	if err != nil {
		return true // PID 1 is gone or unreadable: nothing left to serve
	}
	comm := strings.TrimSpace(string(raw))
	return strings.HasPrefix(comm, "systemd-shutdow") || comm == "shutdown"
}
