package hcs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testutil"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// newTestBackend returns a Backend on drv with short timeouts, its files
// in a temporary directory (or stateDir when given).
func newTestBackend(t *testing.T, drv *fakeDriver, stateDir string) *Backend {
	t.Helper()
	dir := t.TempDir()
	if stateDir == "" {
		stateDir = filepath.Join(dir, "state")
	}
	kernel, initrd := filepath.Join(dir, "bzImage"), filepath.Join(dir, "initrd.img")
	for _, p := range []string{kernel, initrd} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, err := New(Config{StateDir: stateDir, Kernel: kernel, Initrd: initrd, MemoryMiB: 1024, CPUs: 2,
		Logger: slog.New(slog.DiscardHandler), Driver: drv})
	if err != nil {
		t.Fatal(err)
	}
	b.bootTimeout, b.adoptTimeout = 3*time.Second, 2*time.Second
	b.powerOffTimeout, b.shutdownTimeout = 2*time.Second, 2*time.Second
	t.Cleanup(func() { b.Close() })
	return b
}

// testDistro returns the spec of a version 2 distro whose disk is a file
// of size bytes.
func testDistro(t *testing.T, name string, size int64) vmm.Spec {
	t.Helper()
	disk := filepath.Join(t.TempDir(), name+".vhdx")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, size); err != nil {
		t.Fatal(err)
	}
	return vmm.Spec{ID: "id-" + name, Name: name, Version: 2, Disk: disk}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestNewNeedsDriverOffWindows: without a driver, New fails on systems
// that have no Host Compute Service.
func TestNewNeedsDriverOffWindows(t *testing.T) {
	_, err := New(Config{StateDir: t.TempDir(), Kernel: "k", Initrd: "i"})
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("New without a driver: %v, want errors.ErrUnsupported", err)
	}
	if _, err := New(Config{StateDir: t.TempDir(), Driver: newFakeDriver(t)}); err == nil {
		t.Fatal("New without a kernel succeeded")
	}
}

