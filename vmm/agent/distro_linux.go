package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/vmm/cgroup"

	"github.com/subsys-dev/subsys/netmgr/sockdiag"
	"github.com/subsys-dev/subsys/vmm/archive"
)

const (
	// distroStartTimeout bounds how long a distro's agent may take to answer
	// after it was started (ctx may bound it more).
	distroStartTimeout = 30 * time.Second
	// distroStopTimeout bounds how long a distro's agent may take to exit
	// after shutdown before it is killed.
	// A distro's systemd stops its services in that time.
	distroStopTimeout = 30 * time.Second
	// diskPoll is how often the agent looks for a hot-plugged disk, and for
	// a disk to be free after unmount: both are asynchronous in the kernel.
	diskPoll = 20 * time.Millisecond
	// powerOffAckTimeout bounds how long power-off waits for the host to
	// close its stream (its sign that the reply arrived) before powering
	// off anyway.
	powerOffAckTimeout = 2 * time.Second
)

// vmHost keeps the utility VM's distros: their disks' mounts and their
// agents. It implements the VM's ops for the Server.
type vmHost struct {
	log *slog.Logger
	// mem reclaims the VM's page cache (memory op, idle loop).
	mem *reclaimer
	// Where things are; fields so tests can point them elsewhere.
	sysRoot   string // sysfs, /sys
	devRoot   string // device nodes, /dev
	runDir    string // the distros' mount points and sockets, /run/subsys/distros
	exportDir string // temporary mounts of stopped distros' disks, /run/subsys/export
	cgroupDir string // the distros' cgroups, /sys/fs/cgroup/distros
	agentPath string // the agent binary to start distros with, /proc/self/exe

	// powerOff is closed once the host asked for power-off and every
	// distro has stopped; RunVM then powers the VM off.
	powerOff     chan struct{}
	powerOffOnce sync.Once

	mu      sync.Mutex
	distros map[string]*vmDistro // running distros by id
	// hostFS is how the host's files are mounted at hostDir: "virtio-fs",
	// "9p", or "" while they are not. noVirtiofs is set once virtiofsd
	// has gone: from then on 9p.
	hostFS     string
	noVirtiofs bool
	// hostBase is an O_PATH descriptor of hostDir's shared tmpfs, opened
	// before the share covered it; -1 before it is mounted.
	hostBase int
	// virtiofsMounted says virtio-fs is mounted at hostDir and not yet
	// replaced; atomic, so that a second abort returns at once.
	virtiofsMounted atomic.Bool
	// hostAddress is what HostAliasName names in distros started from now
	// on (configure-network); empty before the network is set up.
	hostAddress string
	locks       map[string]*idLock // serializes start, stop and export of one id
	wg          sync.WaitGroup     // the goroutines watching agents
}

// vmDistro is a running distro.
type vmDistro struct {
	id     string
	root   string // its disk's mount point
	sock   string // its agent's socket
	dev    string // its disk, /dev/sdX
	pid    int    // its agent's pid
	target int    // its disk's SCSI target
	// exiting is set once the agent has exited; done is closed once its
	// disk is unmounted and it is forgotten.
	exiting atomic.Bool
	done    chan struct{}
}

type idLock struct {
	mu   sync.Mutex
	refs int
}

func newVMHost(log *slog.Logger) *vmHost {
	return &vmHost{
		log:       log,
		mem:       newReclaimer(log),
		sysRoot:   "/sys",
		devRoot:   "/dev",
		runDir:    "/run/subsys/distros",
		exportDir: "/run/subsys/export",
		cgroupDir: "/sys/fs/cgroup/distros",
		agentPath: "/proc/self/exe",
		powerOff:  make(chan struct{}),
		distros:   make(map[string]*vmDistro),
		locks:     make(map[string]*idLock),
	}
}

// lock takes id's lock, so that one distro is started, stopped or exported
// by one request at a time; the returned func releases it.
func (h *vmHost) lock(id string) func() {
	h.mu.Lock()
	l := h.locks[id]
	if l == nil {
		l = &idLock{}
		h.locks[id] = l
	}
	l.refs++
	h.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		h.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(h.locks, id)
		}
		h.mu.Unlock()
	}
}

// running returns the distro if its agent runs.
func (h *vmHost) running(id string) *vmDistro {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.distros[id]
	if d == nil || d.exiting.Load() {
		return nil
	}
	return d
}

