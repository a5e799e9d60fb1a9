package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/qemu/initramfs"
)

// Modules the utility VM's agent loads at boot: the PCI transport of every
// virtio device, the agent's serial port, the disks (virtio-scsi, sd, ext4),
// the balloon. Optional ones are taken where the kernel has them: host
// files (9p, virtio-fs), vsock, entropy, and what distros may use of the
// VM's kernel (overlay, fuse, loop devices, tun).
var (
	vmModules = []string{"virtio_pci", "virtio_console", "virtio_scsi", "sd_mod", "ext4", "virtio_balloon", "virtio_net",
		// sock_diag for TCP and UDP: the agent lists the distros' listening
		// sockets with it, to forward their ports.
		"inet_diag", "tcp_diag", "udp_diag"}
	vmOptionalModules = []string{"virtio_mem", "virtio_rng", "9p", "9pnet_virtio", "virtiofs", "vmw_vsock_virtio_transport", "overlay", "fuse", "loop", "tun"}
)

// kernelCmdline is the VM's kernel command line: the serial console for boot
// messages, a panic ends QEMU (with -no-reboot) instead of hanging, and no
// SWIOTLB bounce buffer: the kernel sets aside (and zeroes) 64 MiB for one
// when the VM may have memory above 4 GiB, and nothing in the VM uses it —
// virtio devices without VIRTIO_F_ACCESS_PLATFORM reach guest memory
// directly — so it would be 64 MiB of the host's memory for nothing.
const kernelCmdline = "console=ttyS0 panic=-1 quiet swiotlb=noforce"

// Timeouts of the VM's life.
const (
	// kvmTrialTimeout is how long a KVM boot has to reach the agent before
	// the backend falls back to TCG: a working KVM boots in about a second,
	// and hosts whose /dev/kvm cannot run guests leave it hanging.
	kvmTrialTimeout = 10 * time.Second
	// bootTimeout bounds a TCG boot up to the agent's hello.
	bootTimeout = 90 * time.Second
	// powerOffTimeout is how long the agent has to stop the distros and
	// power the VM off before QMP quit and kill.
	powerOffTimeout = 20 * time.Second
)

// BackendConfig configures the version 2 backend.
type BackendConfig struct {
	// Dir is the data directory's vm/: the default kernel (kernel/), the
	// built initramfs images and the accelerator decision. Required.
	Dir string
	// RunDir holds the VM's sockets and pid file (the data directory's
	// run/vm). Required; short enough for socket paths.
	RunDir string
	// Agent returns the static agent binary that becomes the VM's /init.
	Agent func() ([]byte, error)
	// Settings returns the current settings (memory, processors, idle
	// timeout, kernel). Required.
	Settings func(ctx context.Context) (vmm.Settings, error)
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Passt is the passt program for the VM's network; "" means QEMU's
	// slirp (see LookupPasst).
	Passt string
	// Virtiofsd is the virtiofsd program for the host's files; "" means 9p
	// only (see LookupVirtiofsd).
	Virtiofsd string
	// VirtiofsdMaxFiles is virtiofsd's limit on open files; 0 for the most
	// the host allows. Tests lower it to walk trees larger than the limit.
	VirtiofsdMaxFiles int
	// NoMemoryHotplug gives the VM all its memory at boot rather than
	// through virtio-mem as it needs it (see memoryLayout).
	NoMemoryHotplug bool
	// ExtraQEMUArgs are appended to QEMU's arguments (benchmarks add
	// devices to compare against).
	ExtraQEMUArgs []string
}

// LookupPasst returns the path of passt, or "" when it is not installed.
func LookupPasst() string {
	p, _ := exec.LookPath("passt")
	return p
}

// LookupVirtiofsd returns the path of virtiofsd where Debian (qemu-system-
// common), Fedora or $PATH has it, or "" when there is none.
func LookupVirtiofsd() string {
	for _, p := range []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	p, _ := exec.LookPath("virtiofsd")
	return p
}