// TestLifecycle walks the VM's life: boot to the agent's hello, start a
// distro (its disk attached at a LUN, start-distro), reach the distro's
// own (real) agent, stop it (detach), grow its disk while stopped
// (resize, attach, the agent's resize, detach), and shut the VM down
// through the agent's power-off, which leaves HCS shutdown and terminate
// unused.
func TestLifecycle(t *testing.T) {
	drv := newFakeDriver(t)
	b := newTestBackend(t, drv, "")
	ctx := ctxT(t)
	s := testDistro(t, "debian", 64<<20)

	if st := b.VMStatus(ctx); st.State != vmm.VMStopped {
		t.Fatalf("before boot: state %s", st.State)
	}
	c, err := b.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Hello(ctx)
	c.Close()
	if err != nil {
		t.Fatalf("hello to the distro's agent: %v", err)
	}
	if info.Protocol != agent.ProtocolVersion {
		t.Errorf("distro agent protocol %d", info.Protocol)
	}
	sys := drv.system(b.SystemID())
	if got := drv.callsWith("create "); len(got) != 1 {
		t.Fatalf("creates: %q", got)
	}
	// The kernel, the initrd and the disk were granted to the VM.
	if got := drv.callsWith("grant "); len(got) != 3 || !strings.HasSuffix(got[2], s.Disk) {
		t.Errorf("grants: %q", got)
	}
	sys.mu.Lock()
	lun, running := sys.distros[s.ID]
	attachedPath := sys.attached[lun]
	sys.mu.Unlock()
	if !running || attachedPath != s.Disk {
		t.Fatalf("distro in the guest: running %v at LUN %d = %q", running, lun, attachedPath)
	}
	st := b.VMStatus(ctx)
	if st.State != vmm.VMRunning || !slices.Equal(st.Distros, []string{s.ID}) || st.KernelRelease != "5.15.fake-microsoft-standard-WSL2" ||
		st.RSSBytes != 300<<20 || st.Memory == nil || st.Memory.TotalBytes != 4<<30 || st.Accel != "hyperv" {
		t.Errorf("running status: %+v", st)
	}
	testutil.WaitFor(t, 5*time.Second, "the console's boot lines", func() bool {
		return bytes.Contains(b.VMConsole(), []byte("Linux version 5.15.fake"))
	})
	// A second start of a running distro connects to it.
	c2, err := b.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if got := drv.callsWith("modify Add"); len(got) != 1 {
		t.Errorf("second start attached again: %q", got)
	}
	if di, err := b.DiskStat(ctx, s); err != nil || di.SizeBytes != 0 {
		t.Errorf("disk stat of the running distro: %+v %v", di, err)
	}
	// A running distro's disk is not resized.
	if _, err := b.ResizeDisk(ctx, s, 128<<20, func(int64, int64) {}); !errors.Is(err, vmm.ErrBusy) {
		t.Errorf("resize of a running distro: %v, want ErrBusy", err)
	}

	if err := b.Stop(ctx, s); err != nil {
		t.Fatal(err)
	}
	sys.mu.Lock()
	_, stillAttached := sys.attached[lun]
	sys.mu.Unlock()
	if stillAttached {
		t.Error("the disk is still attached after stop")
	}
	if _, err := b.Connect(ctx, s); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("connect to a stopped distro: %v", err)
	}

	// Grow the stopped distro's disk.
	var steps []int64
	di, err := b.ResizeDisk(ctx, s, 128<<20, func(done, total int64) { steps = append(steps, done) })
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(s.Disk); fi.Size() != 128<<20 || di.SizeBytes != 128<<20 {
		t.Errorf("after grow: file %d bytes, file system %d", fi.Size(), di.SizeBytes)
	}
	sys.mu.Lock()
	ops, attachedNow := slices.Clone(sys.diskOps), len(sys.attached)
	sys.mu.Unlock()
	if len(ops) != 2 || !strings.HasPrefix(ops[1], "resize "+s.ID+" ") || !strings.HasSuffix(ops[1], " 134217728") || attachedNow != 0 {
		t.Errorf("agent disk ops %q, %d disks attached after the grow", ops, attachedNow)
	}
	if !slices.Equal(steps, []int64{0, 1, 2, 3}) {
		t.Errorf("progress %v", steps)
	}
	if _, err := b.ResizeDisk(ctx, s, 64<<20, func(int64, int64) {}); !errors.Is(err, vmm.ErrInvalid) {
		t.Errorf("shrink: %v, want ErrInvalid", err)
	}
	// The order of the disk's modify requests: start, stop, grow.
	want := []string{"modify Add " + scsiPath(lun), "modify Remove " + scsiPath(lun)}
	if got := drv.callsWith("modify "); len(got) != 4 || !slices.Equal(got[:2], want) ||
		!strings.HasPrefix(got[2], "modify Add ") || !strings.HasPrefix(got[3], "modify Remove ") {
		t.Errorf("modify requests: %q", got)
	}

	if err := b.SetSize(ctx, 2048, 4); err != nil {
		t.Fatal(err)
	}
	if st := b.VMStatus(ctx); st.MemoryMiB != 2048 || st.CPUs != 2 {
		t.Errorf("after SetSize(2048, 4): memory %d MiB, %d CPUs (processors apply at the next boot)", st.MemoryMiB, st.CPUs)
	}

	if err := b.ShutdownVM(ctx); err != nil {
		t.Fatal(err)
	}
	if sys.state() != "Stopped" {
		t.Errorf("system %s after shutdown", sys.state())
	}
	if got := drv.callsWith("power-off"); len(got) != 1 {
		t.Errorf("power-offs: %q", got)
	}
	if got := append(drv.callsWith("shutdown"), drv.callsWith("terminate")...); len(got) != 0 {
		t.Errorf("the agent powered off, yet: %q", got)
	}
	if st := b.VMStatus(ctx); st.State != vmm.VMStopped || st.Error != "" || st.CPUs != 4 {
		t.Errorf("after shutdown: %+v", st)
	}
}

