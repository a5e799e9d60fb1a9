package hcs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/archive"
)

// Config configures the Backend.
type Config struct {
	// StateDir holds the VM's files (the record of attached disks) and
	// names it: the compute system's id and console pipe take a suffix
	// from it, so two data directories run two VMs. Required.
	StateDir string
	// Kernel and Initrd are the paths of the VM's kernel image and
	// initrd (the agent as /init). Required.
	Kernel, Initrd string
	// KernelCmdline is appended to the kernel's command line; may be empty.
	KernelCmdline string
	// MemoryMiB and CPUs size the VM; 0 means, as WSL 2, half the host's
	// memory (2048 MiB where it cannot be told) and all its processors.
	MemoryMiB, CPUs int
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Driver reaches the Host Compute Service; nil means the platform's
	// (on systems other than Windows New then fails with
	// errors.ErrUnsupported).
	Driver Driver
}

// Timeouts of the VM's life (Backend fields, so tests shorten them).
const (
	// defaultBootTimeout bounds a boot up to the agent's hello: a Hyper-V
	// VM reaches it in a second or two.
	defaultBootTimeout = 60 * time.Second
	// defaultAdoptTimeout bounds the hello of a VM an earlier server left.
	defaultAdoptTimeout = 10 * time.Second
	// defaultPowerOffTimeout is how long the agent has to stop the
	// distros, sync and power off; then HCS shutdown.
	defaultPowerOffTimeout = 20 * time.Second
	// defaultShutdownTimeout is how long HCS shutdown has; then terminate.
	defaultShutdownTimeout = 10 * time.Second
	// terminateTimeout bounds terminate and the wait for the stop.
	terminateTimeout = 30 * time.Second
	// dialRetry is the pause between hvsocket dials while the guest's
	// agent is not listening yet.
	dialRetry = 100 * time.Millisecond
)

// consoleLimit is how much of COM1 the Backend keeps: the last MiB.
const consoleLimit = 1 << 20

// Backend runs version 2 distros in one Hyper-V utility VM made by the
// Host Compute Service: it boots the VM with the first distro, hot-adds
// each distro's VHDX on the VM's SCSI controller, has the VM's agent start
// the distro, and reaches the distro's own agent through the VM agent's
// open-distro. The VM outlives the server (its compute system is not
// terminated with the last handle) and the next server adopts it. It
// implements vmm.Backend, vmm.VMBackend, vmm.TreeExporter and
// vmm.DiskManager, and BuildImage makes a new distro's disk in the VM.
type Backend struct {
	cfg  Config
	log  *slog.Logger
	drv  Driver
	id   string // the compute system's id
	pipe string // COM1's named pipe

	bootTimeout, adoptTimeout, powerOffTimeout, shutdownTimeout time.Duration

	ctx    context.Context // owner of the watch and console goroutines
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// vmMu serialises the VM's boot, adoption and stop.
	vmMu sync.Mutex

	mu         sync.Mutex
	sys        System
	ac         *agent.Client
	runtimeID  string
	state      vmm.VMState
	startedAt  time.Time
	release    string
	lastErr    string
	memMiB     int
	cpus       int
	stopping   bool            // stopVM is ending the VM: its end is expected
	disks      map[string]slot // distro id (or an operation's key) → its disk
	nextTarget int
	adoptTried bool
	console    *ring

	// fill formats the disk attached at target and unpacks r into it, in
	// the VM (BuildImage); fillDisk but in tests.
	fill func(ctx context.Context, ac *agent.Client, target int, r io.Reader) error
}

// slot is a disk attached to the VM.
type slot struct {
	Target int    `json:"target"`
	Path   string `json:"path"`
}