func (h *vmHost) handle(ctx context.Context, st *yamux.Stream, br *bufio.Reader, req request) bool {
	dreq := DistroRequest{ID: req.ID, Hostname: req.Hostname, DiskTarget: req.DiskTarget, ReadOnly: req.ReadOnly, Limits: req.Limits, Systemd: req.Systemd}
	var err error
	switch req.Op {
	case opStartDistro:
		err = h.start(ctx, dreq)
	case opStopDistro:
		err = h.stop(ctx, req.ID)
	case opListDistros:
		writeHeader(st, reply{OK: true, Distros: h.list()})
		return true
	case opOpenDistro:
		h.open(ctx, st, br, req.ID)
		return true
	case opExportTree:
		h.export(ctx, st, br, dreq, req.Format)
		return true
	case opPowerOff:
		h.handlePowerOff(ctx, st)
		return true
	case opListeners:
		ls, lerr := distroListeners(ctx)
		if lerr == nil {
			writeHeader(st, reply{OK: true, Listeners: ls})
			return true
		}
		err = lerr
	case opWatchListeners:
		h.watchListeners(ctx, st)
		return true
	case opDial:
		h.dial(ctx, st, br, req.Net, req.Address)
		return true
	case opMemory:
		m, dropped, merr := h.handleMemory(req.Action, req.Mode)
		if merr == nil {
			writeHeader(st, reply{OK: true, Memory: &m, Reclaimed: dropped})
			return true
		}
		err = merr
	case opSetLimits:
		err = h.setLimits(req.ID, req.Limits)
	case opDistroCgroup:
		stats, cerr := h.distroCgroup(req.ID)
		if cerr == nil {
			writeHeader(st, reply{OK: true, Cgroup: &stats})
			return true
		}
		err = cerr
	case opDisk:
		info, derr := h.handleDisk(ctx, req)
		if derr == nil {
			writeHeader(st, reply{OK: true, Disk: &info})
			return true
		}
		err = derr
	case opFormatDisk:
		err = h.formatDisk(ctx, req.DiskTarget)
	case opUnpackTree:
		h.unpack(ctx, st, br, req.DiskTarget)
		return true
	case opHostFiles:
		transport, herr := h.handleHostFiles(req.Action)
		if herr == nil {
			writeHeader(st, reply{OK: true, HostFiles: transport})
			return true
		}
		err = herr
	case opConfigureNetwork, opNetworkInfo:
		if req.Op == opConfigureNetwork {
			if req.Network == nil {
				err = fmt.Errorf("%w: configure-network without a network", ErrBadRequest)
			} else if err = configureNetwork(*req.Network); err == nil {
				h.mu.Lock()
				h.hostAddress = req.Network.HostAddress
				h.mu.Unlock()
			}
		}
		var addrs []string
		if err == nil {
			addrs, err = networkAddresses()
		}
		if err == nil {
			writeHeader(st, reply{OK: true, Addresses: addrs})
			return true
		}
	default:
		return false
	}
	if err != nil {
		h.log.Error(req.Op, "distro", req.ID, "err", err)
		writeHeader(st, reply{Error: &wireError{Code: errorCode(err), Message: err.Error()}})
		return true
	}
	writeHeader(st, reply{OK: true})
	return true
}

