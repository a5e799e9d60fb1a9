package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"
)

// How long Quit gives each gentler step before the next.
const (
	// DefaultPowerdownTimeout is how long the guest has to power off after
	// the ACPI power button (system_powerdown).
	DefaultPowerdownTimeout = 10 * time.Second
	// quitTimeout is how long QEMU has to exit after the quit command.
	quitTimeout = 5 * time.Second
)

// VM is a running QEMU and the connections to it. Its methods are safe for
// concurrent use.
//
// A VM owns three goroutines: the one that waits for QEMU's exit and then
// closes the connections and removes the sockets, the one that copies the
// serial console into its ring, and the QMP reader. All three end when QEMU
// exits, and Wait returns only after they have.
type VM struct {
	cfg     Config
	proc    process
	console *ring
	stderr  *ring

	// PowerdownTimeout is what Quit gives the guest to power itself off;
	// DefaultPowerdownTimeout when zero. Set it before calling Quit.
	PowerdownTimeout time.Duration

	exited    chan struct{} // closed once QEMU has exited and been reaped
	exitErr   error         // cmd.Wait's error, set before exited is closed
	started   chan struct{} // closed when Start no longer touches the connections
	done      chan struct{} // closed when everything the VM owns has ended
	startOnce sync.Once

	conMu      sync.Mutex
	consoleC   net.Conn
	consoleEnd chan struct{} // closed when the console copier ends; nil if none
	// sidecars are the programs started beside QEMU (passt, virtiofsd),
	// set before QEMU starts; the reaper stops them after QEMU exits.
	// virtiofsd is also among them, nil when not started by this server.
	sidecars  []*sidecar
	virtiofsd *sidecar
	// sidecarNote says what went wrong starting a sidecar that the VM
	// does without (virtiofsd).
	sidecarNote string
	qmp         *qmpClient
	// events hands QMP events to those waiting for one (DetachDisk); its
	// goroutine ends when the QMP connection does, and closes eventsEnd.
	events    *eventHub
	eventsEnd chan struct{}
}

// PID is QEMU's process id.
func (v *VM) PID() int { return v.proc.Pid() }

// Config is the configuration the VM was started (or adopted) with.
func (v *VM) Config() Config { return v.cfg }

// Status is QEMU's run state, from query-status.
type Status struct {
	// Running is true while the guest's CPUs run.
	Running bool `json:"running"`
	// Status is QEMU's name of the state: "running", "paused", "shutdown",
	// "internal-error", …
	Status string `json:"status"`
}

// Start starts QEMU for cfg and returns once QMP has answered; the guest
// keeps booting after that. ctx bounds only the start: the VM outlives it.
// When QEMU fails to start, exits, or ctx ends first, Start kills it, waits
// for it, removes its sockets and returns an error that carries what QEMU
// wrote on stderr and the console's last lines.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	cfg = cfg.withDefaults()
	if _, err := cfg.Args(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	if err := prepareRunDir(cfg); err != nil {
		return nil, err
	}
	v := &VM{
		cfg:     cfg,
		console: newRing(ConsoleLimit),
		stderr:  newRing(stderrLimit),
		exited:  make(chan struct{}),
		started: make(chan struct{}),
		done:    make(chan struct{}),
	}
	files, err := v.startSidecars(ctx)
	if err != nil {
		v.stopSidecars(0)
		return nil, err
	}
	// The sidecars may have changed the config (a virtiofsd that did not
	// start leaves 9p alone).
	args, err := v.cfg.Args()
	if err != nil {
		v.stopSidecars(0)
		return nil, err
	}
	// Not exec.CommandContext: the VM outlives ctx, and Quit ends it.
	cmd := exec.Command(bin, args...)
	cmd.Stdout = v.stderr
	cmd.Stderr = v.stderr
	cmd.SysProcAttr = sysProcAttr()
	cmd.ExtraFiles = files
	err = cmd.Start()
	for _, f := range files {
		f.Close() // QEMU has its copies
	}
	if err != nil {
		v.stopSidecars(0)
		return nil, fmt.Errorf("qemu: starting %s: %w", bin, err)
	}
	v.proc = childProcess{cmd}
	go v.reap()

	if err := v.attach(ctx); err != nil {
		// A connection that broke usually means QEMU is exiting: a moment's
		// grace lets the error say so, with its status, rather than only
		// "connection reset".
		graceFor := time.Second
		if ctx.Err() != nil {
			graceFor = 0 // the caller gave up: no more waiting
		}
		grace := time.NewTimer(graceFor)
		select {
		case <-v.exited:
			err = fmt.Errorf("qemu: exited during start (%v): %w", v.exitErr, err)
		case <-grace.C:
			v.proc.Kill()
		}
		grace.Stop()
		v.startOnce.Do(func() { close(v.started) })
		<-v.done
		return nil, fmt.Errorf("%w%s", err, v.diagnostics())
	}
	v.startOnce.Do(func() { close(v.started) })
	return v, nil
}

