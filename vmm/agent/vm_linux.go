package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// portRetry is how often the agent tries the port again while the host
	// is not connected. A virtio-serial port gives no way to wait for the
	// host: with no host, read returns 0 (end of file) at once and poll
	// reports POLLHUP at once, so only a bounded retry keeps the agent from
	// spinning. 100 ms is a delay nobody notices when the server restarts.
	portRetry = 100 * time.Millisecond
	// portWait bounds the wait for the port's device at boot, before the
	// agent gives up (and the VM ends, so the host sees why). The port
	// appears while its module loads, in milliseconds even under TCG:
	// 10 s is for a host that is very busy.
	portWait = 10 * time.Second
)

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// RunVM is the agent's life as PID 1 (/init) of version 2's utility VM. It
// mounts the VM's file systems, loads the kernel modules the initramfs lists,
// then serves the host on the virtio-serial port cfg.PortName, again and again:
// the host (the subsys server) reconnects after a restart while the VM and its
// distros keep running. It ends with PowerOff (or shutdown), which powers the
// VM off; it returns only when setting up fails.
func RunVM(ctx context.Context, cfg VMConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.PortName == "" {
		cfg.PortName = AgentPortName
	}
	if cfg.ModulesList == "" {
		cfg.ModulesList = "/modules.load"
	}
	log := cfg.Logger
	if os.Getpid() != 1 {
		// Mounting over /dev and powering off would wreck any other system.
		return errors.New("vm: not PID 1; RunVM is the utility VM's /init")
	}
	unix.Umask(0o022)
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("vm: mark fds close-on-exec: %w", err)
	}
	// As in RunInit: survive the signals Go would die of.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGQUIT, unix.SIGABRT)
	defer signal.Stop(sigs)
	startReaper()

	if err := setupVM(); err != nil {
		return err
	}
	ensureConsole()
	log.Info("subsys-agent: starting", "version", Version, "kernel", kernelRelease())
	if failed := loadModules(cfg.ModulesList, log); len(failed) > 0 {
		log.Error("subsys-agent: modules failed to load", "modules", strings.Join(failed, " "))
	}
	if err := linkUp("lo"); err != nil {
		log.Warn("lo up", "err", err)
	}

	h := newVMHost(log)
	srv := NewServer(ServerConfig{Logger: log})
	srv.vm = h
	defer srv.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- servePort(sctx, srv, cfg.PortName, log) }()
	// The same protocol on AF_VSOCK when the VM has a vsock device.
	vsockDone := make(chan struct{})
	go func() {
		defer close(vsockDone)
		serveVsock(sctx, srv, log)
	}()
	defer func() { cancel(); <-vsockDone }()
	reclaimDone := make(chan struct{})
	go func() {
		defer close(reclaimDone)
		h.mem.run(sctx)
	}()
	defer func() { cancel(); <-reclaimDone }()

	var serveErr error
wait:
	for {
		select {
		case s := <-sigs:
			log.Info("ignoring signal", "signal", s)
		case <-srv.ShutdownRequested():
			break wait
		case <-h.powerOff:
			break wait
		case <-ctx.Done():
			break wait
		case serveErr = <-served:
			break wait
		}
	}
	h.stopAll(context.Background())
	unix.Sync()
	cancel()
	if serveErr == nil {
		<-served
	}
	if ctx.Err() != nil {
		return nil
	}
	log.Info("subsys-agent: powering off", "serve_err", serveErr)
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		return fmt.Errorf("vm: power off: %w", err)
	}
	return nil
}