// New returns the backend. It starts nothing until a distro starts (or
// Connect finds a VM an earlier server left running).
func New(cfg Config) (*Backend, error) {
	if cfg.StateDir == "" || cfg.Kernel == "" || cfg.Initrd == "" {
		return nil, errors.New("hcs backend: StateDir, Kernel and Initrd are required")
	}
	if cfg.Driver == nil {
		d, err := platformDriver()
		if err != nil {
			return nil, fmt.Errorf("hcs backend: %w", err)
		}
		cfg.Driver = d
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MemoryMiB <= 0 {
		cfg.MemoryMiB = defaultMemoryMiB(hostMemory())
	}
	if cfg.CPUs <= 0 {
		cfg.CPUs = runtime.NumCPU()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("hcs backend: %w", err)
	}
	abs, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("hcs backend: %w", err)
	}
	sum := sha256.Sum256([]byte(strings.ToLower(abs)))
	suffix := hex.EncodeToString(sum[:4])
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{cfg: cfg, log: cfg.Logger.With("component", "vm"), drv: cfg.Driver,
		id: "subsys-" + suffix, pipe: `\\.\pipe\subsys-` + suffix + "-console",
		bootTimeout: defaultBootTimeout, adoptTimeout: defaultAdoptTimeout,
		powerOffTimeout: defaultPowerOffTimeout, shutdownTimeout: defaultShutdownTimeout,
		ctx: ctx, cancel: cancel, state: vmm.VMStopped, disks: map[string]slot{},
		console: newRing(consoleLimit), fill: fillDisk}
	return b, nil
}

// defaultMemoryMiB is half of host bytes in MiB, rounded down to 64 MiB,
// at least 512; 2048 when host is unknown (0).
func defaultMemoryMiB(host int64) int {
	if host <= 0 {
		return 2048
	}
	return max(int(host/2>>20)&^63, 512)
}

// SystemID is the compute system's id (hcsdiag list shows it).
func (b *Backend) SystemID() string { return b.id }

// Close stops the backend's goroutines and drops its handles. The VM and
// its distros keep running: the next server adopts them.
func (b *Backend) Close() error {
	b.cancel()
	b.mu.Lock()
	ac, sys := b.ac, b.sys
	b.mu.Unlock()
	if ac != nil {
		ac.Close()
	}
	b.wg.Wait()
	if sys != nil {
		sys.Close()
	}
	return nil
}

// vmClient returns the running VM and its agent, or nils.
func (b *Backend) vmClient() (System, *agent.Client) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sys, b.ac
}

// Start implements vmm.Backend: it boots the VM when it is not running,
// attaches the distro's disk, starts the distro in the VM and returns a
// client of the distro's own agent. On failure nothing stays attached.
func (b *Backend) Start(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	if c, err := b.Connect(ctx, s); err == nil {
		return c, nil
	} else if !errors.Is(err, vmm.ErrNotRunning) {
		return nil, err
	}
	sys, ac, err := b.ensureVM(ctx)
	if err != nil {
		return nil, err
	}
	target, err := b.takeTarget(s.ID, s.Disk)
	if err != nil {
		return nil, err
	}
	if err := b.attach(ctx, sys, target, s.Disk, false); err != nil {
		b.dropTarget(s.ID, target)
		return nil, fmt.Errorf("attach the disk of %s: %w", s.Name, err)
	}
	undo := func() {
		b.detach(context.WithoutCancel(ctx), sys, target)
		b.dropTarget(s.ID, target)
	}
	if err := ac.StartDistro(ctx, agent.DistroRequest{ID: s.ID, Hostname: s.Name, DiskTarget: target, Systemd: s.Systemd}); err != nil {
		undo()
		return nil, fmt.Errorf("start %s in the VM: %w", s.Name, err)
	}
	c, err := openDistro(ctx, ac, s.ID)
	if err != nil {
		ac.StopDistro(context.WithoutCancel(ctx), s.ID)
		undo()
		return nil, err
	}
	return c, nil
}