// Backend runs version 2 distros in one utility VM: it boots the VM with the
// first distro, hot-plugs each distro's disk, asks the VM's agent to start the
// distro, and reaches that distro's own agent through the VM agent's routing
// op. The VM outlives the server (Close leaves it running) and is adopted by
// the next one. It implements vmm.Backend, vmm.VMBackend and vmm.TreeExporter.
type Backend struct {
	cfg BackendConfig
	log *slog.Logger

	ctx    context.Context // owner of the watcher and idle goroutines
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// vmMu serialises the VM's start, adoption and stop.
	vmMu sync.Mutex

	mu          sync.Mutex
	vm          *VM
	agent       *agent.Client
	state       vmm.VMState
	accel       string
	accelNote   string
	startedAt   time.Time
	kernel      string
	release     string
	memMiB      int
	cpus        int
	lastErr     string
	lastConsole []byte
	addresses   []string // the VM's, as configure-network or network-info said
	// hostFilesNote says why the host's files fell back to 9p in the
	// running VM (virtiofsd failed); cleared when a VM boots.
	hostFilesNote string
	// memory is the running VM's last memory sample (watchMemory),
	// memoryMode its reclaim mode and memoryHistory the samples; all
	// cleared when a VM boots.
	memory        *vmm.VMMemory
	memoryMode    string
	memoryHistory []vmm.MemorySample
	// listeners are the distros' listening sockets as the agent's
	// watch-listeners last said, by distro id; watching says whether that
	// watch is live (else Listeners asks the agent itself).
	listeners  map[string][]agent.Listener
	watching   bool
	targets    map[string]int // distro id (or an export's key) → SCSI target
	nextTarget int            // where takeTarget looks first
	idle       *time.Timer
	adoptTried bool
}

// NewBackend returns the version 2 backend; it starts nothing until a distro
// starts (or Connect finds a VM an earlier server left running).
func NewBackend(cfg BackendConfig) (*Backend, error) {
	if cfg.Dir == "" || cfg.RunDir == "" || cfg.Settings == nil || cfg.Agent == nil {
		return nil, errors.New("qemu backend: Dir, RunDir, Agent and Settings are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// RunDir is made by the first boot (Start): a server that never runs a
	// version 2 distro leaves no trace in run/.
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("qemu backend: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{cfg: cfg, log: cfg.Logger.With("component", "vm"), ctx: ctx, cancel: cancel,
		state: vmm.VMStopped, targets: map[string]int{}}
	b.accel, b.accelNote = b.loadAccel()
	return b, nil
}

// Close stops the backend's goroutines and drops its connections. The VM and
// its distros keep running: the next server adopts them.
func (b *Backend) Close() error {
	b.cancel()
	b.mu.Lock()
	if b.idle != nil {
		b.idle.Stop()
	}
	c := b.agent
	b.mu.Unlock()
	if c != nil {
		c.Close()
	}
	b.wg.Wait()
	return nil
}

// agentOf returns the agent of v while v is the running VM, nil otherwise.
func (b *Backend) agentOf(v *VM) *agent.Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.vm != v {
		return nil
	}
	return b.agent
}

// vmClient returns the VM and its agent when the VM runs.
func (b *Backend) vmClient() (*VM, *agent.Client) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.vm, b.agent
}

// Start implements vmm.Backend: it boots the VM when it is not running,
// attaches the distro's disk, starts the distro in the VM and returns a client
// of the distro's own agent.
func (b *Backend) Start(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	if c, err := b.Connect(ctx, s); err == nil {
		return c, nil
	} else if !errors.Is(err, vmm.ErrNotRunning) {
		return nil, err
	}
	v, ac, err := b.ensureVM(ctx)
	if err != nil {
		return nil, err
	}
	b.holdIdle()
	target, err := b.takeTarget(s.ID)
	if err != nil {
		b.releaseIdle()
		return nil, err
	}
	fail := func(err error) (*agent.Client, error) {
		b.dropTarget(s.ID, target)
		b.releaseIdle()
		return nil, err
	}
	began := time.Now()
	if err := v.AttachDisk(ctx, Disk{Target: target, Path: s.Disk}); err != nil {
		return fail(fmt.Errorf("attach the disk of %s: %w", s.Name, err))
	}
	attached := time.Now()
	var limits *vmm.Limits
	if s.Limits != (vmm.Limits{}) {
		limits = &s.Limits
	}
	if err := ac.StartDistro(ctx, agent.DistroRequest{ID: s.ID, Hostname: s.Name, DiskTarget: target, Limits: limits, Systemd: s.Systemd}); err != nil {
		v.DetachDisk(context.WithoutCancel(ctx), target)
		return fail(fmt.Errorf("start %s in the VM: %w", s.Name, err))
	}
	started := time.Now()
	c, err := b.openDistro(ctx, ac, s.ID)
	if err != nil {
		ac.StopDistro(context.WithoutCancel(ctx), s.ID)
		v.DetachDisk(context.WithoutCancel(ctx), target)
		return fail(err)
	}
	b.log.Debug("distro started in the VM", "distro", s.Name, "target", target,
		"attach", attached.Sub(began).Round(time.Millisecond), "start", started.Sub(attached).Round(time.Millisecond),
		"open", time.Since(started).Round(time.Millisecond))
	return c, nil
}

func (b *Backend) openDistro(ctx context.Context, ac *agent.Client, id string) (*agent.Client, error) {
	conn, err := ac.OpenDistro(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("reach the distro's agent: %w", err)
	}
	c, err := agent.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reach the distro's agent: %w", err)
	}
	return c, nil
}

