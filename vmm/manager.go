package vmm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/archive"
)

// Store is the slice of store.DB that vmm uses.
type Store interface {
	CreateDistro(ctx context.Context, d store.Distro) error
	Distro(ctx context.Context, name string) (store.Distro, error)
	Distros(ctx context.Context) ([]store.Distro, error)
	UpdateDistro(ctx context.Context, d store.Distro) error
	SetDistroState(ctx context.Context, id, state string) error
	SetDistroLimits(ctx context.Context, id string, memoryMax int64, cpuMax float64, pidsMax int64) error
	DeleteDistro(ctx context.Context, id string) error
	Setting(ctx context.Context, key string) (string, error)
	SetSetting(ctx context.Context, key, value string) error
	DeleteSetting(ctx context.Context, key string) error
	SaveOperation(ctx context.Context, op store.Operation) error
	Operation(ctx context.Context, id string) (store.Operation, error)
	FailUnfinishedOperations(ctx context.Context, running, failed, msg string) error
	Audit(ctx context.Context, e store.AuditEntry) error
}

// settingDefaultDistro holds the id of the default distro.
const settingDefaultDistro = "default_distro"

// Config configures a Manager.
type Config struct {
	// Store keeps the metadata. Required.
	Store Store
	// DataDir holds distros/ and tmp/. Required; a relative path is made
	// absolute (against the working directory when New runs).
	DataDir string
	// Backends runs distros, by version (1, 2). A version without one cannot be imported or started.
	Backends map[int]Backend
	// Limits bounds archive expansion; zero fields take archive's defaults.
	// Its reserve fields are taken from the settings (import_reserve_bytes,
	// import_reserve_percent) at each import.
	Limits archive.Limits
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Manager runs distros and their operations. It is safe for concurrent use.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	ctx  context.Context // parent of every operation; cancelled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu  sync.Mutex
	ops map[string]*Operation // every operation since start, by id
	// opsByDistro holds, by distro id, the running operation that has the
	// distro to itself, from beginOperation to endOperation: one at a time,
	// so that a second operation or a rename meanwhile gets a BusyError
	// naming the first. (Start and stop serialize on starts instead.)
	opsByDistro map[string]*Operation
	clients     map[string]*agent.Client // distro id → its running agent
	// outdated holds, by distro id, why a running distro's agent is outdated
	// (agentProblem); set by adopt, cleared when that agent goes.
	outdated map[string]string
	starts   map[string]*sync.Mutex // distro id → serialises start and stop
	states   map[string]State       // distro id → transient state while an operation runs

	events  eventBus
	sampler sampler
}

// New opens the manager: it finishes what a crash interrupted (half-imported distros
// are removed, half-removed ones are removed fully, the staging area is emptied,
// operations that were running are marked failed) and re-adopts running distros.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir == "" {
		return nil, errors.New("vmm: Config.DataDir is required")
	}
	// Every path derived from it is stored (a distro's location) or handed to
	// processes that run elsewhere (the agent runs in /): it must not depend
	// on the working directory.
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory %q: %w", cfg.DataDir, err)
	}
	cfg.DataDir = dataDir
	for _, dir := range []string{cfg.distrosDir(), cfg.tmpDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
		// Distros' trees hold setuid programs and device nodes: only root
		// may reach them. An older server, or a hand, may have opened these.
		tightened, err := securePrivateDir(dir)
		if err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		if tightened {
			cfg.Logger.Warn("directory was open to other users; made it private (0700)", "path", dir)
		}
	}
	mctx, stop := context.WithCancel(context.Background())
	m := &Manager{cfg: cfg, log: cfg.Logger, ctx: mctx, stop: stop,
		ops: map[string]*Operation{}, opsByDistro: map[string]*Operation{}, clients: map[string]*agent.Client{}, outdated: map[string]string{},
		starts: map[string]*sync.Mutex{}, states: map[string]State{},
		events:  eventBus{subs: map[chan Event]struct{}{}, last: map[string]Distro{}, ops: map[string]OperationInfo{}},
		sampler: sampler{states: map[string]*usageState{}}}
	if err := m.recover(ctx); err != nil {
		stop()
		return nil, err
	}
	m.wg.Add(2)
	go func() { defer m.wg.Done(); m.runSampler(mctx) }()
	go func() { defer m.wg.Done(); m.runProgress(mctx) }()
	return m, nil
}

