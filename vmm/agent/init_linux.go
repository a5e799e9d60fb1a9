package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// shutdownTimeout bounds how long the agent waits for killed processes to be
// reaped before it exits anyway (exiting PID 1 kills the rest).
const shutdownTimeout = 5 * time.Second

// RunInit is the agent's life as PID 1 of a version 1 distro. The caller must
// have started it in new mount, PID, UTS and IPC namespaces. It listens on
// cfg.Socket (before pivoting, so the host can reach it), sets up the distro's
// mounts, pivots into cfg.RootFS, serves clients until one asks for shutdown,
// then kills every process of the distro and returns. It returns an error when
// setting up fails; it never returns without removing the socket.
func RunInit(ctx context.Context, cfg InitConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Socket == "" || cfg.RootFS == "" || cfg.Hostname == "" {
		return errors.New("init: socket, rootfs and hostname are required")
	}
	if err := checkNamespaces(); err != nil {
		return err
	}
	if cfg.Systemd {
		if err := checkCgroupNamespace(); err != nil {
			return err
		}
	}
	// The distro's processes get a conventional umask; ours is inherited.
	unix.Umask(0o022)
	// Processes in the distro inherit fds 0–2 and nothing else: Go opens
	// everything close-on-exec, and this covers whatever we inherited.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("init: mark fds close-on-exec: %w", err)
	}

	// Catch the signals Go would die of: processes in the distro may send
	// them to PID 1 (`kill 1`), and the agent must outlive them. Caught
	// signals are reset to the default in children, unlike ignored ones.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGQUIT, unix.SIGABRT)
	defer signal.Stop(sigs)
	startReaper()

	ln, cleanup, err := listenHost(cfg)
	if err != nil {
		return err
	}
	defer cleanup()

	if err := setupRoot(cfg, log); err != nil {
		ln.Close()
		return err
	}
	if cfg.Systemd {
		// Success never returns: this process becomes systemd.
		err := execSystemd(ln, log)
		ln.Close()
		return err
	}
	log.Info("distro ready", "hostname", cfg.Hostname)

	srv := NewServer(ServerConfig{Logger: log})
	defer srv.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	var serveErr error
wait:
	for {
		select {
		case s := <-sigs:
			log.Info("ignoring signal", "signal", s)
		case <-srv.ShutdownRequested():
			break wait
		case <-ctx.Done():
			break wait
		case serveErr = <-served:
			log.Error("serve", "err", serveErr)
			break wait
		}
	}

	// Every process of the distro first, then the sessions: clients see their
	// processes' exits before the connection closes.
	log.Info("killing every process")
	if err := unix.Kill(-1, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		log.Error("kill all", "err", err)
	}
	stop := make(chan struct{})
	timer := time.AfterFunc(shutdownTimeout, func() { close(stop) })
	theReaper.reapAll(stop)
	timer.Stop()
	cancel()
	if serveErr == nil {
		<-served
	}
	return nil
}

// checkNamespaces refuses to run outside fresh namespaces: making every mount
// private or calling kill(-1) in the host's namespaces would wreck the host.
func checkNamespaces() error {
	if os.Getpid() != 1 {
		return errors.New("init: not PID 1; the agent must be started in a new PID namespace")
	}
	// /proc is still the host's here, so it shows our parent (the server),
	// which getppid cannot: to a namespace's init the parent is outside.
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	parent, err := parentNamespace("mnt")
	if err != nil {
		return fmt.Errorf("init: cannot tell the parent's mount namespace, refusing to run: %w", err)
	}
	if self == parent {
		return errors.New("init: in the parent's mount namespace; the agent must be started in a new one")
	}
	return nil
}