// Connect implements vmm.Backend: it returns a client of a distro that runs in
// the VM, adopting a VM an earlier server left running; ErrNotRunning when the
// VM or the distro is not running.
func (b *Backend) Connect(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	v, ac := b.vmClient()
	if v == nil {
		var err error
		if v, ac, err = b.adoptVM(ctx); err != nil {
			return nil, err
		}
	}
	ids, err := ac.Distros(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the VM's distros: %w", err)
	}
	if !slices.Contains(ids, s.ID) {
		return nil, vmm.ErrNotRunning
	}
	b.mu.Lock()
	_, known := b.targets[s.ID]
	b.mu.Unlock()
	if !known {
		// Adopted: learn the distro's target from QEMU's block nodes.
		disks, err := v.AttachedDisks(ctx)
		if err != nil {
			return nil, err
		}
		for t, file := range disks {
			if file == s.Disk {
				b.mu.Lock()
				b.targets[s.ID] = t
				b.mu.Unlock()
				b.holdIdle()
			}
		}
	}
	return b.openDistro(ctx, ac, s.ID)
}

// Stop implements vmm.Backend: the VM's agent stops the distro and unmounts
// its disk, then the disk is unplugged. The VM keeps running until its idle
// timeout.
func (b *Backend) Stop(ctx context.Context, s vmm.Spec) error {
	v, ac := b.vmClient()
	if v == nil {
		return nil
	}
	if err := ac.StopDistro(ctx, s.ID); err != nil {
		return fmt.Errorf("stop %s in the VM: %w", s.Name, err)
	}
	b.mu.Lock()
	target, ok := b.targets[s.ID]
	b.mu.Unlock()
	if !ok {
		return nil
	}
	if err := v.DetachDisk(ctx, target); err != nil {
		return fmt.Errorf("detach the disk of %s: %w", s.Name, err)
	}
	b.dropTarget(s.ID, target)
	b.releaseIdle()
	return nil
}