func (c Config) distrosDir() string { return filepath.Join(c.DataDir, "distros") }
func (c Config) tmpDir() string     { return filepath.Join(c.DataDir, "tmp") }

// Close cancels running operations and waits for them and for every goroutine the
// manager owns. Running distros keep running: the next server re-adopts them.
func (m *Manager) Close() error {
	m.stop()
	m.mu.Lock()
	clients := m.clients
	m.clients = map[string]*agent.Client{}
	m.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
	m.wg.Wait()
	m.closeSubscribers()
	return nil
}

func (m *Manager) recover(ctx context.Context) error {
	if err := m.cfg.Store.FailUnfinishedOperations(ctx, StatusRunning, StatusFailure, "the server stopped before the operation ended"); err != nil {
		return err
	}
	// A move a crash stopped is finished or undone from its journal in
	// tmp/ (move.go), before tmp/ is emptied and the distros are looked at.
	if err := m.recoverMoves(ctx); err != nil {
		return err
	}
	entries, err := os.ReadDir(m.cfg.tmpDir())
	if err != nil {
		return fmt.Errorf("read staging area: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(m.cfg.tmpDir(), e.Name())
		m.log.Info("removing leftover staging entry", "path", p)
		// A half-imported tree is the distro's work: archive.RemoveAll
		// holds a bounded number of descriptors however deep it is.
		if err := archive.RemoveAll(p); err != nil {
			m.log.Warn("cannot remove leftover staging entry", "path", p, "err", err)
		}
	}
	rows, err := m.cfg.Store.Distros(ctx)
	if err != nil {
		return err
	}
	for _, d := range rows {
		switch State(d.State) {
		case StateInstalling, StateUninstalling:
			m.log.Info("removing distro left incomplete by a crash", "distro", d.Name, "state", d.State)
			m.removeFiles(d)
			if err := m.cfg.Store.DeleteDistro(ctx, d.ID); err != nil {
				return err
			}
			continue
		}
		m.checkLocation(d)
		m.removeLeftovers(d)
		state := StateStopped
		if b, ok := m.cfg.Backends[d.Version]; ok {
			c, err := b.Connect(ctx, m.spec(d))
			if err == nil {
				m.adopt(ctx, d, c)
				state = StateRunning
			} else if !errors.Is(err, ErrNotRunning) {
				m.log.Warn("cannot re-adopt distro", "distro", d.Name, "err", err)
			}
		}
		if State(d.State) != state {
			if err := m.cfg.Store.SetDistroState(ctx, d.ID, string(state)); err != nil {
				return err
			}
		}
		if state == StateRunning {
			m.log.Info("re-adopted running distro", "distro", d.Name)
		}
	}
	m.recoverSnapshots(ctx)
	return m.fixDefault(ctx)
}

// checkLocation makes an existing distro's directory private (0700) when it
// is not, and warns when the directories above a location of the user's let
// another user swap it.
func (m *Manager) checkLocation(d store.Distro) {
	tightened, err := securePrivateDir(d.Location)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		m.log.Warn("distro directory is not private", "distro", d.Name, "err", err)
	case tightened:
		m.log.Warn("distro directory was open to other users; made it private (0700)", "distro", d.Name, "path", d.Location)
	}
	if d.Location != filepath.Join(m.cfg.distrosDir(), d.ID) {
		if why := unsafeParents(d.Location); why != "" {
			m.log.Warn("another user can swap the distro's location: move the distro (export, unregister, import) to a safe place", "distro", d.Name, "path", d.Location, "why", why)
		}
	}
}

// removeFiles deletes a distro's files: its whole directory when it lives in the
// data directory, else only what subsys made in the user's location (either
// version's files, staging, temporary files: madeFiles).
func (m *Manager) removeFiles(d store.Distro) {
	var paths []string
	if d.Location == filepath.Join(m.cfg.distrosDir(), d.ID) {
		paths = []string{d.Location}
	} else {
		paths = madeIn(d.Location, "")
	}
	for _, p := range paths {
		// Not os.RemoveAll: it holds a descriptor per level, and a distro
		// can make a tree deeper than the server's RLIMIT_NOFILE.
		if err := archive.RemoveAll(p); err != nil {
			m.log.Warn("cannot remove distro files", "distro", d.Name, "path", p, "err", err)
		}
	}
	if d.Location != filepath.Join(m.cfg.distrosDir(), d.ID) {
		os.Remove(d.Location) // only when empty: it is the user's folder
	}
}