func (h *vmHost) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.distros))
	for id, d := range h.distros {
		if !d.exiting.Load() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// start mounts the distro's disk and starts its agent; see StartDistro.
func (h *vmHost) start(ctx context.Context, req DistroRequest) (err error) {
	if err := checkDistroRequest(req, true); err != nil {
		return fmt.Errorf("start distro: %w", err)
	}
	id := req.ID
	defer func() {
		if err != nil {
			err = fmt.Errorf("start distro %s: %w", id, err)
		}
	}()
	unlock := h.lock(id)
	defer unlock()
	h.mu.Lock()
	d := h.distros[id]
	h.mu.Unlock()
	if d != nil {
		if !d.exiting.Load() {
			return nil
		}
		// It is on its way out: let it go, then start it again.
		select {
		case <-d.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, distroStartTimeout)
	defer cancel()

	dir := filepath.Join(h.runDir, id)
	root := filepath.Join(dir, "root")
	// 0700: nothing but the VM's agent (root) has business in here.
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	began := time.Now()
	dev, err := h.waitAndMount(ctx, req, root)
	if err != nil {
		return err
	}
	mounted := time.Now()
	d = &vmDistro{id: id, root: root, sock: filepath.Join(dir, "agent.sock"), dev: dev,
		target: req.DiskTarget, done: make(chan struct{})}
	exited, err := h.startAgent(d, req.Hostname, req.Limits, req.Systemd)
	if err != nil {
		h.unmount(d)
		return err
	}
	h.mu.Lock()
	h.distros[id] = d
	h.mu.Unlock()
	h.wg.Go(func() { h.watch(d, exited) })
	spawned := time.Now()
	h.log.Info("distro started", "distro", id, "disk", dev, "pid", d.pid)
	defer func() {
		if err == nil {
			h.log.Info("distro answers", "distro", id, "disk_and_mount", mounted.Sub(began).Round(time.Millisecond),
				"spawn", spawned.Sub(mounted).Round(time.Millisecond), "hello", time.Since(spawned).Round(time.Millisecond))
		}
	}()

	tick := time.NewTicker(diskPoll)
	defer tick.Stop()
	for {
		err := helloAgent(ctx, d.sock)
		if err == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("its agent exited during start (see the console)")
		case <-ctx.Done():
			// Do not leave it half started.
			unix.Kill(d.pid, unix.SIGKILL)
			<-d.done
			return fmt.Errorf("its agent did not answer: %w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// helloAgent dials a distro's agent and asks hello.
func helloAgent(ctx context.Context, sock string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Hello(ctx)
	return err
}

// waitDisk waits, bounded by ctx, for the hot-plugged disk at target and its
// device node: SCSI scanning, sd's probe and devtmpfs all run
// asynchronously after the host's device_add.
func (h *vmHost) waitDisk(ctx context.Context, target int) (string, error) {
	tick := time.NewTicker(diskPoll)
	defer tick.Stop()
	for {
		name, err := findSCSIDisk(h.sysRoot, target)
		if err == nil {
			dev := filepath.Join(h.devRoot, name)
			var st unix.Stat_t
			if err = unix.Stat(dev, &st); err == nil {
				if st.Mode&unix.S_IFMT != unix.S_IFBLK {
					return "", fmt.Errorf("%s is not a block device", dev)
				}
				return dev, nil
			}
		} else if !errors.Is(err, errNoDisk) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no disk at SCSI target %d: %w (last error: %v)", target, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// waitAndMount waits for the disk at req's target and mounts it on root. A
// disk just unplugged from the same target can still be in sysfs while the
// new one is plugged (the host learns of the unplug before the guest has
// finished removing the device): its node answers ENXIO or ENODEV, and the
// lookup is tried again until the new device is the one found.
func (h *vmHost) waitAndMount(ctx context.Context, req DistroRequest, root string) (string, error) {
	tick := time.NewTicker(diskPoll)
	defer tick.Stop()
	for {
		dev, err := h.waitDisk(ctx, req.DiskTarget)
		if err != nil {
			return "", err
		}
		if other := h.usingDisk(dev); other != "" {
			return "", fmt.Errorf("%w: disk target %d (%s) is distro %s's", ErrBadRequest, req.DiskTarget, dev, other)
		}
		err = mountDisk(dev, root, req.ReadOnly)
		if err == nil {
			return dev, nil
		}
		if !errors.Is(err, unix.ENXIO) && !errors.Is(err, unix.ENODEV) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (waiting for the disk at target %d to settle: %v)", err, req.DiskTarget, ctx.Err())
		case <-tick.C:
		}
	}
}

// usingDisk returns the id of the distro that has dev mounted, or "".
func (h *vmHost) usingDisk(dev string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, d := range h.distros {
		if d.dev == dev {
			return id
		}
	}
	return ""
}

// mountDisk mounts a distro's ext4 disk. discard passes the guest's frees to
// the host's sparse image file.
func mountDisk(dev, target string, ro bool) error {
	var flags uintptr
	if ro {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, target, "ext4", flags, "discard"); err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, target, err)
	}
	return nil
}

// startAgent starts the distro's agent (RunInit, through this binary's flags)
// on its mounted root, as vmm/ns does on the host, and in a cgroup namespace
// rooted at its own cgroup. The reaper waits for it.
func (h *vmHost) startAgent(d *vmDistro, hostname string, limits *cgroup.Limits, systemd bool) (<-chan ExitStatus, error) {
	// -flag=value, so that no value can pass for a flag. No host tree yet:
	// -host-root= skips RunInit's /mnt/host.
	cmd := exec.Command(h.agentPath,
		"-socket="+d.sock, "-root="+d.root, "-hostname="+hostname, "-host-root=", "-vm-devices")
	if tree := h.hostTree(); tree != nil {
		defer tree.Close() // the agent has its copy
		cmd.ExtraFiles = []*os.File{tree}
		cmd.Args = append(cmd.Args, "-host-root-fd=3")
	}
	if systemd {
		cmd.Args = append(cmd.Args, "-systemd")
	}
	h.mu.Lock()
	if h.hostAddress != "" {
		cmd.Args = append(cmd.Args, "-add-host="+HostAliasName+"="+h.hostAddress)
	}
	h.mu.Unlock()
	cmd.Dir = "/"
	cmd.Env = []string{}
	// Its log goes to the VM's console, beside ours.
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	attr := &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP,
		Setsid:     true,
	}
	cmd.SysProcAttr = attr
	// Born in its cgroup (clone3's CLONE_INTO_CGROUP), so that its cgroup
	// namespace is rooted there and every process of the distro is in it
	// from the start — under its limits, written before.
	if cg, err := h.cgroup(d.id, limits); err != nil {
		if limits != nil && *limits != (cgroup.Limits{}) {
			return nil, fmt.Errorf("its cgroup and limits: %w", err)
		}
		h.log.Warn("distro cgroup; starting without", "distro", d.id, "err", err)
	} else {
		defer cg.Close()
		attr.UseCgroupFD, attr.CgroupFD = true, int(cg.Fd())
	}
	exited, err := theReaper.start(cmd)
	if err != nil {
		return nil, fmt.Errorf("run its agent: %w", err)
	}
	d.pid = cmd.Process.Pid
	return exited, nil
}

// cgroup creates the distro's cgroup, writes its limits (nil: none) and
// opens it. The memory, cpu and pids controllers are turned on from the
// VM's root down to the distros' parent first, so that the limit files
// exist.
func (h *vmHost) cgroup(id string, limits *cgroup.Limits) (*os.File, error) {
	if err := os.Mkdir(h.cgroupDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	cerr := cgroup.Enable(filepath.Dir(h.cgroupDir))
	if cerr == nil {
		cerr = cgroup.Enable(h.cgroupDir)
	}
	if cerr != nil {
		h.log.Warn("cgroup controllers", "err", cerr)
	}
	dir := filepath.Join(h.cgroupDir, id)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	var l cgroup.Limits
	if limits != nil {
		l = *limits
	}
	// Written even when none is set: a cgroup left behind by a run that
	// had limits must not keep them.
	if err := cgroup.Apply(dir, l); err != nil {
		return nil, err
	}
	return os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
}

// setLimits writes limits into the running distro id's cgroup.
func (h *vmHost) setLimits(id string, limits *cgroup.Limits) error {
	if !validDistroID(id) {
		return fmt.Errorf("set limits: %w: distro id %q", ErrBadRequest, id)
	}
	if limits == nil {
		return fmt.Errorf("set limits: %w: no limits", ErrBadRequest)
	}
	if err := limits.Validate(); err != nil {
		return fmt.Errorf("set limits: %w: %v", ErrBadRequest, err)
	}
	if h.running(id) == nil {
		return fmt.Errorf("set limits %s: %w", id, ErrDistroNotRunning)
	}
	return cgroup.Apply(filepath.Join(h.cgroupDir, id), *limits)
}

// distroCgroup reads the running distro id's cgroup.
func (h *vmHost) distroCgroup(id string) (cgroup.Stats, error) {
	if !validDistroID(id) {
		return cgroup.Stats{}, fmt.Errorf("distro cgroup: %w: distro id %q", ErrBadRequest, id)
	}
	if h.running(id) == nil {
		return cgroup.Stats{}, fmt.Errorf("distro cgroup %s: %w", id, ErrDistroNotRunning)
	}
	return cgroup.Read(filepath.Join(h.cgroupDir, id))
}

// watch waits for the distro's agent to exit, then unmounts its disk and
// forgets it.
func (h *vmHost) watch(d *vmDistro, exited <-chan ExitStatus) {
	st := <-exited
	d.exiting.Store(true)
	h.log.Info("distro agent exited", "distro", d.id, "code", st.Code, "signal", st.Signal)
	h.unmount(d)
	os.Remove(d.sock)
	// With systemd, a tree of cgroups; fails harmlessly while in use.
	if err := RemoveCgroup(filepath.Join(h.cgroupDir, d.id)); err != nil {
		h.log.Warn("distro cgroup left behind", "distro", d.id, "err", err)
	}
	h.mu.Lock()
	if h.distros[d.id] == d {
		delete(h.distros, d.id)
	}
	h.mu.Unlock()
	close(d.done)
}

// unmount syncs and unmounts the distro's disk: lazily when it is busy (an
// export still reading it), so the mount point is free at once and the disk
// once its last user is done.
func (h *vmHost) unmount(d *vmDistro) {
	syncFS(d.root)
	err := unix.Unmount(d.root, 0)
	if errors.Is(err, unix.EBUSY) {
		h.log.Warn("disk busy; unmounting lazily", "distro", d.id, "disk", d.dev)
		err = unix.Unmount(d.root, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) {
		h.log.Error("unmount", "distro", d.id, "disk", d.dev, "err", err)
		return
	}
	os.Remove(d.root)
	os.Remove(filepath.Dir(d.root))
}

// syncFS flushes the file system mounted at dir.
func syncFS(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	unix.Syncfs(fd)
	unix.Close(fd)
}

// stop shuts the distro down; see StopDistro.
func (h *vmHost) stop(ctx context.Context, id string) (err error) {
	if !validDistroID(id) {
		return fmt.Errorf("stop distro: %w: distro id %q", ErrBadRequest, id)
	}
	unlock := h.lock(id)
	defer unlock()
	h.mu.Lock()
	d := h.distros[id]
	h.mu.Unlock()
	if d == nil {
		return nil
	}
	if err := h.stopDistro(ctx, d); err != nil {
		return fmt.Errorf("stop distro %s: %w", id, err)
	}
	return nil
}

// stopDistro asks d's agent to shut down (SIGKILL when it does not answer or
// does not exit in time), waits until it is gone and its disk unmounted, and
// then until the disk is free.
func (h *vmHost) stopDistro(ctx context.Context, d *vmDistro) error {
	if !d.exiting.Load() {
		sctx, cancel := context.WithTimeout(ctx, distroStopTimeout)
		err := shutdownAgent(sctx, d.sock)
		if err == nil {
			select {
			case <-d.done:
			case <-sctx.Done():
				err = sctx.Err()
			}
		}
		cancel()
		if err != nil {
			h.log.Warn("distro agent did not shut down; killing it", "distro", d.id, "err", err)
			// Its PID namespace dies with it.
			unix.Kill(d.pid, unix.SIGKILL)
		}
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return waitDiskFree(ctx, d.dev)
}

func shutdownAgent(ctx context.Context, sock string) error {
	c, err := Dial(ctx, sock)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Shutdown(ctx)
}

// waitDiskFree waits until nothing holds dev: an exclusive open of a block
// device fails with EBUSY while it is mounted, also lazily unmounted with a
// user left.
func waitDiskFree(ctx context.Context, dev string) error {
	tick := time.NewTicker(diskPoll)
	defer tick.Stop()
	for {
		fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err == nil {
			// Flush the device's own cache too: the host unplugs it next.
			unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0)
			unix.Close(fd)
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
				return nil // unplugged already
			}
			return fmt.Errorf("open %s: %w", dev, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("disk %s still busy: %w", dev, ctx.Err())
		case <-tick.C:
		}
	}
}

// stopAll stops every distro, for power-off.
func (h *vmHost) stopAll(ctx context.Context) {
	h.mu.Lock()
	ids := make([]string, 0, len(h.distros))
	for id := range h.distros {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if err := h.stop(ctx, id); err != nil {
				h.log.Error("stop distro", "distro", id, "err", err)
			}
		})
	}
	wg.Wait()
	h.wg.Wait()
}

// handlePowerOff stops every distro, syncs, replies, and then has RunVM power
// the VM off once the host has closed its stream: a power-off right after the
// reply could lose it on its way out of the VM.
func (h *vmHost) handlePowerOff(ctx context.Context, st *yamux.Stream) {
	h.log.Info("power-off requested")
	h.stopAll(ctx)
	unix.Sync()
	if err := writeHeader(st, reply{OK: true}); err == nil {
		st.SetReadDeadline(time.Now().Add(powerOffAckTimeout))
		io.Copy(io.Discard, st)
	}
	h.powerOffOnce.Do(func() { close(h.powerOff) })
}

// open splices the stream to a new connection to the distro's agent; see
// OpenDistro.
func (h *vmHost) open(ctx context.Context, st *yamux.Stream, br *bufio.Reader, id string) {
	fail := func(err error) {
		writeHeader(st, reply{Error: &wireError{Code: errorCode(err), Message: err.Error()}})
	}
	if !validDistroID(id) {
		fail(fmt.Errorf("open distro: %w: distro id %q", ErrBadRequest, id))
		return
	}
	d := h.running(id)
	if d == nil {
		fail(fmt.Errorf("open distro %s: %w", id, ErrDistroNotRunning))
		return
	}
	var dialer net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := dialer.DialContext(dctx, "unix", d.sock)
	cancel()
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			err = fmt.Errorf("%w: %v", ErrDistroNotRunning, err)
		}
		fail(fmt.Errorf("open distro %s: %w", id, err))
		return
	}
	if err := writeHeader(st, reply{OK: true}); err != nil {
		conn.Close()
		return
	}
	splice(ctx, st, br, conn.(*net.UnixConn))
}

// halfCloser is a connection that can end its writing side alone (TCP,
// unix stream sockets).
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// splice copies bytes both ways between the host's stream (read through br,
// which may hold bytes already) and a distro agent's connection until both
// directions have ended. An end of file is passed on as a half-close; an
// error, or ctx ending, closes both.
func splice(ctx context.Context, st *yamux.Stream, br *bufio.Reader, conn halfCloser) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			conn.Close()
			st.Close()
			// Wake a read of the stream that is still waiting.
			st.SetReadDeadline(time.Unix(1, 0))
		})
	}
	stop := context.AfterFunc(ctx, abort)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := io.Copy(conn, br); err != nil {
			abort()
			return
		}
		conn.CloseWrite()
	})
	wg.Go(func() {
		if _, err := io.Copy(st, conn); err != nil {
			abort()
			return
		}
		st.Close() // a half-close: the host may still write
	})
	wg.Wait()
	conn.Close()
}