// prepareRunDir makes the run directory 0700 and clears sockets a VM that
// was killed left behind, which would make QEMU fail to bind.
func prepareRunDir(cfg Config) error {
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return fmt.Errorf("qemu: run directory: %w", err)
	}
	// MkdirAll leaves an existing directory's mode alone.
	if err := os.Chmod(cfg.RunDir, 0o700); err != nil {
		return fmt.Errorf("qemu: run directory: %w", err)
	}
	for _, p := range []string{cfg.QMPSocket(), cfg.ConsoleSocket(), cfg.AgentSocket(), cfg.PIDFile()} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("qemu: removing stale socket: %w", err)
		}
	}
	return nil
}

// attach connects the console (first: QEMU waits for it before it starts the
// machine) and then QMP.
func (v *VM) attach(ctx context.Context) error {
	con, err := v.dial(ctx, v.cfg.ConsoleSocket())
	if err != nil {
		return fmt.Errorf("qemu: serial console: %w", err)
	}
	end := make(chan struct{})
	v.conMu.Lock()
	v.consoleC, v.consoleEnd = con, end
	v.conMu.Unlock()
	go func() {
		defer close(end)
		// Ends at EOF when QEMU exits, or when reap closes the connection.
		io.Copy(v.console, con)
	}()

	qc, err := v.dial(ctx, v.cfg.QMPSocket())
	if err != nil {
		return fmt.Errorf("qemu: QMP: %w", err)
	}
	q, err := newQMPClient(ctx, qc)
	if err != nil {
		return fmt.Errorf("qemu: QMP: %w", err)
	}
	v.events = newEventHub()
	v.eventsEnd = make(chan struct{})
	v.conMu.Lock()
	v.qmp = q
	v.conMu.Unlock()
	go func() {
		defer close(v.eventsEnd)
		v.events.run(q.Events())
	}()
	return nil
}

// dial connects to a socket QEMU is about to create, retrying until it
// accepts, QEMU exits, or ctx ends. QEMU offers no sign that a socket is
// ready, so polling is the way to learn it.
func (v *VM) dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w (last: %v)", path, context.Cause(ctx), err)
		case <-v.exited:
			return nil, fmt.Errorf("QEMU exited before %s accepted a connection: %v", path, v.exitErr)
		case <-tick.C:
		}
	}
}

// reap waits for QEMU to exit, then, once Start has let go of the
// connections, closes them, waits for their goroutines and removes the
// sockets, which QEMU leaves behind when it is killed.
func (v *VM) reap() {
	v.exitErr = v.proc.Wait()
	close(v.exited)
	<-v.started
	v.conMu.Lock()
	con, end, q := v.consoleC, v.consoleEnd, v.qmp
	v.conMu.Unlock()
	if q != nil {
		q.Close()
	}
	if con != nil {
		con.Close()
		<-end
	}
	if v.eventsEnd != nil {
		<-v.eventsEnd
	}
	os.Remove(v.cfg.QMPSocket())
	os.Remove(v.cfg.ConsoleSocket())
	os.Remove(v.cfg.AgentSocket())
	os.Remove(v.cfg.PIDFile())
	v.stopSidecars(sidecarLinger)
	close(v.done)
}

// startSidecars starts the programs the config asks for beside QEMU (passt,
// virtiofsd) and returns the files QEMU needs of them, its fds 3, ….
// A virtiofsd that does not start is no failure: the VM shares the host's
// files over 9p alone, and sidecarNote says why.
func (v *VM) startSidecars(ctx context.Context) ([]*os.File, error) {
	var files []*os.File
	if v.cfg.Network && v.cfg.Passt != "" {
		s, qemuEnd, err := startPasst(v.cfg)
		if err != nil {
			return nil, err
		}
		v.sidecars = append(v.sidecars, s)
		files = append(files, qemuEnd) // fd passtFD
	}
	if v.cfg.HostShare != "" && v.cfg.Virtiofsd != "" {
		s, err := startVirtiofsd(ctx, v.cfg)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			v.sidecarNote = fmt.Sprintf("virtiofsd did not start, so /mnt/host uses 9p: %v", err)
			v.cfg.Virtiofsd = ""
		} else {
			v.sidecars = append(v.sidecars, s)
			v.virtiofsd = s
		}
	}
	return files, nil
}