// stagingName is where an import into a user-chosen location is built before it
// is renamed to rootfs (the data directory's tmp/ may be on another file system).
const stagingName = ".subsys-staging"

// DiskImageName is the file name of a version 2 distro's ext4 image in its location.
const DiskImageName = "disk.img"

func (m *Manager) spec(d store.Distro) Spec {
	return Spec{ID: d.ID, Name: d.Name, Version: d.Version, RootFS: filepath.Join(d.Location, "rootfs"), Disk: filepath.Join(d.Location, DiskImageName), Limits: limitsOf(d), Systemd: d.Systemd}
}

// adopt records a live agent for distro d and watches it: when it goes away on
// its own (killed, crashed) the distro is marked Stopped. An agent that speaks
// another protocol version than this server's (left running by an older
// server) is kept, and the distro shows AgentOutdated until its next start.
func (m *Manager) adopt(ctx context.Context, d store.Distro, c *agent.Client) {
	id := d.ID
	problem := ""
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	info, err := c.Hello(hctx)
	cancel()
	if err != nil {
		m.log.Warn("adopted agent does not say hello", "distro", d.Name, "err", err)
	} else if problem = agentProblem(info); problem != "" {
		m.log.Warn("distro runs an outdated agent", "distro", d.Name, "agent_protocol", info.Protocol, "agent_version", info.Version, "protocol", agent.ProtocolVersion)
	}
	m.mu.Lock()
	if old := m.clients[id]; old != nil && old != c {
		old.Close()
	}
	m.clients[id] = c
	if problem != "" {
		m.outdated[id] = problem
	} else {
		delete(m.outdated, id)
	}
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-c.Done():
		case <-m.ctx.Done():
			return
		}
		m.mu.Lock()
		gone := m.clients[id] == c
		if gone {
			delete(m.clients, id)
			delete(m.outdated, id)
		}
		m.mu.Unlock()
		if gone {
			ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
			defer cancel()
			if err := m.cfg.Store.SetDistroState(ctx, id, string(StateStopped)); err != nil && !errors.Is(err, store.ErrNotFound) {
				m.log.Warn("cannot record distro stop", "id", id, "err", err)
			}
			m.publishChanges(ctx)
		}
	}()
}

// agentProblem says why an agent that answered hello with info cannot serve
// this server as it is, or "" when it can. Agents of another protocol
// version (ProtocolVersion changes with the wire format) are outdated.
func agentProblem(info agent.Info) string {
	if info.Protocol == agent.ProtocolVersion {
		return ""
	}
	v := info.Version
	if len(v) > 64 {
		v = v[:64]
	}
	return fmt.Sprintf("the distro runs an agent of protocol version %d (build %q) and this server speaks version %d: terminate the distro and start it again to give it the new agent",
		info.Protocol, v, agent.ProtocolVersion)
}

func (m *Manager) client(id string) *agent.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clients[id]
}

func (m *Manager) startLock(id string) *sync.Mutex {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.starts[id]
	if l == nil {
		l = &sync.Mutex{}
		m.starts[id] = l
	}
	return l
}

// row returns the store row for name, mapping store.ErrNotFound to ErrNotFound.
func (m *Manager) row(ctx context.Context, name string) (store.Distro, error) {
	d, err := m.cfg.Store.Distro(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return d, fmt.Errorf("%w: no distro named %q", ErrNotFound, name)
	}
	return d, err
}

func (m *Manager) view(d store.Distro, defaultID string) Distro {
	m.mu.Lock()
	state := State(d.State)
	if s, ok := m.states[d.ID]; ok {
		state = s
	} else if state == StateRunning || state == StateStopped {
		state = StateStopped
		if m.clients[d.ID] != nil {
			state = StateRunning
		}
	}
	problem := m.outdated[d.ID]
	if state != StateRunning {
		problem = ""
	}
	m.mu.Unlock()
	v := Distro{Name: d.Name, ID: d.ID, Version: d.Version, State: state, Default: d.ID == defaultID,
		Location: d.Location, DefaultUser: d.DefaultUser, Systemd: d.Systemd, CreatedAt: d.CreatedAt,
		MemoryMax: d.MemoryMax, CPUMax: d.CPUMax, PidsMax: d.PidsMax,
		AgentOutdated: problem != "", Message: problem}
	m.usageOf(&v)
	return v
}