// export streams an archive of the distro's tree; see ExportTree.
func (h *vmHost) export(ctx context.Context, st *yamux.Stream, br *bufio.Reader, req DistroRequest, format string) {
	fail := func(err error) {
		h.log.Error("export", "distro", req.ID, "err", err)
		writeHeader(st, reply{Error: &wireError{Code: errorCode(err), Message: err.Error()}})
	}
	if err := checkDistroRequest(req, false); err != nil {
		fail(fmt.Errorf("export distro: %w", err))
		return
	}
	f, err := archive.ParseFormat(format)
	if err != nil {
		fail(fmt.Errorf("export distro %s: %w: %v", req.ID, ErrBadRequest, err))
		return
	}
	unlock := h.lock(req.ID)
	defer unlock()
	dir := ""
	if d := h.running(req.ID); d != nil {
		dir = d.root
	} else {
		// Stopped: its disk is plugged in but not mounted. Read-only, so an
		// export never changes it.
		wctx, cancel := context.WithTimeout(ctx, distroStartTimeout)
		dev, err := h.waitDisk(wctx, req.DiskTarget)
		cancel()
		if err == nil {
			if other := h.usingDisk(dev); other != "" {
				err = fmt.Errorf("%w: disk target %d (%s) is distro %s's", ErrBadRequest, req.DiskTarget, dev, other)
			}
		}
		if err != nil {
			fail(fmt.Errorf("export distro %s: %w", req.ID, err))
			return
		}
		if err := os.MkdirAll(h.exportDir, 0o700); err != nil {
			fail(fmt.Errorf("export distro %s: %w", req.ID, err))
			return
		}
		tmp, err := os.MkdirTemp(h.exportDir, req.ID+"-")
		if err != nil {
			fail(fmt.Errorf("export distro %s: %w", req.ID, err))
			return
		}
		defer os.Remove(tmp)
		if err := unix.Mount(dev, tmp, "ext4", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			fail(fmt.Errorf("export distro %s: mount %s: %w", req.ID, dev, err))
			return
		}
		defer func() {
			if err := unix.Unmount(tmp, 0); err != nil {
				h.log.Warn("export: unmount; unmounting lazily", "distro", req.ID, "err", err)
				unix.Unmount(tmp, unix.MNT_DETACH)
			}
		}()
		dir = tmp
	}
	if err := writeHeader(st, reply{OK: true}); err != nil {
		return
	}
	// The host closing its half (Close on the reader) stops the export.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		io.Copy(io.Discard, br)
		cancel()
		st.SetWriteDeadline(time.Unix(1, 0))
	})
	defer st.SetReadDeadline(time.Unix(1, 0)) // stops that reader, before wg.Wait
	w := &frameWriter{w: st}
	err = archive.Write(ctx, w, dir, f)
	var end dataEnd
	if err != nil {
		h.log.Error("export", "distro", req.ID, "err", err)
		end.Error = &wireError{Code: errorCode(err), Message: fmt.Sprintf("export distro %s: %v", req.ID, err)}
	} else {
		h.log.Info("exported", "distro", req.ID, "format", string(f), "bytes", w.n)
	}
	b, _ := json.Marshal(end)
	writeFrame(st, frameDataEnd, b)
}