// ExportTree implements vmm.TreeExporter: the VM's agent writes the archive
// from the distro's mounted disk — the live one when the distro runs, else
// the disk attached read-only for the export. The host never mounts it.
func (b *Backend) ExportTree(ctx context.Context, s vmm.Spec, w io.Writer, f archive.Format) error {
	v, ac, err := b.ensureVM(ctx)
	if err != nil {
		return err
	}
	b.holdIdle()
	defer b.releaseIdle()
	b.mu.Lock()
	target, running := b.targets[s.ID]
	b.mu.Unlock()
	req := agent.DistroRequest{ID: s.ID, DiskTarget: target}
	if !running {
		key := "export:" + s.ID
		if target, err = b.takeTarget(key); err != nil {
			return err
		}
		defer b.dropTarget(key, target)
		if err := v.AttachDisk(ctx, Disk{Target: target, Path: s.Disk, ReadOnly: true}); err != nil {
			return fmt.Errorf("attach the disk of %s: %w", s.Name, err)
		}
		defer v.DetachDisk(context.WithoutCancel(ctx), target)
		req = agent.DistroRequest{ID: s.ID, DiskTarget: target, ReadOnly: true}
	}
	rc, err := ac.ExportTree(ctx, req, string(f))
	if err != nil {
		return fmt.Errorf("export %s in the VM: %w", s.Name, err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("export %s: %w", s.Name, err)
	}
	return nil
}

// takeTarget gives key a free SCSI target.
func (b *Backend) takeTarget(key string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	used := map[int]bool{}
	for _, t := range b.targets {
		used[t] = true
	}
	// Round robin, not the lowest free: a target just given back may still
	// be on its way out of the guest (see the agent's waitAndMount).
	for i := 0; i <= MaxDiskTarget; i++ {
		t := (b.nextTarget + i) % (MaxDiskTarget + 1)
		if !used[t] {
			b.targets[key] = t
			b.nextTarget = t + 1
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: the VM has no free disk slot (%d in use)", vmm.ErrBusy, MaxDiskTarget+1)
}

func (b *Backend) dropTarget(key string, target int) {
	b.mu.Lock()
	if t, ok := b.targets[key]; ok && t == target {
		delete(b.targets, key)
	}
	b.mu.Unlock()
}

// holdIdle stops the idle timer: something runs in the VM.
func (b *Backend) holdIdle() {
	b.mu.Lock()
	if b.idle != nil {
		b.idle.Stop()
		b.idle = nil
	}
	b.mu.Unlock()
}

// releaseIdle arms the idle timer when nothing uses the VM any more.
func (b *Backend) releaseIdle() {
	st, err := b.cfg.Settings(b.ctx)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.targets) > 0 || b.vm == nil || st.VMIdleTimeoutS < 0 {
		return
	}
	if b.idle != nil {
		b.idle.Stop()
	}
	v := b.vm
	b.idle = time.AfterFunc(time.Duration(st.VMIdleTimeoutS)*time.Second, func() {
		// Checked and counted under mu: Close cancels ctx before it takes
		// mu, so either it sees this stop in the WaitGroup or this sees ctx
		// cancelled.
		b.mu.Lock()
		if len(b.targets) > 0 || b.vm != v || b.ctx.Err() != nil {
			b.mu.Unlock()
			return
		}
		b.wg.Add(1)
		b.mu.Unlock()
		defer b.wg.Done()
		b.log.Info("no version 2 distro has run for the idle timeout: stopping the VM", "timeout_s", st.VMIdleTimeoutS)
		ctx, cancel := context.WithTimeout(b.ctx, powerOffTimeout+quitTimeout+5*time.Second)
		defer cancel()
		if err := b.stopVM(ctx, true); err != nil {
			b.log.Warn("idle stop", "err", err)
		}
	})
}

// ShutdownVM implements vmm.VMBackend: the agent stops every distro, syncs
// and powers off; QMP quit and then a kill follow if it does not.
func (b *Backend) ShutdownVM(ctx context.Context) error {
	return b.stopVM(ctx, false)
}

func (b *Backend) stopVM(ctx context.Context, onlyIdle bool) error {
	b.vmMu.Lock()
	defer b.vmMu.Unlock()
	b.mu.Lock()
	v, ac := b.vm, b.agent
	if onlyIdle && len(b.targets) > 0 {
		b.mu.Unlock()
		return nil
	}
	if v != nil {
		b.state = vmm.VMStopping
	}
	b.mu.Unlock()
	if v == nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, powerOffTimeout)
	err := ac.PowerOff(pctx)
	if err == nil {
		select {
		case <-v.Done():
		case <-pctx.Done():
		}
	}
	cancel()
	if err != nil {
		b.log.Warn("the VM's agent did not power off; quitting QEMU", "err", err)
	}
	v.PowerdownTimeout = time.Second // the agent ignores ACPI: go on to quit
	if err := v.Quit(ctx); err != nil {
		return fmt.Errorf("stop the VM: %w", err)
	}
	b.vmGone(v, "")
	return nil
}

// vmGone records that v has ended.
func (b *Backend) vmGone(v *VM, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.vm != v {
		return
	}
	b.lastConsole = v.Console()
	if b.agent != nil {
		b.agent.Close()
	}
	b.vm, b.agent, b.addresses = nil, nil, nil
	b.listeners, b.watching = nil, false
	b.targets = map[string]int{}
	if b.idle != nil {
		b.idle.Stop()
		b.idle = nil
	}
	b.state = vmm.VMStopped
	if why != "" {
		b.state, b.lastErr = vmm.VMFailed, why
	}
}

// watch marks the VM stopped when QEMU exits, however it does, and keeps
// the distros' listening sockets up to date while it runs.
func (b *Backend) watch(v *VM) {
	b.wg.Add(3)
	go func() {
		defer b.wg.Done()
		b.watchListeners(v)
	}()
	go func() {
		defer b.wg.Done()
		b.watchMemory(v)
	}()
	go func() {
		defer b.wg.Done()
		b.watchHostFiles(v)
	}()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		select {
		case <-v.Done():
		case <-b.ctx.Done():
			return
		}
		b.mu.Lock()
		unexpected := b.vm == v && b.state == vmm.VMRunning
		b.mu.Unlock()
		why := ""
		if unexpected {
			why = "the VM stopped unexpectedly; its console (GET /api/v1/vm/console) may say why"
			b.log.Warn("the utility VM stopped unexpectedly")
		}
		b.vmGone(v, why)
	}()
}

// adoptVM takes over a VM an earlier server left running, once per server
// life; vmm.ErrNotRunning when there is none.
func (b *Backend) adoptVM(ctx context.Context) (*VM, *agent.Client, error) {
	b.vmMu.Lock()
	defer b.vmMu.Unlock()
	if v, ac := b.vmClient(); v != nil {
		return v, ac, nil
	}
	b.mu.Lock()
	tried := b.adoptTried
	b.adoptTried = true
	b.mu.Unlock()
	if tried {
		return nil, nil, vmm.ErrNotRunning
	}
	v, err := Adopt(ctx, Config{RunDir: b.cfg.RunDir})
	if errors.Is(err, ErrNoVM) {
		return nil, nil, vmm.ErrNotRunning
	}
	if err != nil {
		return nil, nil, err
	}
	ac, info, err := b.connectAgent(ctx, v, 10*time.Second)
	if err != nil {
		b.log.Warn("a VM runs but its agent does not answer; stopping it", "pid", v.PID(), "err", err)
		v.PowerdownTimeout = time.Second
		v.Quit(context.WithoutCancel(ctx))
		return nil, nil, vmm.ErrNotRunning
	}
	started := time.Now()
	if fi, err := os.Stat("/proc/" + strconv.Itoa(v.PID())); err == nil {
		started = fi.ModTime()
	}
	b.mu.Lock()
	b.vm, b.agent, b.state, b.startedAt, b.release = v, ac, vmm.VMRunning, started, info.Kernel
	b.memory, b.memoryMode, b.memoryHistory = nil, "", nil
	b.mu.Unlock()
	b.watch(v)
	b.log.Info("adopted the running utility VM", "pid", v.PID(), "kernel", info.Kernel)
	b.releaseIdle()
	return v, ac, nil
}