func (m *Manager) defaultID(ctx context.Context) string {
	id, _ := m.cfg.Store.Setting(ctx, settingDefaultDistro)
	return id
}

// List returns every distro, ordered by name.
func (m *Manager) List(ctx context.Context) ([]Distro, error) {
	rows, err := m.cfg.Store.Distros(ctx)
	if err != nil {
		return nil, err
	}
	def := m.defaultID(ctx)
	out := make([]Distro, 0, len(rows))
	for _, d := range rows {
		out = append(out, m.view(d, def))
	}
	return out, nil
}

// Get returns the distro named name.
func (m *Manager) Get(ctx context.Context, name string) (Distro, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return Distro{}, err
	}
	return m.view(d, m.defaultID(ctx)), nil
}

// Default returns the default distro, or ErrNotFound when there is none.
func (m *Manager) Default(ctx context.Context) (Distro, error) {
	id := m.defaultID(ctx)
	list, err := m.List(ctx)
	if err != nil {
		return Distro{}, err
	}
	for _, d := range list {
		if d.ID == id {
			return d, nil
		}
	}
	return Distro{}, fmt.Errorf("%w: there is no default distro; import one first", ErrNotFound)
}

// fixDefault makes sure the default points at an existing, installed distro when
// there is one, the way WSL makes the first distro the default.
func (m *Manager) fixDefault(ctx context.Context) error {
	rows, err := m.cfg.Store.Distros(ctx)
	if err != nil {
		return err
	}
	id := m.defaultID(ctx)
	var candidates []store.Distro
	for _, d := range rows {
		if d.ID == id {
			return nil
		}
		if State(d.State) != StateInstalling && State(d.State) != StateUninstalling {
			candidates = append(candidates, d)
		}
	}
	if len(candidates) == 0 {
		return m.cfg.Store.DeleteSetting(ctx, settingDefaultDistro)
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].CreatedAt.Before(candidates[j].CreatedAt) })
	return m.cfg.Store.SetSetting(ctx, settingDefaultDistro, candidates[0].ID)
}

// audit records a state change; failures are logged, never returned, so that a
// full audit table cannot stop the work itself.
// Audit records in the audit log that the context's actor (WithActor) did
// action to target; network changes made outside vmm are logged through it. A
// failed write is logged, not returned: the change itself has happened.
func (m *Manager) Audit(ctx context.Context, action, target, detail string) {
	m.audit(ctx, action, target, detail)
}

func (m *Manager) audit(ctx context.Context, action, target, detail string) {
	actor, _ := ctx.Value(actorKey{}).(string)
	if actor == "" {
		actor = "system"
	}
	if err := m.cfg.Store.Audit(context.WithoutCancel(ctx), store.AuditEntry{Actor: actor, Action: action, Target: target, Detail: detail}); err != nil {
		m.log.Warn("audit log write failed", "action", action, "target", target, "err", err)
	}
}

type actorKey struct{}

// WithActor returns a context that names who asks, for the audit log.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// beginOperation takes distro id's operation lock for a new operation and, when
// state is not empty, shows that state while it runs. The caller must call end.
func (m *Manager) beginOperation(kind string, d store.Distro, state State) (*Operation, context.Context, error) {
	return m.beginOp(kind, d, state, false)
}

// beginExclusive is beginOperation for work on a stopped distro's files that
// must not run meanwhile (a version change, a copy of its disk image): it
// fails with ErrBusy, saying why (what) and how to stop it, when the distro
// runs, and no start succeeds until the operation ends (ensureRunning). The
// start lock makes the check and the operation's beginning one step.
func (m *Manager) beginExclusive(kind string, d store.Distro, state State, what string) (*Operation, context.Context, error) {
	l := m.startLock(d.ID)
	l.Lock()
	defer l.Unlock()
	if m.client(d.ID) != nil {
		return nil, nil, fmt.Errorf("%w: distro %q is running and %s: stop it first with `subsys terminate %s`", ErrBusy, d.Name, what, d.Name)
	}
	return m.beginOp(kind, d, state, true)
}