// frameWriter sends what is written as data frames.
type frameWriter struct {
	w io.Writer
	n int64
}

func (fw *frameWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		n := min(len(p), dataChunk)
		if err := writeFrame(fw.w, frameData, p[:n]); err != nil {
			return total, err
		}
		total += n
		fw.n += int64(n)
		p = p[n:]
	}
	return total, nil
}

// hostDir is where the VM mounts the host's files (the virtio-fs or 9p share
// the host offers), for every distro's /mnt/host. It is a small tmpfs made a
// shared mount, and the share is mounted on top of it. Each distro's
// /mnt/host is a slave copy of both (hostTree), so that a share mounted there
// later (9p, when virtiofsd dies) reaches the distros that are running too.
const hostDir = "/run/subsys/host"

// Mount tags of the host's files: vmm/qemu's HostFSTag (virtio-fs) and
// HostShareTag (9p).
const (
	hostFSTag    = "subsys.hostfs"
	hostShareTag = "subsys.host"
)

// Transports of the host's files, as HostFiles reports them.
const (
	transportVirtiofs = "virtio-fs"
	transport9p       = "9p"
)

// hostFiles mounts the host's files at hostDir the first time a distro
// starts, and returns hostDir, or "" when the VM has no such share (a kernel
// without 9p, a host that offers none): the distro then starts without
// /mnt/host. virtio-fs is taken where the host offers it (much faster over
// many small files), 9p otherwise.
func (h *vmHost) hostFiles() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hostFS != "" {
		return hostDir
	}
	if h.hostBase <= 0 {
		err := os.MkdirAll(hostDir, 0o755)
		if err == nil {
			err = unix.Mount("subsys-host", hostDir, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755,size=16k")
		}
		if err == nil {
			err = unix.Mount("", hostDir, "", unix.MS_SHARED, "")
		}
		fd := -1
		if err == nil {
			fd, err = unix.Open(hostDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			h.log.Warn("no /mnt/host for distros", "err", err)
			return ""
		}
		h.hostBase = fd
	}
	if !h.noVirtiofs {
		err := unix.Mount(hostFSTag, hostDir, "virtiofs", unix.MS_NODEV, "")
		if err == nil {
			// Nothing here touches the mount after this: with its daemon
			// dead, that would hang with h.mu held.
			h.virtiofsMounted.Store(true)
			h.hostFS = transportVirtiofs
			h.log.Info("host files mounted", "at", hostDir, "over", h.hostFS)
			return hostDir
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
			h.log.Warn("host files: virtio-fs did not mount; trying 9p", "err", err)
		}
	}
	// version 9p2000.L carries owners, modes and xattrs as Linux has them;
	// a large msize moves more per round trip.
	err := unix.Mount(hostShareTag, hostDir, "9p", unix.MS_NODEV,
		"trans=virtio,version=9p2000.L,msize=512000,access=client,posixacl")
	if err != nil {
		h.log.Warn("no /mnt/host for distros: the host's files are not shared", "err", err)
		return ""
	}
	h.hostFS = transport9p
	h.log.Info("host files mounted", "at", hostDir, "over", h.hostFS)
	return hostDir
}

// hostTree returns a detached copy of hostDir's tmpfs with the share mounted
// on it (open_tree of the descriptor taken before the share covered it: a
// bind by path would copy the share alone), made a slave, for a distro's
// agent to attach at /mnt/host; nil when the host's files are not shared.
// Mounts made on hostDir later reach that /mnt/host; none made in the
// distro reach the VM.
func (h *vmHost) hostTree() *os.File {
	if h.hostFiles() == "" {
		return nil
	}
	h.mu.Lock()
	base := h.hostBase
	h.mu.Unlock()
	tree, err := unix.OpenTree(base, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_EMPTY_PATH)
	if err == nil {
		err = unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Propagation: unix.MS_SLAVE})
		if err != nil {
			unix.Close(tree)
		}
	}
	if err != nil {
		h.log.Warn("no /mnt/host for a distro", "err", err)
		return nil
	}
	return os.NewFile(uintptr(tree), "host-files")
}