func openDistro(ctx context.Context, ac *agent.Client, id string) (*agent.Client, error) {
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

// Connect implements vmm.Backend: a client of a distro that runs in the
// VM, adopting a VM an earlier server left running; vmm.ErrNotRunning when
// the VM or the distro is not running.
func (b *Backend) Connect(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	_, ac := b.vmClient()
	if ac == nil {
		var err error
		if _, ac, err = b.adoptVM(ctx); err != nil {
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
	return openDistro(ctx, ac, s.ID)
}

// Stop implements vmm.Backend: the VM's agent stops the distro and
// unmounts its disk, then the disk is removed from the VM.
func (b *Backend) Stop(ctx context.Context, s vmm.Spec) error {
	sys, ac := b.vmClient()
	if sys == nil {
		return nil
	}
	if err := ac.StopDistro(ctx, s.ID); err != nil {
		return fmt.Errorf("stop %s in the VM: %w", s.Name, err)
	}
	b.mu.Lock()
	d, ok := b.disks[s.ID]
	b.mu.Unlock()
	if !ok {
		return nil
	}
	if err := b.detach(ctx, sys, d.Target); err != nil {
		return fmt.Errorf("detach the disk of %s: %w", s.Name, err)
	}
	b.dropTarget(s.ID, d.Target)
	return nil
}

// ExportTree implements vmm.TreeExporter: the VM's agent writes the
// archive from the distro's mounted disk (the live one, or the stopped
// distro's attached read-only for it). The host never parses the disk.
func (b *Backend) ExportTree(ctx context.Context, s vmm.Spec, w io.Writer, f archive.Format) error {
	sys, ac, err := b.ensureVM(ctx)
	if err != nil {
		return err
	}
	b.mu.Lock()
	d, running := b.disks[s.ID]
	b.mu.Unlock()
	req := agent.DistroRequest{ID: s.ID, DiskTarget: d.Target}
	if !running {
		key := "export:" + s.ID
		target, err := b.takeTarget(key, s.Disk)
		if err != nil {
			return err
		}
		defer b.dropTarget(key, target)
		if err := b.attach(ctx, sys, target, s.Disk, true); err != nil {
			return fmt.Errorf("attach the disk of %s: %w", s.Name, err)
		}
		defer b.detach(context.WithoutCancel(ctx), sys, target)
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

// attach lets the VM open path and hot-adds it at LUN target.
func (b *Backend) attach(ctx context.Context, sys System, target int, path string, readOnly bool) error {
	req, err := AttachDiskRequest(target, path, readOnly)
	if err != nil {
		return err
	}
	if err := b.drv.GrantVMAccess(ctx, b.id, path); err != nil {
		return fmt.Errorf("grant the VM access to %s: %w", path, err)
	}
	return sys.Modify(ctx, req)
}

// detach removes LUN target from the VM.
func (b *Backend) detach(ctx context.Context, sys System, target int) error {
	req, err := DetachDiskRequest(target)
	if err != nil {
		return err
	}
	return sys.Modify(ctx, req)
}

// takeTarget gives key (a distro id, or an operation's key) a free LUN,
// round robin rather than the lowest free: a LUN just given back may still
// be on its way out of the guest.
func (b *Backend) takeTarget(key, path string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	used := map[int]bool{}
	for _, d := range b.disks {
		used[d.Target] = true
	}
	for i := 0; i <= MaxDiskTarget; i++ {
		t := (b.nextTarget + i) % (MaxDiskTarget + 1)
		if !used[t] {
			b.disks[key] = slot{Target: t, Path: path}
			b.nextTarget = t + 1
			b.saveDisksLocked()
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: the VM has no free disk slot (%d in use)", vmm.ErrBusy, MaxDiskTarget+1)
}

func (b *Backend) dropTarget(key string, target int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d, ok := b.disks[key]; ok && d.Target == target {
		delete(b.disks, key)
		b.saveDisksLocked()
	}
}

// ensureVM returns the running VM and its agent, adopting or booting it.
func (b *Backend) ensureVM(ctx context.Context) (System, *agent.Client, error) {
	if sys, ac := b.vmClient(); sys != nil {
		return sys, ac, nil
	}
	if sys, ac, err := b.adoptVM(ctx); err == nil {
		return sys, ac, nil
	} else if !errors.Is(err, vmm.ErrNotRunning) {
		return nil, nil, err
	}
	b.vmMu.Lock()
	defer b.vmMu.Unlock()
	if sys, ac := b.vmClient(); sys != nil {
		return sys, ac, nil
	}
	sys, ac, err := b.boot(ctx)
	if err != nil {
		b.mu.Lock()
		b.state, b.lastErr = vmm.VMFailed, err.Error()
		b.mu.Unlock()
		return nil, nil, err
	}
	return sys, ac, nil
}

// boot creates and starts the compute system and waits for its agent's
// hello; on failure the system is terminated.
func (b *Backend) boot(ctx context.Context) (System, *agent.Client, error) {
	if err := b.drv.Preflight(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", vmm.ErrUnsupported, err)
	}
	for _, p := range []string{b.cfg.Kernel, b.cfg.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return nil, nil, fmt.Errorf("%w: the VM's kernel or initrd: %w (see the kernel setting)", vmm.ErrInvalid, err)
		}
	}
	// A system of ours that is not running (left stopped, or failed) has
	// the id the new one needs.
	if infos, err := b.drv.List(ctx, listQuery()); err == nil {
		for _, in := range infos {
			if in.ID == b.id {
				b.log.Info("removing a stale compute system", "id", in.ID, "state", in.State)
				if old, err := b.drv.Open(ctx, in.ID); err == nil {
					old.Terminate(ctx)
					old.Close()
				}
			}
		}
	}
	// HCS refuses more virtual processors than the host has.
	cpus := min(b.cfg.CPUs, runtime.NumCPU())
	doc, err := CreateDocument(VMSpec{Kernel: b.cfg.Kernel, Initrd: b.cfg.Initrd, Cmdline: b.cfg.KernelCmdline,
		MemoryMiB: b.cfg.MemoryMiB, CPUs: cpus, ConsolePipe: b.pipe, AgentService: vsockServiceID(AgentVsockPort)})
	if err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	b.state, b.lastErr, b.memMiB, b.cpus = vmm.VMStarting, "", int(evenMiB(b.cfg.MemoryMiB)), cpus
	b.console = newRing(consoleLimit)
	con := b.console
	b.mu.Unlock()
	began := time.Now()
	bctx, cancel := context.WithTimeout(ctx, b.bootTimeout)
	defer cancel()
	sys, err := b.drv.Create(bctx, b.id, doc)
	if err != nil {
		return nil, nil, fmt.Errorf("create the VM: %w", err)
	}
	fail := func(err error) (System, *agent.Client, error) {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), terminateTimeout)
		defer cancel()
		sys.Terminate(tctx)
		sys.Close()
		return nil, nil, err
	}
	for _, p := range []string{b.cfg.Kernel, b.cfg.Initrd} {
		if err := b.drv.GrantVMAccess(bctx, b.id, p); err != nil {
			return fail(fmt.Errorf("grant the VM access to %s: %w", p, err))
		}
	}
	b.readConsole(con)
	if err := sys.Start(bctx); err != nil {
		return fail(fmt.Errorf("start the VM: %w", err))
	}
	ac, info, runtimeID, err := b.connectAgent(bctx, sys)
	if err != nil {
		return fail(fmt.Errorf("the VM did not reach its agent within %v: %w; its console: GET /api/v1/vm/console or `subsys vm console`%s",
			b.bootTimeout, err, consoleTail(con.Bytes())))
	}
	b.log.Info("utility VM running", "id", b.id, "kernel", info.Kernel, "memory_mib", b.cfg.MemoryMiB, "cpus", cpus,
		"took", time.Since(began).Round(time.Millisecond))
	b.running(sys, ac, runtimeID, info, time.Now(), nil)
	return sys, ac, nil
}

// readConsole copies COM1 into con while the backend lives; the pipe
// ends with the VM. A console that cannot be opened costs only the log.
func (b *Backend) readConsole(con *ring) {
	rc, err := b.drv.OpenConsole(b.ctx, b.pipe)
	if err != nil {
		b.log.Warn("the VM's console is not kept", "pipe", b.pipe, "err", err)
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		stop := context.AfterFunc(b.ctx, func() { rc.Close() })
		defer stop()
		io.Copy(con, rc)
		rc.Close()
	}()
}

// connectAgent dials the agent's hvsocket service until it answers hello
// (the guest listens once its /init runs) or ctx ends; the system's stop
// ends the wait early.
func (b *Backend) connectAgent(ctx context.Context, sys System) (*agent.Client, agent.Info, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		if sys.Wait(ctx) == nil {
			close(stopped)
			cancel()
		}
	}()
	raw, err := sys.Properties(ctx, nil)
	if err != nil {
		return nil, agent.Info{}, "", fmt.Errorf("the VM's properties: %w", err)
	}
	p, err := parseProperties(raw)
	if err != nil {
		return nil, agent.Info{}, "", err
	}
	if p.RuntimeID == "" {
		return nil, agent.Info{}, "", errors.New("the VM has no runtime id")
	}
	var last error
	for {
		conn, err := b.drv.DialAgent(ctx, p.RuntimeID, AgentVsockPort)
		if err == nil {
			ac, info, herr := hello(ctx, conn)
			if herr == nil {
				return ac, info, p.RuntimeID, nil
			}
			err = herr
		}
		last = err
		t := time.NewTimer(dialRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			select {
			case <-stopped:
				return nil, agent.Info{}, "", errors.New("the VM stopped")
			default:
			}
			return nil, agent.Info{}, "", fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}

func hello(ctx context.Context, conn net.Conn) (*agent.Client, agent.Info, error) {
	ac, err := agent.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, agent.Info{}, err
	}
	info, err := ac.Hello(ctx)
	if err != nil {
		ac.Close()
		return nil, agent.Info{}, fmt.Errorf("agent hello: %w", err)
	}
	return ac, info, nil
}

// running records sys as the running VM and watches it.
func (b *Backend) running(sys System, ac *agent.Client, runtimeID string, info agent.Info, started time.Time, disks map[string]slot) {
	b.mu.Lock()
	b.sys, b.ac, b.runtimeID, b.state, b.startedAt, b.release, b.stopping = sys, ac, runtimeID, vmm.VMRunning, started, info.Kernel, false
	if disks == nil {
		disks = map[string]slot{}
	}
	b.disks = disks
	b.saveDisksLocked()
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.watch(sys, ac)
	}()
}

// watch notices the VM's end or the loss of its agent, however either
// happens. A VM whose agent is gone cannot be driven, so it is terminated
// and the next start boots a new one.
func (b *Backend) watch(sys System, ac *agent.Client) {
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	exited := make(chan struct{})
	go func() {
		if sys.Wait(ctx) == nil {
			close(exited)
		}
	}()
	why := ""
	select {
	case <-b.ctx.Done():
		return
	case <-exited:
		why = "the VM stopped unexpectedly; its console (GET /api/v1/vm/console) may say why"
	case <-ac.Done():
		why = "the connection to the VM's agent was lost; the VM was stopped and the next start boots a new one"
	}
	b.mu.Lock()
	expected := b.sys != sys || b.stopping
	b.mu.Unlock()
	if expected {
		return
	}
	b.log.Warn(why)
	tctx, tcancel := context.WithTimeout(b.ctx, terminateTimeout)
	sys.Terminate(tctx)
	tcancel()
	b.vmGone(sys, why)
}

// vmGone records that sys has ended (why says how, when unexpectedly).
func (b *Backend) vmGone(sys System, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sys != sys {
		return
	}
	if b.ac != nil {
		b.ac.Close()
	}
	sys.Close()
	b.sys, b.ac, b.runtimeID, b.stopping = nil, nil, "", false
	b.disks = map[string]slot{}
	b.saveDisksLocked()
	b.state = vmm.VMStopped
	if why != "" {
		b.state, b.lastErr = vmm.VMFailed, why
	}
}

// adoptVM takes over the VM an earlier server left running, once per
// backend; vmm.ErrNotRunning when there is none (or it does not answer,
// and is then terminated).
func (b *Backend) adoptVM(ctx context.Context) (System, *agent.Client, error) {
	b.vmMu.Lock()
	defer b.vmMu.Unlock()
	if sys, ac := b.vmClient(); sys != nil {
		return sys, ac, nil
	}
	b.mu.Lock()
	tried := b.adoptTried
	b.adoptTried = true
	b.mu.Unlock()
	if tried {
		return nil, nil, vmm.ErrNotRunning
	}
	infos, err := b.drv.List(ctx, listQuery())
	if err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return nil, nil, vmm.ErrNotRunning
		}
		return nil, nil, fmt.Errorf("list compute systems: %w", err)
	}
	i := slices.IndexFunc(infos, func(in SystemInfo) bool { return in.ID == b.id && in.State == "Running" })
	if i < 0 {
		return nil, nil, vmm.ErrNotRunning
	}
	sys, err := b.drv.Open(ctx, b.id)
	if errors.Is(err, ErrNoSystem) {
		return nil, nil, vmm.ErrNotRunning
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open the running VM: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, b.adoptTimeout)
	defer cancel()
	ac, info, runtimeID, err := b.connectAgent(actx, sys)
	if err != nil {
		b.log.Warn("a VM runs but its agent does not answer; stopping it", "id", b.id, "err", err)
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), terminateTimeout)
		sys.Terminate(tctx)
		cancel()
		sys.Close()
		return nil, nil, vmm.ErrNotRunning
	}
	disks := b.adoptDisks(ctx, sys, ac)
	started := time.Now()
	if raw, err := sys.Properties(ctx, statsQuery()); err == nil {
		if p, err := parseProperties(raw); err == nil && p.Statistics != nil {
			started = started.Add(-time.Duration(p.Statistics.Uptime100ns) * 100)
		}
	}
	b.readConsole(b.console)
	b.running(sys, ac, runtimeID, info, started, disks)
	b.log.Info("adopted the running utility VM", "id", b.id, "kernel", info.Kernel, "distros", len(disks))
	return sys, ac, nil
}

