package vmm_test

// These tests drive the Manager through vmmtest.Backend: real agents in the
// test process, real processes, a real store, and no root. They run as any
// user (see vmmtest's doc for what the double does not confine).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testutil"
	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/vmmtest"
)

// wait bounds every wait of these tests: generous, because the machine may
// be small and shared; a passing test waits far less.
const wait = 30 * time.Second

// newManager opens a Manager on a fresh data directory with a real store and
// b as its version 1 backend. It returns the data directory.
func newManager(t *testing.T, b *vmmtest.Backend) (*vmm.Manager, string) {
	t.Helper()
	ctx := context.Background()
	data := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(data, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := vmm.New(ctx, vmm.Config{Store: db, DataDir: data, Backends: map[int]vmm.Backend{1: b}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		b.Close()
		db.Close()
	})
	return m, data
}

// tarball is vmmtest.Tarball with files, or the test fails.
func tarball(t *testing.T, files ...vmmtest.File) []byte {
	t.Helper()
	b, err := vmmtest.Tarball(files...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// importDistro imports a small tarball as name and waits for it to succeed.
func importDistro(t *testing.T, m *vmm.Manager, name string) vmm.Distro {
	t.Helper()
	ctx := context.Background()
	op, err := m.Import(ctx, vmm.ImportRequest{Name: name, Body: bytes.NewReader(tarball(t))})
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := m.WaitOperation(ctx, op.ID(), wait); info.Status != vmm.StatusSuccess {
		t.Fatalf("import %s: %+v", name, info)
	}
	d, err := m.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type result struct {
	stdout, stderr string
	code           int
}

// run execs req in distro name, feeding it stdin, and collects its output.
func run(t *testing.T, m *vmm.Manager, name string, req agent.ExecRequest, stdin string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	p, err := m.Exec(ctx, name, req)
	if err != nil {
		t.Fatalf("exec %q in %s: %v", req.Argv, name, err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	var stdout, stderr []byte
	wg.Go(func() { stdout, _ = io.ReadAll(p.Stdout()) })
	wg.Go(func() { stderr, _ = io.ReadAll(p.Stderr()) })
	io.WriteString(p.Stdin(), stdin)
	p.Stdin().Close()
	wg.Wait()
	st, err := p.Wait()
	if err != nil {
		t.Fatalf("exec %q: wait: %v", req.Argv, err)
	}
	return result{string(stdout), string(stderr), st.Code}
}

// TestLifecycle: import, start, exec, terminate, exec (which starts it
// again), unregister — the whole life of a distro, with the real agent.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	b := vmmtest.NewBackend(vmmtest.Config{})
	m, data := newManager(t, b)

	tb := tarball(t, vmmtest.File{Name: "etc/motd", Body: "hello from the distro\n"})
	op, err := m.Import(ctx, vmm.ImportRequest{Name: "alpha", Body: bytes.NewReader(tb), Size: int64(len(tb))})
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.WaitOperation(ctx, op.ID(), wait)
	if err != nil || info.Status != vmm.StatusSuccess {
		t.Fatalf("import = %+v, %v", info, err)
	}
	if info.Kind != vmm.KindImport || info.Distro != "alpha" || info.Result == nil || info.Result.Entries != 5 {
		t.Errorf("import operation = %+v (result %+v), want an import of alpha that read 5 entries (., etc, and 3 files)", info, info.Result)
	}
	d, err := m.Get(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != vmm.StateStopped || !d.Default || d.Version != 1 {
		t.Errorf("after import: %+v, want the stopped default version 1 distro", d)
	}
	rootfs := filepath.Join(d.Location, "rootfs")
	if got, err := os.ReadFile(filepath.Join(rootfs, "etc", "motd")); err != nil || string(got) != "hello from the distro\n" {
		t.Errorf("imported etc/motd = %q, %v", got, err)
	}

	if d, err = m.Start(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if d.State != vmm.StateRunning || !slices.Equal(b.Running(), []string{d.ID}) {
		t.Errorf("after start: state %s, backend runs %q", d.State, b.Running())
	}
	c, err := m.RunningAgent(ctx, "alpha")
	if err != nil || c == nil {
		t.Fatalf("RunningAgent = %v, %v", c, err)
	}
	if hi, err := c.Hello(ctx); err != nil || hi.Protocol != agent.ProtocolVersion {
		t.Errorf("hello = %+v, %v", hi, err)
	}

	// Exec as the distro's default user (root in its passwd, which Tarball
	// maps to whoever runs the test), in its root, with stdin, both outputs
	// and an exit code.
	r := run(t, m, "alpha", agent.ExecRequest{
		Argv: []string{"sh", "-c", `cat etc/motd; id -u; tr a-z A-Z; echo oops >&2; exit 3`},
		Cwd:  rootfs,
	}, "piped in\n")
	want := fmt.Sprintf("hello from the distro\n%d\nPIPED IN\n", os.Getuid())
	if r.stdout != want || r.stderr != "oops\n" || r.code != 3 {
		t.Errorf("exec = %+v, want stdout %q, stderr %q, code 3", r, want, "oops\n")
	}
	if _, err := m.Exec(ctx, "alpha", agent.ExecRequest{Argv: []string{"true"}, User: "nobody-here"}); !errors.Is(err, agent.ErrUserNotFound) {
		t.Errorf("exec as a user the distro lacks = %v, want ErrUserNotFound", err)
	}

	if err := m.Terminate(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if d, _ = m.Get(ctx, "alpha"); d.State != vmm.StateStopped || len(b.Running()) != 0 {
		t.Errorf("after terminate: state %s, backend runs %q", d.State, b.Running())
	}
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Errorf("the old agent client is still connected after terminate")
	}

	// Exec starts a stopped distro.
	if r := run(t, m, "alpha", agent.ExecRequest{Argv: []string{"echo", "again"}}, ""); r.stdout != "again\n" || r.code != 0 {
		t.Errorf("exec after terminate = %+v", r)
	}
	if d, _ = m.Get(ctx, "alpha"); d.State != vmm.StateRunning || b.Starts() != 2 {
		t.Errorf("exec did not start the distro: state %s, %d starts", d.State, b.Starts())
	}

	if err := m.Unregister(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, "alpha"); !errors.Is(err, vmm.ErrNotFound) {
		t.Errorf("Get after unregister = %v, want ErrNotFound", err)
	}
	if len(b.Running()) != 0 || !slices.Equal(b.Forgotten(), []string{d.ID}) {
		t.Errorf("after unregister the backend runs %q and forgot %q, want nothing and %q", b.Running(), b.Forgotten(), d.ID)
	}
	assertNoDistroFiles(t, data)
}

// assertNoDistroFiles fails when the data directory holds any distro's files
// or staging.
func assertNoDistroFiles(t *testing.T, data string) {
	t.Helper()
	for _, dir := range []string{"distros", "tmp"} {
		entries, err := os.ReadDir(filepath.Join(data, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("%s/%s is left behind", dir, e.Name())
		}
	}
}

// TestReadopt: distros outlive the manager; a new one adopts them running,
// and the agent's terminal sessions survive the change.
func TestReadopt(t *testing.T) {
	ctx := context.Background()
	b := vmmtest.NewBackend(vmmtest.Config{})
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	defer b.Close()
	data := t.TempDir()
	open := func() *vmm.Manager {
		m, err := vmm.New(ctx, vmm.Config{Store: db, DataDir: data, Backends: map[int]vmm.Backend{1: b}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	importDistro(t, m, "keep")
	c, err := m.Agent(ctx, "keep")
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.OpenSession(ctx, agent.SessionRequest{ExecRequest: agent.ExecRequest{Argv: []string{"sleep", "60"}}})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()

	m = open()
	defer m.Close()
	if d, _ := m.Get(ctx, "keep"); d.State != vmm.StateRunning {
		t.Fatalf("after a restart the distro is %s, want Running", d.State)
	}
	if b.Starts() != 1 {
		t.Errorf("the new manager started the distro again (%d starts), want it adopted", b.Starts())
	}
	c, err = m.RunningAgent(ctx, "keep")
	if err != nil || c == nil {
		t.Fatalf("RunningAgent = %v, %v", c, err)
	}
	list, err := c.Sessions(ctx)
	if err != nil || len(list) != 1 || list[0].ID != sess.ID {
		t.Errorf("sessions after adoption = %+v, %v; want %s", list, err, sess.ID)
	}
	// Terminate kills it: the agent's sessions end with the agent.
	if err := m.Terminate(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
}

// TestAgentGone: when a distro's agent goes away on its own, the distro
// shows Stopped and the next exec starts it again.
func TestAgentGone(t *testing.T) {
	ctx := context.Background()
	b := vmmtest.NewBackend(vmmtest.Config{})
	m, _ := newManager(t, b)
	d := importDistro(t, m, "fragile")
	if _, err := m.Start(ctx, "fragile"); err != nil {
		t.Fatal(err)
	}
	if !b.Crash(d.ID) {
		t.Fatal("Crash: not running")
	}
	testutil.WaitFor(t, wait, "the distro to show Stopped", func() bool {
		d, err := m.Get(ctx, "fragile")
		return err == nil && d.State == vmm.StateStopped
	})
	if r := run(t, m, "fragile", agent.ExecRequest{Argv: []string{"true"}}, ""); r.code != 0 {
		t.Errorf("exec after the agent went = %+v", r)
	}
}

// blockedImport starts importing name from a pipe that holds back all but
// the first part of a tarball, and returns the operation and finish, which
// writes the rest. The import runs, blocked reading its body, until finish
// or the end of the test.
func blockedImport(t *testing.T, m *vmm.Manager, name string) (*vmm.Operation, func()) {
	t.Helper()
	// A body bigger than the archive reader's read-ahead, so that the
	// import cannot have read it all before the test acts.
	tb := tarball(t, vmmtest.File{Name: "big", Body: strings.Repeat("x", 4<<20)})
	pr, pw := io.Pipe()
	op, err := m.Import(context.Background(), vmm.ImportRequest{Name: name, Body: pr, Size: int64(len(tb))})
	if err != nil {
		t.Fatal(err)
	}
	head := 64 << 10
	go pw.Write(tb[:head])
	testutil.WaitFor(t, wait, "the import to read its first bytes", func() bool {
		return op.Info().Progress.Done >= int64(head)
	})
	var once sync.Once
	finish := func() {
		once.Do(func() {
			pw.Write(tb[head:])
			pw.Close()
		})
	}
	// An import left blocked would hold up the manager's Close.
	t.Cleanup(func() { pw.CloseWithError(errors.New("test ended")) })
	return op, finish
}

// TestBusy: while an operation holds a distro, a second operation on it
// fails with a BusyError that names the distro and the operation, and it
// succeeds once the first has ended.
func TestBusy(t *testing.T) {
	ctx := context.Background()
	b := vmmtest.NewBackend(vmmtest.Config{})
	m, _ := newManager(t, b)

	op, finish := blockedImport(t, m, "beta")
	checkBusy := func(what string, err error, kind string) {
		t.Helper()
		var busy *vmm.BusyError
		if !errors.As(err, &busy) || !errors.Is(err, vmm.ErrBusy) {
			t.Errorf("%s during the %s = %v, want a BusyError", what, kind, err)
			return
		}
		if busy.Distro != "beta" || busy.Op.Kind != kind || busy.Op.Status != vmm.StatusRunning {
			t.Errorf("%s: BusyError names %q and %+v, want beta and the running %s", what, busy.Distro, busy.Op, kind)
		}
		if msg := err.Error(); !strings.Contains(msg, `"beta"`) || !strings.Contains(msg, busy.Op.ID) || !strings.Contains(msg, kind) {
			t.Errorf("%s: message %q does not name the distro, the operation and its kind", what, msg)
		}
	}
	err := m.Unregister(ctx, "beta")
	checkBusy("unregister", err, vmm.KindImport)
	var busy *vmm.BusyError
	if errors.As(err, &busy) && busy.Op.ID != op.ID() {
		t.Errorf("BusyError names operation %s, want the import %s", busy.Op.ID, op.ID())
	}
	_, err = m.Start(ctx, "beta")
	checkBusy("start", err, vmm.KindImport)
	_, err = m.Clone(ctx, "beta", "beta2")
	checkBusy("clone", err, vmm.KindImport)
	name := "renamed"
	_, err = m.Update(ctx, "beta", vmm.Update{Name: &name})
	checkBusy("rename", err, vmm.KindImport)
	if b.Starts() != 0 {
		t.Errorf("a distro being imported was started")
	}

	finish()
	if info, _ := m.WaitOperation(ctx, op.ID(), wait); info.Status != vmm.StatusSuccess {
		t.Fatalf("import = %+v", info)
	}

	// An export holds the distro while its reader is slow.
	pr, pw := io.Pipe()
	exported := make(chan error, 1)
	go func() { exported <- m.Export(ctx, "beta", pw, "tar"); pw.Close() }()
	testutil.WaitFor(t, wait, "the export to hold the distro", func() bool {
		select {
		case err := <-exported:
			t.Fatalf("export ended early: %v", err)
		default:
		}
		d, err := m.Get(ctx, "beta")
		return err == nil && d.State == vmm.StateExporting
	})
	err = m.Unregister(ctx, "beta")
	checkBusy("unregister", err, vmm.KindExport)
	_, err = m.Update(ctx, "beta", vmm.Update{Name: &name})
	checkBusy("rename", err, vmm.KindExport)
	io.Copy(io.Discard, pr)
	if err := <-exported; err != nil {
		t.Fatal(err)
	}
	if err := m.Unregister(ctx, "beta"); err != nil {
		t.Errorf("unregister after the export = %v", err)
	}
}

// TestCancelImport: a cancelled import ends as a failure that says so, and
// leaves nothing behind: no distro, no files, no staging.
func TestCancelImport(t *testing.T) {
	ctx := context.Background()
	b := vmmtest.NewBackend(vmmtest.Config{})
	m, data := newManager(t, b)

	op, finish := blockedImport(t, m, "gamma")
	if d, err := m.Get(ctx, "gamma"); err != nil || d.State != vmm.StateInstalling {
		t.Fatalf("during the import: %+v, %v", d, err)
	}
	cancelled := make(chan vmm.OperationInfo, 1)
	go func() {
		info, _ := m.CancelOperation(ctx, op.ID())
		cancelled <- info
	}()
	// The import is blocked in a read of its body, which the cancel cannot
	// interrupt: it takes effect at the next read, when the uploader sends
	// more (or goes away). Send the rest, as a client would; a write the
	// cancelled import no longer reads fails when the test's cleanup closes
	// the pipe.
	go finish()
	select {
	case <-op.Done():
	case <-time.After(wait):
		t.Fatal("the cancelled import did not end")
	}
	info := <-cancelled
	if info.Status != vmm.StatusFailure || !strings.Contains(info.Error, "cancel") {
		t.Errorf("cancelled import = %+v, want a failure that says it was cancelled", info)
	}
	if !errors.Is(op.Err(), context.Canceled) {
		t.Errorf("operation error %v is not context.Canceled", op.Err())
	}
	if _, err := m.Get(ctx, "gamma"); !errors.Is(err, vmm.ErrNotFound) {
		t.Errorf("Get after a cancelled import = %v, want ErrNotFound", err)
	}
	if list, _ := m.List(ctx); len(list) != 0 {
		t.Errorf("distros after a cancelled import: %+v", list)
	}
	assertNoDistroFiles(t, data)
	if b.Starts() != 0 {
		t.Errorf("a cancelled import started the distro")
	}
	// The name is free again.
	importDistro(t, m, "gamma")
}

// recorder collects a subscription's events as they come.
type recorder struct {
	mu     sync.Mutex
	events []vmm.Event
	done   chan struct{}
}

func record(ch <-chan vmm.Event) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for e := range ch {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
	return r
}

// facts returns the events as "entity: fact" strings, in order: "distro
// one: Running", "distro two: removed", "import two: success". An entity's
// fact repeated in a row (a distro's disk usage changed, an operation's
// progress) is kept once.
func (r *recorder) facts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	last := map[string]string{}
	for _, e := range r.events {
		var entity, fact string
		switch e.Type {
		case "distro":
			entity, fact = "distro "+e.Distro.Name, string(e.Distro.State)
		case "distro-removed":
			entity, fact = "distro "+e.Removed.Name, "removed"
		case "operation":
			entity, fact = e.Operation.Kind+" "+e.Operation.Distro, e.Operation.Status
		default:
			entity, fact = e.Type, "?"
		}
		if last[entity] == fact {
			continue
		}
		last[entity] = fact
		out = append(out, entity+": "+fact)
	}
	return out
}

// waitFact waits until fact has been recorded.
func (r *recorder) waitFact(t *testing.T, fact string) {
	t.Helper()
	testutil.WaitFor(t, wait, "event "+fact, func() bool { return slices.Contains(r.facts(), fact) })
}

// TestEvents: a subscriber gets the state as a snapshot, then every change
// after it, in the order the changes happened: each distro's and each
// operation's steps in order, and no step reported before what caused it.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	b := vmmtest.NewBackend(vmmtest.Config{})
	m, _ := newManager(t, b)
	importDistro(t, m, "one")

	snap, ch, cancel, err := m.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Distros) != 1 || snap.Distros[0].Name != "one" || snap.Distros[0].State != vmm.StateStopped || len(snap.Operations) != 0 {
		t.Fatalf("snapshot = %+v, want distro one stopped and no operation", snap)
	}
	r := record(ch)

	if _, err := m.Start(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	r.waitFact(t, "distro one: Running")

	op, finish := blockedImport(t, m, "two")
	r.waitFact(t, "import two: running")
	r.waitFact(t, "distro two: Installing")
	// Who subscribes now starts from the import under way.
	snap2, _, cancel2, err := m.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel2()
	var two *vmm.Distro
	for i := range snap2.Distros {
		if snap2.Distros[i].Name == "two" {
			two = &snap2.Distros[i]
		}
	}
	if two == nil || two.State != vmm.StateInstalling || len(snap2.Operations) != 1 || snap2.Operations[0].ID != op.ID() {
		t.Errorf("snapshot during the import = %+v, want two Installing and the import running", snap2)
	}

	finish()
	r.waitFact(t, "import two: success")
	r.waitFact(t, "distro two: Stopped")
	if err := m.Terminate(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	r.waitFact(t, "distro one: Stopped")
	if err := m.Unregister(ctx, "two"); err != nil {
		t.Fatal(err)
	}
	r.waitFact(t, "unregister two: success")
	r.waitFact(t, "distro two: removed")
	cancel()
	<-r.done

	facts := r.facts()
	t.Logf("events: %q", facts)
	// Each entity's own steps, in order and nothing else.
	want := map[string][]string{
		"distro one":     {"Running", "Stopped"},
		"distro two":     {"Installing", "Stopped", "Uninstalling", "removed"},
		"import two":     {"running", "success"},
		"unregister two": {"running", "success"},
	}
	got := map[string][]string{}
	index := map[string]int{}
	for i, f := range facts {
		entity, fact, _ := strings.Cut(f, ": ")
		got[entity] = append(got[entity], fact)
		index[f] = i
	}
	for entity, steps := range want {
		if !slices.Equal(got[entity], steps) {
			t.Errorf("%s went %q, want %q", entity, got[entity], steps)
		}
	}
	if len(got) != len(want) {
		t.Errorf("events about %d entities, want %d", len(got), len(want))
	}
	// Across entities, what the calls' order makes certain: a call's events
	// are sent before it returns, so they come before the next call's.
	for _, pair := range [][2]string{
		{"distro one: Running", "import two: running"},
		{"distro one: Running", "distro two: Installing"},
		{"import two: running", "distro two: Stopped"},
		{"distro two: Stopped", "distro one: Stopped"},
		{"distro one: Stopped", "unregister two: running"},
		{"unregister two: running", "distro two: removed"},
	} {
		if index[pair[0]] >= index[pair[1]] {
			t.Errorf("%q came after %q", pair[0], pair[1])
		}
	}
}