// handleMemory does a memory action ("", "reclaim", "set-mode") and reports
// the VM's memory.
func (h *vmHost) handleMemory(action, mode string) (MemoryInfo, int64, error) {
	var dropped int64
	switch action {
	case "":
	case "set-mode":
		if err := h.mem.setMode(mode); err != nil {
			return MemoryInfo{}, 0, err
		}
	case "reclaim":
		d, err := h.mem.reclaim(-1)
		if err != nil {
			return MemoryInfo{}, 0, err
		}
		dropped = d
		h.log.Info("memory reclaim: the host asked", "dropped", dropped)
	default:
		return MemoryInfo{}, 0, fmt.Errorf("%w: memory action %q", ErrBadRequest, action)
	}
	m, err := h.mem.info()
	return m, dropped, err
}

// handleHostFiles does a host-files action and reports the transport.
func (h *vmHost) handleHostFiles(action string) (string, error) {
	switch action {
	case HostFilesReport:
	case HostFilesTrim:
		// 2: dentries and inodes, which is what holds virtiofsd's
		// descriptors; the page cache stays.
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
			return "", fmt.Errorf("host files: trim: %w", err)
		}
	case HostFilesAbort:
		if err := h.abortVirtiofs(); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("%w: host-files action %q", ErrBadRequest, action)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hostFS, nil
}