// TestReadopt: a new Backend (a restarted server) finds the VM the last
// one left running, reconnects to its agent, knows the running distro's
// LUN from the record and detaches the right disk on stop.
func TestReadopt(t *testing.T) {
	drv := newFakeDriver(t)
	state := filepath.Join(t.TempDir(), "state")
	b1 := newTestBackend(t, drv, state)
	ctx := ctxT(t)
	a, bb := testDistro(t, "a", 32<<20), testDistro(t, "b", 32<<20)
	for _, s := range []vmm.Spec{a, bb} {
		c, err := b1.Start(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if err := b1.Stop(ctx, a); err != nil {
		t.Fatal(err)
	}
	b1.Close()
	sys := drv.system(b1.SystemID())
	if sys.state() != "Running" {
		t.Fatalf("closing the backend stopped the VM: %s", sys.state())
	}
	sys.mu.Lock()
	lunB := sys.distros[bb.ID]
	sys.mu.Unlock()

	b2 := newTestBackend(t, drv, state)
	if _, err := b2.Connect(ctx, a); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("connect to the stopped distro: %v", err)
	}
	c, err := b2.Connect(ctx, bb)
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	if _, err := c.Hello(ctx); err != nil {
		t.Errorf("hello after restart: %v", err)
	}
	c.Close()
	if got := drv.callsWith("create "); len(got) != 1 {
		t.Errorf("a VM was created again: %q", got)
	}
	st := b2.VMStatus(ctx)
	if st.State != vmm.VMRunning || !slices.Equal(st.Distros, []string{bb.ID}) || st.StartedAt.IsZero() {
		t.Errorf("adopted status: %+v", st)
	}
	if err := b2.Stop(ctx, bb); err != nil {
		t.Fatal(err)
	}
	if got := drv.callsWith("modify Remove " + scsiPath(lunB)); len(got) != 1 {
		t.Errorf("the adopted distro's LUN %d was not detached: %q", lunB, drv.callsWith("modify "))
	}
}

// TestBootTimeout: a guest whose agent never answers fails the start
// within the boot timeout, with the console's last lines in the error; the
// system is terminated and the VM is Failed.
func TestBootTimeout(t *testing.T) {
	drv := newFakeDriver(t)
	drv.agentSilent = true
	b := newTestBackend(t, drv, "")
	b.bootTimeout = 500 * time.Millisecond
	ctx := ctxT(t)
	s := testDistro(t, "debian", 32<<20)
	began := time.Now()
	_, err := b.Start(ctx, s)
	if err == nil {
		t.Fatal("start succeeded without an agent")
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("the failed boot took %v", took)
	}
	if !strings.Contains(err.Error(), "did not reach its agent") {
		t.Errorf("error: %v", err)
	}
	st := b.VMStatus(ctx)
	if st.State != vmm.VMFailed || st.Error == "" {
		t.Errorf("status after a failed boot: %+v", st)
	}
	if sys := drv.system(b.SystemID()); sys.state() != "Stopped" || len(drv.callsWith("terminate")) != 1 {
		t.Errorf("the failed VM: %s, calls %q", sys.state(), drv.callsWith("terminate"))
	}
	// The next start boots a new VM.
	drv.mu.Lock()
	drv.agentSilent = false
	drv.mu.Unlock()
	c, err := b.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := drv.callsWith("create "); len(got) != 2 {
		t.Errorf("creates: %q", got)
	}
}

// TestAgentLost: when the VM's agent connection breaks, the backend
// notices, terminates the VM (it cannot drive it) and says why; the next
// start boots a new one.
func TestAgentLost(t *testing.T) {
	drv := newFakeDriver(t)
	b := newTestBackend(t, drv, "")
	ctx := ctxT(t)
	s := testDistro(t, "debian", 32<<20)
	c, err := b.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	sys := drv.system(b.SystemID())
	sys.dropAgent()
	testutil.WaitFor(t, 5*time.Second, "the VM marked failed", func() bool {
		return b.VMStatus(ctx).State == vmm.VMFailed
	})
	if st := b.VMStatus(ctx); !strings.Contains(st.Error, "agent was lost") || len(st.Distros) != 0 {
		t.Errorf("status: %+v", st)
	}
	if sys.state() != "Stopped" {
		t.Errorf("the VM with a lost agent is %s", sys.state())
	}
	c, err = b.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := drv.callsWith("create "); len(got) != 2 {
		t.Errorf("creates: %q", got)
	}
}

// TestAttachFailure: a disk the VM will not take fails the start with
// nothing attached, the distro not started and no LUN kept.
func TestAttachFailure(t *testing.T) {
	drv := newFakeDriver(t)
	b := newTestBackend(t, drv, "")
	ctx := ctxT(t)
	ok, bad := testDistro(t, "ok", 32<<20), testDistro(t, "bad", 32<<20)
	c, err := b.Start(ctx, ok)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	drv.mu.Lock()
	drv.failAttach = true
	drv.mu.Unlock()
	_, err = b.Start(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "attach the disk of bad") {
		t.Fatalf("start with a failing attach: %v", err)
	}
	sys := drv.system(b.SystemID())
	sys.mu.Lock()
	attached, distros := len(sys.attached), slices.Collect(mapKeys(sys.distros))
	sys.mu.Unlock()
	if attached != 1 || !slices.Equal(distros, []string{ok.ID}) {
		t.Errorf("after the failed attach: %d disks attached, distros %q", attached, distros)
	}
	if st := b.VMStatus(ctx); !slices.Equal(st.Distros, []string{ok.ID}) || st.State != vmm.VMRunning {
		t.Errorf("status: %+v", st)
	}
	rec := b.loadDisks()
	if _, kept := rec[bad.ID]; kept || len(rec) != 1 {
		t.Errorf("disk record: %+v", rec)
	}
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestShutdownEscalates: the table of ways a VM resists stopping. The
// agent's power-off comes first; HCS shutdown when the VM is still up after
// the power-off timeout; terminate when shutdown does not end it within
// its timeout.
func TestShutdownEscalates(t *testing.T) {
	for _, tc := range []struct {
		name                         string
		ignorePowerOff, hangShutdown bool
		want                         []string
	}{
		{"agent powers off", false, false, []string{"power-off"}},
		{"agent ignores power-off", true, false, []string{"power-off", "shutdown"}},
		{"shutdown hangs", true, true, []string{"power-off", "shutdown", "terminate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drv := newFakeDriver(t)
			drv.ignorePowerOff, drv.hangShutdown = tc.ignorePowerOff, tc.hangShutdown
			b := newTestBackend(t, drv, "")
			b.powerOffTimeout, b.shutdownTimeout = 300*time.Millisecond, 300*time.Millisecond
			ctx := ctxT(t)
			c, err := b.Start(ctx, testDistro(t, "d", 32<<20))
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if err := b.ShutdownVM(ctx); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range drv.callsWith("") {
				if op, _, _ := strings.Cut(c, " "); slices.Contains([]string{"power-off", "shutdown", "terminate"}, op) {
					got = append(got, op)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("calls %q, want %q", got, tc.want)
			}
			if sys := drv.system(b.SystemID()); sys.state() != "Stopped" {
				t.Errorf("system %s", sys.state())
			}
			if st := b.VMStatus(ctx); st.State != vmm.VMStopped {
				t.Errorf("state %s", st.State)
			}
		})
	}
}

// TestBuildImage: a new distro's disk is made in the VM: VHDX created,
// attached, filled by the agent, detached; when filling fails, the disk is
// detached and its file removed.
func TestBuildImage(t *testing.T) {
	drv := newFakeDriver(t)
	b := newTestBackend(t, drv, "")
	ctx := ctxT(t)
	var filledAt []int
	b.fill = func(ctx context.Context, ac *agent.Client, target int, r io.Reader) error {
		filledAt = append(filledAt, target)
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if string(data) != "tar stream" {
			return errors.New("the guest was given " + string(data))
		}
		return nil
	}
	s := vmm.Spec{ID: "new", Name: "new", Version: 2}
	path := filepath.Join(t.TempDir(), "ext4.vhdx")
	if err := b.BuildImage(ctx, s, path, 1<<30, strings.NewReader("tar stream")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 1<<30 {
		t.Fatalf("the new disk: %v", err)
	}
	if len(filledAt) != 1 {
		t.Fatalf("filled %v", filledAt)
	}
	want := []string{"modify Add " + scsiPath(filledAt[0]), "modify Remove " + scsiPath(filledAt[0])}
	if got := drv.callsWith("modify "); !slices.Equal(got, want) {
		t.Errorf("modify requests %q, want %q", got, want)
	}

	path2 := filepath.Join(t.TempDir(), "ext4.vhdx")
	err := b.BuildImage(ctx, s, path2, 1<<30, strings.NewReader("something else"))
	if err == nil {
		t.Fatal("a failed fill succeeded")
	}
	if _, serr := os.Stat(path2); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("the failed disk is left: %v", serr)
	}
	if sys := drv.system(b.SystemID()); len(sys.attached) != 0 {
		t.Errorf("attached after a failed build: %v", sys.attached)
	}
	// Without the agent's ops, BuildImage says so and leaves nothing.
	b.fill = fillDisk
	path3 := filepath.Join(t.TempDir(), "ext4.vhdx")
	if err := b.BuildImage(ctx, s, path3, 1<<30, strings.NewReader("x")); !errors.Is(err, vmm.ErrUnsupported) {
		t.Errorf("build without the agent's ops: %v", err)
	}
	if _, serr := os.Stat(path3); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("the failed disk is left: %v", serr)
	}
}

// TestPreflightRefuses: a host the driver finds unfit fails the start as
// unsupported, and creates nothing.
func TestPreflightRefuses(t *testing.T) {
	drv := newFakeDriver(t)
	drv.preflight = errors.New("subsys needs Windows 10 version 1903 (build 18362) or later; this is build 17763")
	b := newTestBackend(t, drv, "")
	_, err := b.Start(ctxT(t), testDistro(t, "d", 32<<20))
	if !errors.Is(err, vmm.ErrUnsupported) || !strings.Contains(err.Error(), "build 18362") {
		t.Errorf("start on an unfit host: %v", err)
	}
	if got := drv.callsWith("create "); len(got) != 0 {
		t.Errorf("creates: %q", got)
	}
}

// TestNoHostComputeService: on a Windows without the service, looking for
// a running distro finds none (a server's start adopts every distro) and
// starting one says why it cannot.
func TestNoHostComputeService(t *testing.T) {
	drv := newFakeDriver(t)
	missing := fmt.Errorf("%w: the Host Compute Service is missing", errors.ErrUnsupported)
	drv.listErr, drv.preflight = missing, missing
	b := newTestBackend(t, drv, "")
	ctx := ctxT(t)
	s := testDistro(t, "d", 32<<20)
	if _, err := b.Connect(ctx, s); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("connect: %v, want ErrNotRunning", err)
	}
	if _, err := b.Start(ctx, s); !errors.Is(err, vmm.ErrUnsupported) || !strings.Contains(err.Error(), "Host Compute Service is missing") {
		t.Errorf("start: %v", err)
	}
}

func TestParseDisks(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{`{"a":{"target":1,"path":"D:\\a.vhdx"},"b":{"target":2,"path":"x"}}`, 2},
		{`{"a":{"target":1,"path":"x"},"b":{"target":1,"path":"y"}}`, 1},
		{`{"a":{"target":64,"path":"x"}}`, 0},
		{`{"a":{"target":-1,"path":"x"}}`, 0},
		{`{"../a":{"target":1,"path":"x"}}`, 0},
		{`{"a":{"target":1,"path":""}}`, 0},
		{`[1,2]`, 0},
		{`{`, 0},
	} {
		if got := parseDisks([]byte(tc.in)); len(got) != tc.want {
			t.Errorf("%s: %d entries, want %d", tc.in, len(got), tc.want)
		}
	}
}