// adoptDisks returns the disks of the distros that run in an adopted VM,
// from the record the earlier server kept; disks of anything else (an
// export or a resize that server did not finish) are removed.
func (b *Backend) adoptDisks(ctx context.Context, sys System, ac *agent.Client) map[string]slot {
	rec := b.loadDisks()
	ids, err := ac.Distros(ctx)
	if err != nil {
		b.log.Warn("list the adopted VM's distros", "err", err)
	}
	out := map[string]slot{}
	for key, d := range rec {
		if slices.Contains(ids, key) {
			out[key] = d
			continue
		}
		if err := b.detach(ctx, sys, d.Target); err != nil {
			b.log.Debug("detach a disk left by an earlier server", "target", d.Target, "err", err)
		}
	}
	return out
}

// ShutdownVM implements vmm.VMBackend: the agent stops every distro, syncs
// and powers off; HCS shutdown follows if the VM does not stop within the
// power-off timeout, and terminate if it does not stop within the
// shutdown timeout.
func (b *Backend) ShutdownVM(ctx context.Context) error {
	b.vmMu.Lock()
	defer b.vmMu.Unlock()
	b.mu.Lock()
	sys, ac := b.sys, b.ac
	if sys != nil {
		b.state, b.stopping = vmm.VMStopping, true
	}
	b.mu.Unlock()
	if sys == nil {
		return nil
	}
	wait := func(d time.Duration) bool {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return sys.Wait(wctx) == nil
	}
	stopped := false
	pctx, cancel := context.WithTimeout(ctx, b.powerOffTimeout)
	err := ac.PowerOff(pctx)
	cancel()
	if err == nil {
		stopped = wait(b.powerOffTimeout)
	} else {
		b.log.Warn("the VM's agent did not power off; asking HCS to shut it down", "err", err)
	}
	if !stopped {
		sctx, cancel := context.WithTimeout(ctx, b.shutdownTimeout)
		err := sys.Shutdown(sctx)
		cancel()
		if err == nil {
			stopped = wait(b.shutdownTimeout)
		}
		if !stopped {
			b.log.Warn("the VM did not shut down; terminating it", "timeout", b.shutdownTimeout, "err", err)
		}
	}
	if !stopped {
		tctx, cancel := context.WithTimeout(ctx, terminateTimeout)
		err := sys.Terminate(tctx)
		cancel()
		if err != nil && !wait(time.Second) {
			b.mu.Lock()
			b.state, b.stopping = vmm.VMRunning, false
			b.mu.Unlock()
			return fmt.Errorf("terminate the VM: %w", err)
		}
	}
	b.vmGone(sys, "")
	return nil
}