// ensureVM returns the running VM and its agent, booting it when needed.
func (b *Backend) ensureVM(ctx context.Context) (*VM, *agent.Client, error) {
	if v, ac := b.vmClient(); v != nil {
		return v, ac, nil
	}
	if v, ac, err := b.adoptVM(ctx); err == nil {
		return v, ac, nil
	} else if !errors.Is(err, vmm.ErrNotRunning) {
		return nil, nil, err
	}
	b.vmMu.Lock()
	defer b.vmMu.Unlock()
	if v, ac := b.vmClient(); v != nil {
		return v, ac, nil
	}
	v, ac, err := b.boot(ctx)
	if err != nil {
		b.mu.Lock()
		b.state, b.lastErr = vmm.VMFailed, err.Error()
		b.mu.Unlock()
		return nil, nil, err
	}
	return v, ac, nil
}

// boot starts QEMU and waits for the agent: with KVM first when /dev/kvm is
// there and no earlier trial chose TCG, falling back to TCG when a KVM boot
// does not reach the agent in kvmTrialTimeout. The choice is remembered.
func (b *Backend) boot(ctx context.Context) (*VM, *agent.Client, error) {
	st, err := b.cfg.Settings(ctx)
	if err != nil {
		return nil, nil, err
	}
	kernel, modules, err := findKernel(st.Kernel, filepath.Join(b.cfg.Dir, "kernel"))
	if err != nil {
		return nil, nil, err
	}
	initrd, err := b.initramfs(modules)
	if err != nil {
		return nil, nil, err
	}
	mem, cpus := vmSize(st)
	b.mu.Lock()
	b.state, b.lastErr, b.kernel, b.memMiB, b.cpus = vmm.VMStarting, "", kernel, mem, cpus
	accel := b.accel
	b.mu.Unlock()
	cfg := Config{Kernel: kernel, Initrd: initrd, Append: kernelCmdline, MemoryMiB: mem, CPUs: cpus, RunDir: b.cfg.RunDir,
		Network: modules != "", HostShare: hostShare(modules), ExtraArgs: b.cfg.ExtraQEMUArgs}
	cfg.MemoryMiB, cfg.HotplugMiB, cfg.PlugMiB = memoryLayout(mem, !b.cfg.NoMemoryHotplug && kernelHasModule(modules, "virtio_mem"))
	if cfg.HotplugMiB > 0 {
		cfg.Append += " " + hotplugKernelArg
	}
	if cfg.Network {
		cfg.Passt = b.cfg.Passt
	}
	if cfg.HostShare != "" {
		cfg.Virtiofsd, cfg.VirtiofsdMaxFiles = b.cfg.Virtiofsd, b.cfg.VirtiofsdMaxFiles
	}

	if accel == "" {
		if kvmUsable() {
			cfg.Accel = "kvm"
			v, ac, info, err := b.bootOnce(ctx, cfg, kvmTrialTimeout)
			if err == nil {
				b.saveAccel("kvm", "")
				return b.booted(v, ac, info)
			}
			if ctx.Err() != nil {
				return nil, nil, err
			}
			b.log.Warn("KVM did not boot the VM; using TCG (software emulation) from now on", "err", err)
			b.saveAccel("tcg", fmt.Sprintf("/dev/kvm is present but a KVM boot did not reach the agent within %v", kvmTrialTimeout))
		} else {
			b.saveAccel("tcg", "/dev/kvm is missing or cannot be opened")
		}
		accel = "tcg"
	}
	cfg.Accel = accel
	v, ac, info, err := b.bootOnce(ctx, cfg, bootTimeout)
	if err != nil {
		return nil, nil, err
	}
	return b.booted(v, ac, info)
}