// parentNamespace reads our parent's namespace of a kind ("mnt", "cgroup")
// through the host's /proc.
func parentNamespace(kind string) (string, error) {
	hostPID, err := os.Readlink("/proc/self")
	if err != nil {
		return "", err
	}
	stat, err := os.ReadFile("/proc/" + hostPID + "/stat")
	if err != nil {
		return "", err
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 2 {
		return "", fmt.Errorf("cannot parse /proc/%s/stat", hostPID)
	}
	return os.Readlink("/proc/" + f[1] + "/ns/" + kind)
}

// listenHost opens the socket and pid file on the host's file system, before
// the pivot hides it. It keeps directory fds so that it can remove both at
// exit, when host paths no longer resolve.
func listenHost(cfg InitConfig) (net.Listener, func(), error) {
	sockDir, sockName := filepath.Split(cfg.Socket)
	sdir, err := unix.Open(filepath.Clean(sockDir), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("init: open socket dir: %w", err)
	}
	// A stale socket from an agent that died: the server only starts us
	// after no agent answered on it.
	var st unix.Stat_t
	if unix.Fstatat(sdir, sockName, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		unix.Unlinkat(sdir, sockName, 0)
	}
	// Only root may connect: the umask makes the socket 0600 from the start.
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		unix.Close(sdir)
		return nil, nil, fmt.Errorf("init: %w", err)
	}
	// We remove the socket ourselves, through sdir, when we exit.
	ln.SetUnlinkOnClose(false)

	pdir, pidName := -1, ""
	if cfg.PIDFile != "" {
		pidDir, name := filepath.Split(cfg.PIDFile)
		if pdir, err = unix.Open(filepath.Clean(pidDir), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			ln.Close()
			unix.Unlinkat(sdir, sockName, 0)
			unix.Close(sdir)
			return nil, nil, fmt.Errorf("init: open pid file dir: %w", err)
		}
		pidName = name
		// Our pid as the host sees it: /proc is still the host's.
		hostPID, err := os.Readlink("/proc/self")
		if err == nil {
			err = writeFileAt(pdir, pidName, []byte(hostPID+"\n"), 0o644)
		}
		if err != nil {
			ln.Close()
			unix.Unlinkat(sdir, sockName, 0)
			unix.Close(sdir)
			unix.Close(pdir)
			return nil, nil, fmt.Errorf("init: write pid file: %w", err)
		}
	}
	cleanup := func() {
		ln.Close()
		unix.Unlinkat(sdir, sockName, 0)
		unix.Close(sdir)
		if pdir >= 0 {
			unix.Unlinkat(pdir, pidName, 0)
			unix.Close(pdir)
		}
	}
	return ln, cleanup, nil
}

// setupRoot mounts the distro's file systems, pivots into its root and writes
// its network files.
func setupRoot(cfg InitConfig, log *slog.Logger) error {
	// Read the host's resolver config while its paths still resolve the
	// host's way (an absolute symlink such as systemd-resolved's would point
	// into the distro after the pivot).
	// Inside the utility VM there may be none: the distro keeps its own.
	resolv, err := readSmallFile("/etc/resolv.conf")
	if err != nil || len(resolv) > 64<<10 {
		log.Warn("cannot read the host's resolv.conf; leaving the distro's", "err", err)
		resolv = nil
	} else if resolv == nil {
		log.Warn("the host has no resolv.conf; leaving the distro's")
	}

	// Nothing done in here may reach the host's mount table. In the
	// utility VM the mounts are slaves rather than private: they still
	// receive what the VM's agent mounts on the host files' shared mount
	// point (9p in place of a virtio-fs whose daemon died).
	if err := unix.Mount("", "/", "", unix.MS_REC|mountFollow(cfg.VMDevices), ""); err != nil {
		return fmt.Errorf("init: make mounts private: %w", err)
	}
	rootPath, err := filepath.Abs(cfg.RootFS)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(rootPath, rootPath, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("init: bind rootfs: %w", err)
	}
	// Opened after the bind so that it refers to the new mount.
	root, err := unix.Open(rootPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("init: open rootfs: %w", err)
	}
	defer unix.Close(root)
	if err := mountAll(root, cfg.HostRoot, cfg.HostRootFD, cfg.VMDevices); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if cfg.Systemd {
		if err := mountSystemdExtras(root); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}

	if err := unix.Fchdir(root); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one; the
	// detach then drops it, leaving nothing of the host but /mnt/host.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("init: pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("init: detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("init: sethostname: %w", err)
	}
	if err := writeNetworkFiles(resolv, cfg.Hostname, cfg.Hosts, cfg.Systemd); err != nil {
		// A distro with an odd /etc still runs; name resolution may not.
		log.Warn("network files", "err", err)
	}
	return nil
}

// mountFollow is the propagation of a distro's mounts: private on the host,
// where nothing of the host's mount table may reach it after the start; a
// slave in the utility VM (inVM), which receives and never sends.
func mountFollow(inVM bool) uintptr {
	if inVM {
		return unix.MS_SLAVE
	}
	return unix.MS_PRIVATE
}