func (m *Manager) beginOp(kind string, d store.Distro, state State, exclusive bool) (*Operation, context.Context, error) {
	ctx, cancel := context.WithCancel(m.ctx)
	op := newOperation(uuid.NewString(), kind, d.Name, cancel)
	op.exclusive = exclusive
	m.mu.Lock()
	if held := m.opsByDistro[d.ID]; held != nil {
		m.mu.Unlock()
		cancel()
		return nil, nil, &BusyError{Distro: d.Name, Op: held.Info()}
	}
	m.opsByDistro[d.ID] = op
	m.ops[op.id] = op
	if state != "" {
		m.states[d.ID] = state
	}
	m.mu.Unlock()
	if err := m.cfg.Store.SaveOperation(ctx, store.Operation{ID: op.id, Kind: kind, Distro: d.Name, Status: StatusRunning, CreatedAt: op.created}); err != nil {
		m.mu.Lock()
		delete(m.opsByDistro, d.ID)
		delete(m.states, d.ID)
		m.mu.Unlock()
		cancel()
		return nil, nil, err
	}
	m.publishOperation(op)
	m.publishChanges(ctx)
	return op, ctx, nil
}

// endOperation records the result, releases the distro's lock and only then
// ends the operation for everyone who waits on it or polls it (WaitOperation,
// GET /operations/{id}, the events stream): a client told the operation ended
// can act on the distro at once, and never finds it still held.
func (m *Manager) endOperation(op *Operation, distroID string, err error) {
	if err != nil && errors.Is(err, context.Canceled) && m.ctx.Err() == nil {
		err = fmt.Errorf("cancelled: %w", err)
	}
	info := op.final(err)
	if serr := m.cfg.Store.SaveOperation(context.Background(), store.Operation{ID: info.ID, Kind: info.Kind, Distro: info.Distro,
		Status: info.Status, Done: info.Progress.Done, Total: info.Progress.Total, Error: info.Error, CreatedAt: info.CreatedAt}); serr != nil {
		m.log.Warn("cannot save operation result", "op", op.id, "err", serr)
	}
	m.mu.Lock()
	if m.opsByDistro[distroID] == op {
		delete(m.opsByDistro, distroID)
		delete(m.states, distroID)
	}
	m.mu.Unlock()
	op.finish(err)
	m.publishOperation(op)
	m.publishChanges(m.ctx)
	if err != nil {
		m.log.Warn("operation failed", "op", op.id, "kind", op.kind, "distro", op.distro, "err", err)
	} else {
		m.log.Info("operation done", "op", op.id, "kind", op.kind, "distro", op.distro)
	}
}

// Operation returns a snapshot of operation id.
func (m *Manager) Operation(ctx context.Context, id string) (OperationInfo, error) {
	m.mu.Lock()
	op := m.ops[id]
	m.mu.Unlock()
	if op != nil {
		return op.Info(), nil
	}
	r, err := m.cfg.Store.Operation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return OperationInfo{}, fmt.Errorf("%w: no operation %q", ErrNotFound, id)
	}
	if err != nil {
		return OperationInfo{}, err
	}
	return OperationInfo{ID: r.ID, Kind: r.Kind, Distro: r.Distro, Status: r.Status,
		Progress: Progress{Done: r.Done, Total: r.Total}, Error: r.Error, CreatedAt: r.CreatedAt}, nil
}

// WaitOperation waits up to timeout (or until ctx ends) for operation id to end and
// returns its snapshot either way.
func (m *Manager) WaitOperation(ctx context.Context, id string, timeout time.Duration) (OperationInfo, error) {
	m.mu.Lock()
	op := m.ops[id]
	m.mu.Unlock()
	if op != nil && timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-op.Done():
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return m.Operation(ctx, id)
}

// CancelOperation asks a running operation to stop; its cleanup then runs as for
// any failure. Cancelling an ended operation is a no-op.
func (m *Manager) CancelOperation(ctx context.Context, id string) (OperationInfo, error) {
	m.mu.Lock()
	op := m.ops[id]
	m.mu.Unlock()
	if op == nil {
		return m.Operation(ctx, id)
	}
	op.requestCancel()
	m.audit(ctx, "cancel", op.distro, "operation "+id)
	select {
	case <-op.Done():
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	return op.Info(), nil
}