// stopSidecars waits up to linger for the sidecars to end, then kills them.
func (v *VM) stopSidecars(linger time.Duration) {
	for _, s := range v.sidecars {
		s.stop(linger)
	}
	if v.virtiofsd != nil {
		os.Remove(v.cfg.VirtiofsdPIDFile())
		os.Remove(v.cfg.VirtiofsSocket())
	}
}

// diagnostics is what QEMU said, for an error message.
func (v *VM) diagnostics() string {
	var b bytes.Buffer
	if s := bytes.TrimSpace(v.stderr.Bytes()); len(s) > 0 {
		fmt.Fprintf(&b, "; qemu stderr: %q", tail(s, 2048))
	}
	if s := bytes.TrimSpace(v.console.Bytes()); len(s) > 0 {
		fmt.Fprintf(&b, "; console: %q", tail(s, 2048))
	}
	for _, s := range v.sidecars {
		b.WriteString(s.diagnostics())
	}
	return b.String()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Console returns a copy of the serial console's last ConsoleLimit bytes as
// the guest wrote them: escape sequences, carriage returns and other control
// characters are left in, and a caller that shows them to a person or a
// terminal must sanitize them first (as cli/sanitize.go does).
func (v *VM) Console() []byte { return v.console.Bytes() }

// Stderr returns a copy of the last 64 KiB QEMU itself wrote on its stdout
// and stderr; like Console, unsanitized.
func (v *VM) Stderr() []byte { return v.stderr.Bytes() }

// WaitConsole waits until cond holds for the console's kept bytes (which it
// must not keep or change), and checks it again after every write. It fails
// when ctx ends or QEMU exits first.
func (v *VM) WaitConsole(ctx context.Context, cond func(console []byte) bool) error {
	for {
		b, changed := v.console.snapshot()
		if cond(b) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("qemu: waiting on the console: %w", context.Cause(ctx))
		case <-v.done:
			// The last write came before done: look once more.
			if cond(v.console.Bytes()) {
				return nil
			}
			return fmt.Errorf("qemu: waiting on the console: QEMU exited: %v", v.exitErr)
		}
	}
}

// Execute runs a QMP command with args (nil for none) and decodes its return
// into out (nil to ignore it); an error QEMU answers is a *QMPError.
func (v *VM) Execute(ctx context.Context, command string, args, out any) error {
	v.conMu.Lock()
	q := v.qmp
	v.conMu.Unlock()
	return q.Execute(ctx, command, args, out)
}

// Status asks QEMU for the VM's run state.
func (v *VM) Status(ctx context.Context) (Status, error) {
	var s Status
	if err := v.Execute(ctx, "query-status", nil, &s); err != nil {
		return Status{}, fmt.Errorf("qemu: status: %w", err)
	}
	return s, nil
}

// Done is closed when QEMU has exited and the VM has released everything it
// owned.
func (v *VM) Done() <-chan struct{} { return v.done }

// Wait waits until QEMU has exited and the VM has released its goroutines,
// connections and sockets, and returns how QEMU exited (nil for status 0; a
// VM ended by Quit's kill reports the signal), or ctx's error first.
func (v *VM) Wait(ctx context.Context) error {
	select {
	case <-v.done:
		if v.exitErr != nil {
			return fmt.Errorf("qemu: %w", v.exitErr)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("qemu: waiting for exit: %w", context.Cause(ctx))
	}
}

// Quit ends the VM, gently first: the ACPI power button (system_powerdown)
// and PowerdownTimeout for the guest to power off, then QMP quit and a few
// seconds for QEMU to exit, then SIGKILL. When ctx ends, Quit skips to the
// kill. It returns once QEMU is gone and the VM has released all it owned,
// with nil however the VM ended, or with ctx's error when the kill itself
// could not be waited for.
func (v *VM) Quit(ctx context.Context) error {
	pd := v.PowerdownTimeout
	if pd <= 0 {
		pd = DefaultPowerdownTimeout
	}
	steps := []struct {
		command string
		wait    time.Duration
	}{{"system_powerdown", pd}, {"quit", quitTimeout}}
	for _, s := range steps {
		if v.ended() {
			break
		}
		// An error here (QEMU exiting meanwhile, a dead QMP connection) is
		// no reason to stop: the next step is harder.
		if err := v.Execute(ctx, s.command, nil, nil); err == nil {
			if v.waitExit(ctx, s.wait) {
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	if !v.ended() {
		// Kill fails only when the process is gone already.
		v.proc.Kill()
	}
	select {
	case <-v.done:
		return nil
	case <-ctx.Done():
		// The kill was sent; reap still finishes on its own, and Wait or
		// Done tell when.
		return fmt.Errorf("qemu: quit: waiting after SIGKILL: %w", context.Cause(ctx))
	}
}

func (v *VM) ended() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// waitExit reports whether the VM ended within d.
func (v *VM) waitExit(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-v.done:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}