func FuzzParseDisks(f *testing.F) {
	f.Add([]byte(`{"a":{"target":1,"path":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for k, d := range parseDisks(b) {
			if k == "" || checkTarget(d.Target) != nil || d.Path == "" {
				t.Fatalf("kept %q %+v", k, d)
			}
		}
	})
}

func TestVsockServiceID(t *testing.T) {
	if got := vsockServiceID(AgentVsockPort); got != "0000138d-facb-11e6-bd58-64006a7986d3" {
		t.Errorf("got %s", got)
	}
}

func TestRing(t *testing.T) {
	r := newRing(8)
	r.Write([]byte("abcdef"))
	r.Write([]byte("ghij"))
	if got := string(r.Bytes()); got != "cdefghij" {
		t.Errorf("got %q", got)
	}
	r.Write([]byte("0123456789"))
	if got := string(r.Bytes()); got != "23456789" {
		t.Errorf("got %q", got)
	}
}

func TestDefaultMemory(t *testing.T) {
	for _, tc := range []struct {
		host int64
		want int
	}{
		{0, 2048},
		{16 << 30, 8192},
		{(16 << 30) + 100<<20, 8192}, // half is 8242 MiB: down to 64 MiB steps
		{512 << 20, 512},
	} {
		if got := defaultMemoryMiB(tc.host); got != tc.want {
			t.Errorf("host %d: %d MiB, want %d", tc.host, got, tc.want)
		}
	}
}

// TestListenersAndDial: the network manager's view of a version 2 distro
// on Windows — its listening sockets, from the VM's agent, filtered to the
// distro, and a connection to one through the agent's dial (how a host
// listener forwards to it).
func TestListenersAndDial(t *testing.T) {
	drv := newFakeDriver(t)
	b := newTestBackend(t, drv, "")
	ctx := ctxT(t)
	if _, err := b.Listeners(ctx, "x"); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("listeners before boot: %v", err)
	}
	if _, err := b.Dial(ctx, "tcp", "127.0.0.1:1"); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("dial before boot: %v", err)
	}
	s := testDistro(t, "web", 32<<20)
	c, err := b.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		io.WriteString(conn, "echo: "+line)
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	sys := drv.system(b.SystemID())
	sys.mu.Lock()
	sys.listeners = []agent.Listener{{Distro: s.ID, Proto: "tcp", Address: "127.0.0.1", Port: port},
		{Distro: "someone-else", Proto: "tcp", Address: "0.0.0.0", Port: 22}}
	sys.mu.Unlock()

	ls, err := b.Listeners(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Port != port {
		t.Fatalf("listeners of %s: %+v", s.ID, ls)
	}
	conn, err := b.Dial(ctx, "tcp", net.JoinHostPort(ls[0].Address, strconv.Itoa(int(ls[0].Port))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "hello\n")
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || got != "echo: hello\n" {
		t.Errorf("through the agent: %q, %v", got, err)
	}
}