// abortVirtiofs puts 9p in place of the virtio-fs mount whose daemon is
// gone: 9p is mounted on top of it at hostDir, which reaches every distro's
// /mnt/host (their slave copies), running ones too. The dead mount stays
// underneath: unmounting it would wait for ever on its daemon's answer to
// FUSE_DESTROY, and nothing reaches it once it is covered. A process that
// was waiting on virtio-fs when its daemon died stays blocked until it is
// killed: virtio-fs has no abort (no fusectl entry, and a forced unmount is
// refused).
func (h *vmHost) abortVirtiofs() error {
	if !h.virtiofsMounted.Swap(false) {
		return nil // never mounted, or replaced already
	}
	h.log.Warn("host files: virtio-fs's daemon is gone; /mnt/host goes over 9p")
	h.mu.Lock()
	h.noVirtiofs = true
	h.hostFS = ""
	h.mu.Unlock()
	if h.hostFiles() == "" {
		return errors.New("host files: 9p did not mount in place of virtio-fs")
	}
	return nil
}

// dial connects to address (host:port) inside the VM for the host, and
// splices the stream to the connection: how a port of a version 2 distro
// reaches the host. Only TCP, to an IP address.
func (h *vmHost) dial(ctx context.Context, st *yamux.Stream, br *bufio.Reader, network, address string) {
	fail := func(err error) {
		writeHeader(st, reply{Error: &wireError{Code: errorCode(err), Message: err.Error()}})
	}
	ap, err := netip.ParseAddrPort(address)
	if (network != "tcp" && network != "udp") || err != nil || ap.Port() == 0 {
		fail(fmt.Errorf("%w: dial %s %q: want tcp or udp and an IP address with a port", ErrBadRequest, network, address))
		return
	}
	var dialer net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := dialer.DialContext(dctx, network, ap.String())
	cancel()
	if err != nil {
		fail(fmt.Errorf("dial %s %s: %w", network, ap, err))
		return
	}
	if err := writeHeader(st, reply{OK: true}); err != nil {
		conn.Close()
		return
	}
	if network == "udp" {
		spliceDatagrams(ctx, st, br, conn.(*net.UDPConn))
		return
	}
	splice(ctx, st, br, conn.(*net.TCPConn))
}