// mountAll mounts the distro's file systems inside root (an fd to the rootfs
// mount). Every target is resolved inside root and must be a real directory.
func mountAll(root int, hostRoot string, hostRootFD int, vmDevices bool) error {
	const (
		nosuid = unix.MS_NOSUID
		nodev  = unix.MS_NODEV
		noexec = unix.MS_NOEXEC
	)
	// First /mnt/host, so the copy of the host's tree holds no distro mounts.
	// Without a host root there is none.
	if hostRootFD > 0 {
		// The VM's host files, a detached tree made a slave already.
		fd, err := mkdirIn(root, "mnt/host", 0o755)
		if err != nil {
			return err
		}
		err = unix.MoveMount(hostRootFD, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
		unix.Close(fd)
		unix.Close(hostRootFD)
		if err != nil {
			return fmt.Errorf("attach the host's files at /mnt/host: %w", err)
		}
	} else if hostRoot != "" {
		if err := mountIn(root, "mnt/host", hostRoot, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		// Private (a slave in the VM) again, explicitly: nothing under
		// /mnt/host propagates back.
		if err := mountIn(root, "mnt/host", "", "", unix.MS_REC|mountFollow(vmDevices), ""); err != nil {
			return err
		}
	}
	type mount struct {
		target, source, fstype string
		flags                  uintptr
		data                   string
	}
	for _, m := range []mount{
		{"proc", "proc", "proc", nosuid | nodev | noexec, ""},
		{"sys", "sysfs", "sysfs", nosuid | nodev | noexec | unix.MS_RDONLY, ""},
		{"dev", "tmpfs", "tmpfs", nosuid | noexec, "mode=755,size=65536k"},
		{"dev/pts", "devpts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"dev/shm", "shm", "tmpfs", nosuid | nodev, "mode=1777"},
		{"tmp", "tmpfs", "tmpfs", nosuid | nodev, "mode=1777"},
		{"run", "tmpfs", "tmpfs", nosuid | nodev, "mode=755"},
	} {
		if err := mountIn(root, m.target, m.source, m.fstype, m.flags, m.data); err != nil {
			return err
		}
		if m.target == "dev" {
			if err := populateDev(root, vmDevices); err != nil {
				return err
			}
		}
	}
	// Debian's tools expect /run/lock; tmpfiles.d would make it on a booted
	// system. chmod goes through /proc because O_PATH fds cannot be chmodded.
	lock, err := mkdirIn(root, "run/lock", 0o755)
	if err != nil {
		return err
	}
	defer unix.Close(lock)
	if err := os.Chmod(procFD(lock), 0o777|os.ModeSticky); err != nil {
		return fmt.Errorf("chmod /run/lock: %w", err)
	}
	return nil
}

// populateDev fills the fresh /dev tmpfs with the host's harmless devices and
// the usual links.
func populateDev(root int, vmDevices bool) error {
	dev, err := openIn(root, "dev", false)
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		fd, err := unix.Openat(dev, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o666)
		if err != nil {
			return fmt.Errorf("create /dev/%s: %w", name, err)
		}
		err = unix.Mount("/dev/"+name, procFD(fd), "", unix.MS_BIND, "")
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("bind /dev/%s: %w", name, err)
		}
	}
	if vmDevices {
		if err := makeVMDevices(dev); err != nil {
			return err
		}
	}
	links := [][2]string{
		{"pts/ptmx", "ptmx"},
		{"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"},
	}
	for _, l := range links {
		if err := unix.Symlinkat(l[0], dev, l[1]); err != nil {
			return fmt.Errorf("link /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

// mountIn mounts onto p inside root, creating the directory if needed. The
// mount goes through /proc/self/fd, so what is mounted on is exactly the
// directory that was checked, whatever the distro's tree does meanwhile.
func mountIn(root int, p, source, fstype string, flags uintptr, data string) error {
	fd, err := mkdirIn(root, p, 0o755)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Mount(source, procFD(fd), fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on /%s: %w", fstype+source, p, err)
	}
	return nil
}

// procFD names an fd through the host's /proc, which is still mounted while
// the agent sets up.
func procFD(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}

// openIn opens the directory p inside root for use as a mount point. Symlinks
// on the way are resolved as if root were / (RESOLVE_IN_ROOT), so a distro's
// absolute links work and none leads out. Unless followLast, the last element
// must itself be a directory, not a symlink, so the distro cannot choose what
// gets covered.
func openIn(root int, p string, followLast bool) (int, error) {
	flags := uint64(unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC)
	if !followLast {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Openat2(root, p, &unix.OpenHow{
		Flags:   flags,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return -1, fmt.Errorf("rootfs /%s is not a directory (a symlink?); refusing to mount on it: %w", p, err)
	}
	if err != nil {
		return -1, fmt.Errorf("open rootfs /%s: %w", p, err)
	}
	return fd, nil
}

// mkdirIn is openIn that first creates missing directories, each inside root.
// Existing parents may be symlinks (followed inside root); every directory it
// creates is opened again without following anything, so a symlink planted
// meanwhile is refused.
func mkdirIn(root int, p string, mode uint32) (int, error) {
	fd, err := openIn(root, p, false)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, base := filepath.Split(p)
	parent = strings.TrimSuffix(parent, "/")
	var pfd int
	switch {
	case parent == "":
		pfd, err = unix.Dup(root)
	default:
		pfd, err = openIn(root, parent, true)
		if errors.Is(err, unix.ENOENT) {
			pfd, err = mkdirIn(root, parent, mode)
		}
	}
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, base, mode); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create rootfs /%s: %w", p, err)
	}
	fd, err = unix.Openat2(pfd, base, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("rootfs /%s: %w; refusing to mount on it", p, err)
	}
	return fd, nil
}

// writeNetworkFiles writes /etc/resolv.conf and patches /etc/hosts, and with
// etcHostname writes /etc/hostname too, which a distro's systemd sets the
// hostname from at boot (over the one the agent set). It runs
// after the pivot and will not cross into another mount, so an /etc or a file
// linked to /mnt/host cannot make it write to the host's files.
func writeNetworkFiles(resolv []byte, hostname string, extra map[string]string, etcHostname bool) error {
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS,
	}
	etc, err := unix.Openat2(root, "etc", how)
	if errors.Is(err, unix.ENOENT) {
		if err = unix.Mkdirat(root, "etc", 0o755); err == nil {
			etc, err = unix.Openat2(root, "etc", how)
		}
	}
	if err != nil {
		return fmt.Errorf("open /etc: %w", err)
	}
	defer unix.Close(etc)

	var errs []error
	if resolv != nil {
		data := append([]byte("# Written by subsys from the host's /etc/resolv.conf at start.\n"), resolv...)
		if err := writeFileAt(etc, "resolv.conf", data, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write /etc/resolv.conf: %w", err))
		}
	}
	var old []byte
	if fd, err := unix.Openat(etc, "hosts", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
		f := os.NewFile(uintptr(fd), "/etc/hosts")
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && fi.Mode().IsRegular() {
			old, err = io.ReadAll(io.LimitReader(f, 1<<20))
		}
		f.Close()
		if err != nil {
			old = nil
		}
	}
	if err := writeFileAt(etc, "hosts", addHosts(patchHosts(old, hostname), extra), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("write /etc/hosts: %w", err))
	}
	if etcHostname {
		if err := writeFileAt(etc, "hostname", []byte(hostname+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write /etc/hostname: %w", err))
		}
	}
	return errors.Join(errs...)
}

// writeFileAt replaces dir/name with data atomically. The rename replaces a
// symlink rather than following it.
func writeFileAt(dir int, name string, data []byte, mode uint32) error {
	tmp := "." + name + ".subsys-tmp"
	unix.Unlinkat(dir, tmp, 0)
	fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dir, tmp, dir, name)
	}
	if err != nil {
		unix.Unlinkat(dir, tmp, 0)
	}
	return err
}

// vmLoopDevices is how many loop devices a version 2 distro's /dev offers
// besides loop-control: its tmpfs /dev does not grow nodes for devices made
// later, as devtmpfs would.
const vmLoopDevices = 8

// makeVMDevices makes, in a version 2 distro's own /dev tmpfs, the nodes of
// devices that belong to the VM's kernel: loop-control and loop0–7, fuse,
// net/tun. They are nodes in this distro's tmpfs only; the VM's devtmpfs,
// which other distros could see, is not touched.
func makeVMDevices(dev int) error {
	nodes := []struct {
		name         string
		mode         uint32
		major, minor uint32
	}{
		{"loop-control", unix.S_IFCHR | 0o660, 10, 237},
		{"fuse", unix.S_IFCHR | 0o666, 10, 229},
	}
	for i := 0; i < vmLoopDevices; i++ {
		nodes = append(nodes, struct {
			name         string
			mode         uint32
			major, minor uint32
		}{"loop" + strconv.Itoa(i), unix.S_IFBLK | 0o660, 7, uint32(i)})
	}
	for _, n := range nodes {
		if err := unix.Mknodat(dev, n.name, n.mode, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("create /dev/%s: %w", n.name, err)
		}
	}
	if err := unix.Mkdirat(dev, "net", 0o755); err != nil {
		return fmt.Errorf("create /dev/net: %w", err)
	}
	net, err := unix.Openat(dev, "net", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/net: %w", err)
	}
	defer unix.Close(net)
	if err := unix.Mknodat(net, "tun", unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err != nil {
		return fmt.Errorf("create /dev/net/tun: %w", err)
	}
	return nil
}