// setupVM mounts the VM's file systems. The initramfs has the mount points.
func setupVM() error {
	// The initramfs root is the kernel's rootfs, which pivot_root refuses to
	// move (it has no parent mount), and every distro's agent pivots. So, as
	// switch_root would, put a bind mount of it on top of itself and chroot
	// into that: the root then has a parent, and pivot_root works in the
	// distros' mount namespaces.
	if err := unix.Mount("/", "/tmp", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("vm: bind root: %w", err)
	}
	if err := unix.Chdir("/tmp"); err != nil {
		return fmt.Errorf("vm: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("vm: move root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("vm: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("vm: %w", err)
	}
	const (
		nosuid = unix.MS_NOSUID
		nodev  = unix.MS_NODEV
		noexec = unix.MS_NOEXEC
	)
	for _, m := range []struct {
		target, source, fstype string
		flags                  uintptr
		data                   string
	}{
		{"/dev", "devtmpfs", "devtmpfs", nosuid, "mode=0755"},
		{"/proc", "proc", "proc", nosuid | nodev | noexec, ""},
		{"/sys", "sysfs", "sysfs", nosuid | nodev | noexec, ""},
		{"/sys/fs/cgroup", "cgroup2", "cgroup2", nosuid | nodev | noexec, ""},
		{"/run", "tmpfs", "tmpfs", nosuid | nodev, "mode=0755"},
		{"/tmp", "tmpfs", "tmpfs", nosuid | nodev, "mode=1777"},
	} {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("vm: %w", err)
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if errors.Is(err, unix.EBUSY) {
			continue // mounted already (CONFIG_DEVTMPFS_MOUNT with a real root)
		}
		if err != nil {
			return fmt.Errorf("vm: mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	// e2fsck and resize2fs tell a mounted file system by /etc/mtab.
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return fmt.Errorf("vm: %w", err)
	}
	if err := os.Symlink("/proc/self/mounts", "/etc/mtab"); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("vm: %w", err)
	}
	return nil
}

// ensureConsole opens /dev/console as fds 0–2 when the kernel could not (it
// opens them before /init runs, from the built-in initramfs's /dev/console).
func ensureConsole() {
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err == nil {
		return
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	for i := 0; i <= 2; i++ {
		if i != fd {
			unix.Dup3(fd, i, 0)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
}

// loadModules loads every module the list names, in order, and returns the
// ones that failed. One module that fails is logged and skipped: the agent
// may still reach the host, and the host sees the list in the log.
func loadModules(list string, log *slog.Logger) (failed []string) {
	b, err := os.ReadFile(list)
	if errors.Is(err, os.ErrNotExist) {
		log.Info("no module list", "path", list)
		return nil
	}
	if err != nil {
		log.Error("module list", "err", err)
		return []string{list}
	}
	mods, err := parseModuleList(b)
	if err != nil {
		log.Error("module list", "err", err)
		failed = append(failed, list)
	}
	began := time.Now()
	for _, m := range mods {
		err := loadModule(m)
		if errors.Is(err, unix.ENODEV) {
			// The module is for hardware this VM lacks, e.g. crc32c-intel
			// on a CPU without SSE 4.2 (TCG): nothing is missing.
			log.Info("module does not apply", "module", m, "err", err)
			continue
		}
		if err != nil {
			log.Error("load module", "module", m, "err", err)
			failed = append(failed, filepath.Base(m))
		}
	}
	log.Info("modules loaded", "count", len(mods), "failed", len(failed), "took", time.Since(began).Round(time.Millisecond))
	// The files are no longer needed — nothing in the VM loads a module
	// later (it has no modprobe) — and the initramfs root is memory: 6 MB
	// of the guest's, and so of the host's, given back.
	for _, m := range mods {
		os.Remove(m)
	}
	return failed
}

func loadModule(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var flags int
	if strings.HasSuffix(path, ".xz") || strings.HasSuffix(path, ".zst") || strings.HasSuffix(path, ".gz") {
		// Compressed modules: the kernel decompresses them itself (5.17+,
		// CONFIG_MODULE_DECOMPRESS).
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(fd, "", flags)
	if errors.Is(err, unix.EEXIST) {
		return nil // built in, or loaded already
	}
	return err
}

// linkUp sets a network interface up.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// servePort serves the host on the virtio-serial port called name until ctx
// ends: one session per host connection, as many as the host makes.
func servePort(ctx context.Context, srv *Server, name string, log *slog.Logger) error {
	dev, err := waitPort(ctx, "/sys", name)
	if err != nil {
		return err
	}
	path := "/dev/" + dev
	// The port stays open for the life of the agent and each session is
	// served on a duplicate of it. Closing the port would make the kernel
	// discard what the host sent meanwhile (a host that reconnects at once
	// would lose its first request), while closing a duplicate releases
	// nothing; yet closing the duplicate's *os.File still ends the session's
	// pending reads and writes, so a write of a dead session cannot reach the
	// next host. O_NONBLOCK puts it in Go's poller, for deadlines and Close.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("vm: open %s: %w", path, err)
	}
	defer unix.Close(fd)
	log.Info("subsys-agent: serving on " + path)
	tick := time.NewTicker(portRetry)
	defer tick.Stop()
	for {
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("vm: dup %s: %w", path, err)
		}
		began := time.Now()
		if err := srv.ServeConn(ctx, newFileConn(os.NewFile(uintptr(dup), path))); err != nil {
			log.Info("host session ended", "err", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if d := time.Since(began); d > time.Second {
			log.Info("host disconnected", "after", d.Round(time.Millisecond))
		}
		// With no host, the session above ended at once (end of file):
		// wait a tick before the next try. See portRetry.
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// waitPort waits, bounded by portWait and ctx, for the virtio-serial port
// called name and its device node: the driver and devtmpfs make them
// asynchronously after the module loads.
func waitPort(ctx context.Context, sysRoot, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, portWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		dev, err := findVirtioPort(sysRoot, name)
		if err == nil {
			if _, err = os.Stat("/dev/" + dev); err == nil {
				return dev, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("vm: no virtio-serial port %q: %w (last error: %v)", name, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// fileConn is an *os.File (a virtio-serial port) as a net.Conn.
type fileConn struct {
	*os.File
	closeOnce sync.Once
	closeErr  error
}

func newFileConn(f *os.File) *fileConn { return &fileConn{File: f} }

// Close closes the file once; yamux closes its conn more than once.
func (c *fileConn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.File.Close() })
	return c.closeErr
}

// LocalAddr and RemoteAddr name the device.
func (c *fileConn) LocalAddr() net.Addr  { return fileAddr(c.Name()) }
func (c *fileConn) RemoteAddr() net.Addr { return fileAddr(c.Name()) }

type fileAddr string

func (a fileAddr) Network() string { return "virtio-serial" }
func (a fileAddr) String() string  { return string(a) }