func (b *Backend) booted(v *VM, ac *agent.Client, info agent.Info) (*VM, *agent.Client, error) {
	b.mu.Lock()
	b.vm, b.agent, b.state, b.startedAt, b.release = v, ac, vmm.VMRunning, time.Now(), info.Kernel
	b.hostFilesNote = v.sidecarNote
	b.memory, b.memoryMode, b.memoryHistory = nil, "", nil
	if v.sidecarNote != "" {
		b.log.Warn("host files: " + v.sidecarNote)
	}
	b.mu.Unlock()
	b.watch(v)
	b.log.Info("utility VM running", "pid", v.PID(), "accel", v.cfg.Accel, "kernel", info.Kernel, "memory_mib", v.cfg.MemoryMiB+v.cfg.HotplugMiB, "hotplug_mib", v.cfg.HotplugMiB, "cpus", v.cfg.CPUs)
	return v, ac, nil
}

// bootOnce starts QEMU with cfg and waits up to timeout for the agent's
// hello. On failure QEMU is stopped and its console kept for VMConsole.
func (b *Backend) bootOnce(ctx context.Context, cfg Config, timeout time.Duration) (*VM, *agent.Client, agent.Info, error) {
	began := time.Now()
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := Start(bctx, cfg)
	if err != nil {
		return nil, nil, agent.Info{}, fmt.Errorf("start the VM (%s): %w", cfg.Accel, err)
	}
	ac, info, err := b.connectAgent(bctx, v, timeout)
	if err != nil {
		v.PowerdownTimeout = time.Millisecond
		v.Quit(context.WithoutCancel(ctx))
		b.mu.Lock()
		b.lastConsole = v.Console()
		b.mu.Unlock()
		return nil, nil, agent.Info{}, fmt.Errorf("the VM (%s) did not reach its agent within %v: %w; its console: GET /api/v1/vm/console or `subsys vm console`%s",
			cfg.Accel, timeout, err, consoleTail(v.Console()))
	}
	b.log.Info("VM booted to its agent", "accel", cfg.Accel, "took", time.Since(began).Round(time.Millisecond))
	if cfg.Network {
		addrs, err := ac.ConfigureNetwork(bctx, agent.NetworkConfig{MAC: UserNet.MAC, Address4: UserNet.Address4,
			Gateway4: UserNet.Gateway4, DNS: []string{UserNet.DNS4, UserNet.DNS6}, HostAddress: UserNet.Gateway4})
		if err != nil {
			// A VM without a network still runs distros: say so, go on.
			b.log.Warn("the VM's network is not set up", "err", err)
		}
		b.mu.Lock()
		b.addresses = addrs
		b.mu.Unlock()
	}
	return v, ac, info, nil
}

// consoleTail quotes the console's last line or two for an error message.
func consoleTail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return " (the console is empty)"
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return fmt.Sprintf(" (last lines: %q)", strings.Join(lines, "\n"))
}

// connectAgent connects to the agent's port and waits for its hello. The
// bytes wait in the port until the guest's agent opens it, so one hello is
// enough however early it is sent; QEMU's exit ends the wait.
func (b *Backend) connectAgent(ctx context.Context, v *VM, timeout time.Duration) (*agent.Client, agent.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		select {
		case <-v.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", v.cfg.AgentSocket())
	if err != nil {
		return nil, agent.Info{}, fmt.Errorf("agent port: %w", err)
	}
	ac, err := agent.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, agent.Info{}, err
	}
	info, err := ac.Hello(ctx)
	if err != nil {
		ac.Close()
		if v.ended() {
			return nil, agent.Info{}, fmt.Errorf("QEMU exited (%v)", v.exitErr)
		}
		return nil, agent.Info{}, fmt.Errorf("agent hello: %w", err)
	}
	return ac, info, nil
}

// VMStatus implements vmm.VMBackend.
func (b *Backend) VMStatus(ctx context.Context) vmm.VMStatus {
	st, _ := b.cfg.Settings(ctx)
	b.mu.Lock()
	s := vmm.VMStatus{State: b.state, Accel: b.accel, AccelNote: b.accelNote, Error: b.lastErr,
		IdleTimeoutS: st.VMIdleTimeoutS, Kernel: b.kernel, KernelRelease: b.release}
	v, ac := b.vm, b.agent
	if v != nil {
		s.PID, s.StartedAt, s.MemoryMiB, s.CPUs, s.Accel = v.PID(), b.startedAt, v.cfg.MemoryMiB+v.cfg.HotplugMiB, v.cfg.CPUs, v.cfg.Accel
		s.Network, s.HostFilesNote = v.cfg.networkName(), b.hostFilesNote
		if b.memory != nil {
			m := *b.memory
			s.Memory = &m
		}
		s.MemoryReclaim, s.MemoryHistory = b.memoryMode, slices.Clone(b.memoryHistory)
		for id := range b.targets {
			if !strings.HasPrefix(id, "export:") {
				s.Distros = append(s.Distros, id)
			}
		}
	}
	b.mu.Unlock()
	slices.Sort(s.Distros)
	if v == nil {
		s.MemoryMiB, s.CPUs = vmSize(st)
	} else {
		s.RSSBytes = processRSS(v.PID())
		s.Addresses = b.vmAddresses(ctx)
		if ac != nil {
			hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			s.HostFiles, _ = ac.HostFiles(hctx, agent.HostFilesReport)
			// The guest's memory now, rather than the last sample's.
			if m, _, err := ac.Memory(hctx, false, ""); err == nil {
				mem := vmMemory(m)
				s.Memory, s.MemoryReclaim = &mem, m.ReclaimMode
			}
			cancel()
		}
	}
	return s
}