// VMStatus implements vmm.VMBackend.
func (b *Backend) VMStatus(ctx context.Context) vmm.VMStatus {
	b.mu.Lock()
	s := vmm.VMStatus{State: b.state, Accel: "hyperv", Error: b.lastErr, IdleTimeoutS: -1,
		Kernel: b.cfg.Kernel, KernelRelease: b.release, MemoryMiB: b.cfg.MemoryMiB, CPUs: b.cfg.CPUs}
	sys, ac := b.sys, b.ac
	if sys != nil {
		s.StartedAt, s.MemoryMiB, s.CPUs = b.startedAt, b.memMiB, b.cpus
		for id := range b.disks {
			if !strings.Contains(id, ":") {
				s.Distros = append(s.Distros, id)
			}
		}
	}
	b.mu.Unlock()
	slices.Sort(s.Distros)
	if sys == nil {
		return s
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if raw, err := sys.Properties(sctx, statsQuery()); err == nil {
		if p, err := parseProperties(raw); err == nil && p.Statistics != nil && p.Statistics.Memory != nil {
			s.RSSBytes = int64(p.Statistics.Memory.MemoryUsagePrivateWorkingSetBytes)
		}
	}
	if m, _, err := ac.Memory(sctx, false, ""); err == nil {
		mem := vmMemory(m)
		s.Memory, s.MemoryReclaim = &mem, m.ReclaimMode
	}
	if addrs, err := ac.NetworkAddresses(sctx); err == nil {
		s.Addresses = addrs
	}
	return s
}

func vmMemory(m agent.MemoryInfo) vmm.VMMemory {
	return vmm.VMMemory{TotalBytes: m.TotalBytes, UsedBytes: m.UsedBytes, CachedBytes: m.CachedBytes,
		AvailableBytes: m.AvailableBytes, ReclaimedBytes: m.ReclaimedBytes}
}

// VMConsole implements vmm.VMBackend: the last MiB of COM1, of the running
// VM or else of the last one.
func (b *Backend) VMConsole() []byte {
	b.mu.Lock()
	con := b.console
	b.mu.Unlock()
	return con.Bytes()
}

// ReclaimVM implements vmm.VMBackend: the guest drops its page cache, and
// free page reporting gives the pages back to Windows.
func (b *Backend) ReclaimVM(ctx context.Context) (vmm.VMReclaim, error) {
	sys, ac := b.vmClient()
	if ac == nil {
		return vmm.VMReclaim{}, vmm.ErrNotRunning
	}
	m, dropped, err := ac.Memory(ctx, true, "")
	if err != nil {
		return vmm.VMReclaim{}, err
	}
	r := vmm.VMReclaim{DroppedBytes: dropped, Memory: vmMemory(m)}
	if raw, err := sys.Properties(ctx, statsQuery()); err == nil {
		if p, err := parseProperties(raw); err == nil && p.Statistics != nil && p.Statistics.Memory != nil {
			r.RSSBytes = int64(p.Statistics.Memory.MemoryUsagePrivateWorkingSetBytes)
		}
	}
	return r, nil
}

// SetSize sets the VM's memory and processors. The running VM's memory
// changes now (a modify request); processors, which a running Hyper-V VM
// cannot change, and both for a stopped VM, apply at the next boot.
func (b *Backend) SetSize(ctx context.Context, memMiB, cpus int) error {
	req, err := MemoryRequest(memMiB)
	if err != nil {
		return fmt.Errorf("%w: %w", vmm.ErrInvalid, err)
	}
	if cpus < 1 {
		return fmt.Errorf("%w: %d processors", vmm.ErrInvalid, cpus)
	}
	b.vmMu.Lock()
	defer b.vmMu.Unlock()
	b.mu.Lock()
	b.cfg.MemoryMiB, b.cfg.CPUs = memMiB, cpus
	sys := b.sys
	b.mu.Unlock()
	if sys == nil {
		return nil
	}
	if err := sys.Modify(ctx, req); err != nil {
		return fmt.Errorf("set the VM's memory: %w", err)
	}
	b.mu.Lock()
	if b.sys == sys {
		b.memMiB = memMiB
	}
	b.mu.Unlock()
	return nil
}

// Listeners returns the listening sockets of version 2 distro id in the
// VM (vmm.ErrNotRunning when the VM does not run), for the network
// manager's port forwarding.
func (b *Backend) Listeners(ctx context.Context, id string) ([]agent.Listener, error) {
	_, ac := b.vmClient()
	if ac == nil {
		return nil, vmm.ErrNotRunning
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

// Dial connects to address in the VM (network "tcp") through the VM's
// agent: how a host listener reaches a version 2 distro's port.
func (b *Backend) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	_, ac := b.vmClient()
	if ac == nil {
		return nil, vmm.ErrNotRunning
	}
	return ac.Dial(ctx, network, address)
}

// consoleTail quotes the console's last lines for an error message.
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