// spliceDatagrams carries a UDP flow over the host's stream, datagrams
// framed as DatagramConn does, until the stream ends (the host's flow went
// idle or closed) or ctx does. A refused datagram (the port closed for a
// moment) is no reason to end the flow.
func spliceDatagrams(ctx context.Context, st *yamux.Stream, br *bufio.Reader, conn *net.UDPConn) {
	stream := &DatagramConn{Conn: &bufferedConn{Stream: st, br: br}}
	stop := context.AfterFunc(ctx, func() { conn.Close(); st.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, maxDatagram)
		for {
			n, err := conn.Read(buf)
			if errors.Is(err, unix.ECONNREFUSED) {
				continue
			}
			if err != nil {
				st.Close()
				return
			}
			if _, err := stream.Write(buf[:n]); err != nil {
				conn.Close()
				return
			}
		}
	})
	buf := make([]byte, maxDatagram)
	for {
		n, err := stream.Read(buf)
		if err != nil {
			break
		}
		if _, err := conn.Write(buf[:n]); err != nil && !errors.Is(err, unix.ECONNREFUSED) {
			break
		}
	}
	conn.Close()
	st.Close()
	wg.Wait()
}

// distroListeners lists the VM's listening sockets that a distro's process
// holds, by the distro's cgroup (/distros/<id>/…) as /proc/PID/cgroup shows
// it: the VM's agent and sockets of no distro are left out.
func distroListeners(ctx context.Context) ([]Listener, error) {
	socks, err := sockdiag.ListeningSockets(ctx)
	if err != nil {
		return nil, fmt.Errorf("listeners: %w", err)
	}
	want := make(map[uint64]bool, len(socks))
	for _, s := range socks {
		if s.Inode != 0 {
			want[s.Inode] = true
		}
	}
	owners, err := sockdiag.Owners(ctx, want, func(dir string) (string, bool) {
		raw, err := os.ReadFile(dir + "/cgroup")
		if err != nil {
			return "", false
		}
		return distroOfCgroup(string(raw))
	})
	if err != nil {
		return nil, fmt.Errorf("listeners: %w", err)
	}
	var out []Listener
	for _, s := range socks {
		o, ok := owners[s.Inode]
		if !ok {
			continue
		}
		out = append(out, Listener{Distro: o.Tag, Proto: s.Proto, Address: s.Local.Addr().String(), Port: s.Local.Port(), PID: o.PID, Process: o.Comm})
	}
	return out, nil
}

// listenerPoll is how often watch-listeners looks at the VM's sockets: a
// port shows on the host within it. Looking costs the guest some CPU each
// time (under TCG, a few milliseconds), which is why the host does not ask
// across the port itself.
const listenerPoll = 750 * time.Millisecond

// watchListeners sends the distros' listening sockets as one header line now
// and again each time they change, until the stream or ctx ends.
func (h *vmHost) watchListeners(ctx context.Context, st *yamux.Stream) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The host closes the stream to stop watching: a read returns then.
	go func() {
		io.Copy(io.Discard, st)
		cancel()
	}()
	tick := time.NewTicker(listenerPoll)
	defer tick.Stop()
	var last []Listener
	first := true
	for {
		ls, err := distroListeners(ctx)
		if err != nil {
			writeHeader(st, reply{Error: &wireError{Code: errorCode(err), Message: err.Error()}})
			return
		}
		if first || !slices.Equal(ls, last) {
			if err := writeHeader(st, reply{OK: true, Listeners: ls}); err != nil {
				return
			}
			last, first = ls, false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