// VMConsole implements vmm.VMBackend: the running VM's console, or the last
// VM's when none runs (a failed boot can be read).
func (b *Backend) VMConsole() []byte {
	b.mu.Lock()
	v, last := b.vm, b.lastConsole
	b.mu.Unlock()
	if v != nil {
		return v.Console()
	}
	return slices.Clone(last)
}

// vmSize is the VM's memory and processors from the settings: by default
// half the host's memory and all its processors, as WSL 2.
func vmSize(st vmm.Settings) (memMiB, cpus int) {
	memMiB, cpus = st.VMMemoryMiB, st.VMProcessors
	if memMiB <= 0 {
		memMiB = int(hostMemory()/2>>20) &^ 63
		if memMiB < 512 {
			memMiB = 512
		}
	}
	if cpus <= 0 {
		cpus = runtime.NumCPU()
	}
	return memMiB, cpus
}

// hostMemory is the host's total memory from /proc/meminfo (1 GiB if unknown).
func hostMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 1 << 30
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return kb << 10
			}
		}
	}
	return 1 << 30
}

// processRSS is a process's resident memory (0 if unknown).
func processRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// kvmUsable reports whether /dev/kvm opens for reading and writing. It may
// still not run guests (nested setups): boot tries and falls back.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// accelFile remembers the accelerator decision across server restarts.
const accelFile = "accel.json"

type accelChoice struct {
	Accel string `json:"accel"`
	Note  string `json:"note,omitempty"`
}

func (b *Backend) loadAccel() (string, string) {
	data, err := os.ReadFile(filepath.Join(b.cfg.Dir, accelFile))
	if err != nil {
		return "", ""
	}
	var c accelChoice
	if json.Unmarshal(data, &c) != nil || (c.Accel != "kvm" && c.Accel != "tcg") {
		return "", ""
	}
	return c.Accel, c.Note
}

func (b *Backend) saveAccel(accel, note string) {
	b.mu.Lock()
	b.accel, b.accelNote = accel, note
	b.mu.Unlock()
	data, _ := json.Marshal(accelChoice{Accel: accel, Note: note})
	p := filepath.Join(b.cfg.Dir, accelFile)
	if err := os.WriteFile(p+".tmp", data, 0o600); err == nil {
		os.Rename(p+".tmp", p)
	}
}

// findKernel resolves the kernel to boot: setting (a kernel image, or a
// directory with boot/vmlinuz-* and lib/modules/) or else def (a directory).
// It returns the image and the module tree (empty for a bare image, whose
// drivers must be built in).
func findKernel(setting, def string) (image, modules string, err error) {
	p := setting
	if p == "" {
		p = def
	}
	fi, err := os.Stat(p)
	if err != nil {
		if setting == "" {
			return "", "", fmt.Errorf("%w: no kernel for the VM at %s: run `make deps` (it unpacks Debian's linux-image there) or set the kernel setting", vmm.ErrUnsupported, def)
		}
		return "", "", fmt.Errorf("%w: the kernel setting: %v", vmm.ErrInvalid, err)
	}
	if !fi.IsDir() {
		return p, "", nil
	}
	images, _ := filepath.Glob(filepath.Join(p, "boot", "vmlinuz-*"))
	if len(images) == 0 {
		return "", "", fmt.Errorf("%w: %s has no boot/vmlinuz-*", vmm.ErrInvalid, p)
	}
	slices.Sort(images)
	image = images[len(images)-1]
	version := strings.TrimPrefix(filepath.Base(image), "vmlinuz-")
	modules = filepath.Join(p, "lib", "modules", version)
	if _, err := os.Stat(filepath.Join(modules, "modules.dep")); err != nil {
		return "", "", fmt.Errorf("%w: %s has no modules.dep (run depmod -b %s %s)", vmm.ErrInvalid, modules, p, version)
	}
	return image, modules, nil
}

// initramfs builds (or finds in the cache) the initramfs for the module tree.
func (b *Backend) initramfs(modules string) (string, error) {
	init, err := b.cfg.Agent()
	if err != nil {
		return "", fmt.Errorf("the agent for the VM: %w", err)
	}
	spec := initramfs.Spec{Init: init, ModulesDir: modules, Modules: vmModules, Optional: vmOptionalModules, Programs: DiskTools()}
	if modules == "" {
		spec.Modules, spec.Optional = nil, nil
	}
	key, err := initramfs.CacheKey(spec)
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	// Compressed with zstd, which the kernel unpacks itself: QEMU keeps
	// the file mapped for the VM's life, so its size is host memory (15
	// MB as a plain cpio, about a third of that compressed).
	path := filepath.Join(b.cfg.Dir, "initramfs-"+key+".cpio.zst")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	// Old images go: each is a few MB, one per agent build.
	if old, _ := filepath.Glob(filepath.Join(b.cfg.Dir, "initramfs-*.cpio*")); len(old) > 0 {
		for _, o := range old {
			os.Remove(o)
		}
	}
	f, err := os.CreateTemp(b.cfg.Dir, ".initramfs-*")
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(f.Name())
	zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.Close()
		return "", fmt.Errorf("initramfs: %w", err)
	}
	man, err := initramfs.Build(zw, spec)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	b.log.Info("built the VM's initramfs", "path", path, "modules", len(man.Modules), "absent", man.Absent)
	return path, nil
}

// diskToolNames are the e2fsprogs programs the VM's agent runs on distros'
// disks (an offline check and resize; mke2fs for a disk made in the VM,
// BuildImage); diskToolDirs where the host has them.
var (
	diskToolNames = []string{"e2fsck", "resize2fs", "mke2fs"}
	diskToolDirs  = []string{"/usr/sbin", "/sbin"}
)

// DiskTools returns the host's e2fsprogs programs for the initramfs. The VM
// runs them on a guest's file system, so the host never does; without them
// (no e2fsprogs on the host) an offline resize says what to install.
func DiskTools() []string {
	var out []string
	for _, name := range diskToolNames {
		for _, dir := range diskToolDirs {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// vmAddresses asks the VM's agent for its addresses (an IPv6 one arrives by
// SLAAC after boot), keeping the last answer when the agent cannot say.
func (b *Backend) vmAddresses(ctx context.Context) []string {
	_, ac := b.vmClient()
	if ac == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := ac.NetworkAddresses(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		b.addresses = addrs
	}
	return slices.Clone(b.addresses)
}

// hostShare is what the VM shares of the host at /mnt/host: the host's root,
// as version 1 has it, over 9p, when the kernel has the modules (a bare
// kernel image may not).
func hostShare(modules string) string {
	if modules == "" {
		return ""
	}
	return "/"
}

// vmContext returns a context that ends when v has exited or the backend
// closes: the owner of a goroutine that looks after v.
func (b *Backend) vmContext(v *VM) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(b.ctx)
	go func() {
		select {
		case <-v.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// watchListeners follows the agent's watch-listeners while v runs: the
// agent looks at the VM's sockets itself and speaks only when they change,
// so the port manager's scans cost the idle VM nothing. A watch that breaks
// while the VM runs is started again.
func (b *Backend) watchListeners(v *VM) {
	ctx, cancel := b.vmContext(v)
	defer cancel()
	for ctx.Err() == nil {
		b.mu.Lock()
		ac := b.agent
		current := b.vm == v
		b.mu.Unlock()
		if !current || ac == nil {
			return
		}
		err := ac.WatchListeners(ctx, func(ls []agent.Listener) {
			by := map[string][]agent.Listener{}
			for _, l := range ls {
				by[l.Distro] = append(by[l.Distro], l)
			}
			b.mu.Lock()
			if b.vm == v {
				b.listeners, b.watching = by, true
			}
			b.mu.Unlock()
		})
		b.mu.Lock()
		if b.vm == v {
			b.watching = false
		}
		b.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		b.log.Debug("watching the VM's listeners", "err", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Listeners returns the listening sockets of version 2 distro id in the VM
// (vmm.ErrNotRunning when the VM does not run): from the agent's watch when
// it is live, else by asking.
func (b *Backend) Listeners(ctx context.Context, id string) ([]agent.Listener, error) {
	b.mu.Lock()
	ac, watching, ls := b.agent, b.watching, slices.Clone(b.listeners[id])
	b.mu.Unlock()
	if ac == nil {
		return nil, vmm.ErrNotRunning
	}
	if watching {
		return ls, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	all, err := ac.Listeners(ctx)
	if err != nil {
		return nil, fmt.Errorf("the VM's listeners: %w", err)
	}
	var out []agent.Listener
	for _, l := range all {
		if l.Distro == id {
			out = append(out, l)
		}
	}
	return out, nil
}

// Dial connects to address in the VM (network "tcp") through the VM's agent:
// how a host listener reaches a version 2 distro's port.
func (b *Backend) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	_, ac := b.vmClient()
	if ac == nil {
		return nil, vmm.ErrNotRunning
	}
	return ac.Dial(ctx, network, address)
}
