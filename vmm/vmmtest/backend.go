// Package vmmtest provides test doubles for package vmm that need no root.
//
// Backend is a vmm.Backend whose distros are real agents (agent.Server) run
// in the test process and reached over unix socket pairs, so that tests of
// vmm's lifecycle — import, start, exec, terminate, unregister, operations
// and events — and of its users (server) run the real protocol and real
// processes as an ordinary user. It is a test double, not a backend: there
// are no namespaces, no mounts and no pivot into the distro's root, so a
// distro's processes are the host's programs (found on the host's PATH),
// run as the test's own user and see the host's file system; the distro's
// root serves only for its accounts (etc/passwd, etc/group). Nothing is
// confined. Tarball makes a root whose accounts the agent can run.
//
// ServeAgent and Agent are the same agent for tests that want a client
// without a Manager.
//
// Only tests import this package. Because the agent's reaper collects every
// child of the process, a test binary that uses it must not start and wait
// for children of its own.
package vmmtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// Config configures a Backend.
type Config struct {
	// Logger receives the agents' logs; nil discards them.
	Logger *slog.Logger
	// BeforeStart, when set, runs at the start of every Start that would
	// start a new agent; an error fails that Start. Tests use it to make a
	// start slow or fail.
	BeforeStart func(ctx context.Context, s vmm.Spec) error
}

// Backend runs each distro as an in-process Agent. It is safe for
// concurrent use. Distros outlive a Manager, as real ones outlive the
// server: a new Manager given the same Backend re-adopts them (Connect).
type Backend struct {
	cfg Config

	mu     sync.Mutex
	locks  map[string]*sync.Mutex // distro id → serializes its Start, Connect and Stop
	agents map[string]*Agent      // distro id → its running agent
	starts int                    // agents started
	forgot []string               // distro ids passed to Forget, in order
}

var (
	_ vmm.Backend   = (*Backend)(nil)
	_ vmm.Forgetter = (*Backend)(nil)
)

// NewBackend returns a Backend with no distro running. Close it when done.
func NewBackend(cfg Config) *Backend {
	return &Backend{cfg: cfg, locks: map[string]*sync.Mutex{}, agents: map[string]*Agent{}}
}

// Start connects to the distro's agent, starting one when none runs. The
// agent looks users up in the distro's own etc/passwd and etc/group (host
// paths under s.RootFS), as the real agent does once it has pivoted into
// the root; it runs programs from the host's PATH, though.
func (b *Backend) Start(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	defer b.lock(s.ID)()
	if a := b.Agent(s.ID); a != nil {
		return a.Connect()
	}
	if b.cfg.BeforeStart != nil {
		if err := b.cfg.BeforeStart(ctx, s); err != nil {
			return nil, fmt.Errorf("start distro %q: %w", s.Name, err)
		}
	}
	// The real agent cannot start without its root: a start before the
	// import has put it in place must fail here too.
	if fi, err := os.Stat(s.RootFS); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("start distro %q: root file system %q is not a directory", s.Name, s.RootFS)
	}
	a := StartAgent(agent.ServerConfig{
		Logger:     b.cfg.Logger,
		PasswdFile: filepath.Join(s.RootFS, "etc", "passwd"),
		GroupFile:  filepath.Join(s.RootFS, "etc", "group"),
	})
	c, err := a.Connect()
	if err != nil {
		a.Stop()
		return nil, fmt.Errorf("start distro %q: %w", s.Name, err)
	}
	b.mu.Lock()
	b.agents[s.ID] = a
	b.starts++
	b.mu.Unlock()
	return c, nil
}

// Connect connects to the distro's running agent, or returns an error
// wrapping vmm.ErrNotRunning.
func (b *Backend) Connect(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	defer b.lock(s.ID)()
	a := b.Agent(s.ID)
	if a == nil {
		return nil, fmt.Errorf("connect distro %q: %w", s.Name, vmm.ErrNotRunning)
	}
	return a.Connect()
}

// Stop asks the distro's agent to shut down through the protocol, as the
// real backend does, and waits until it has. Stopping a distro that is not
// running is not an error.
func (b *Backend) Stop(ctx context.Context, s vmm.Spec) error {
	defer b.lock(s.ID)()
	b.mu.Lock()
	a := b.agents[s.ID]
	delete(b.agents, s.ID)
	b.mu.Unlock()
	if a == nil {
		return nil
	}
	c, err := a.Connect()
	if err == nil {
		err = c.Shutdown(ctx)
		c.Close()
	}
	if err != nil && !errors.Is(err, agent.ErrDisconnected) {
		// The real backend kills an agent that does not answer.
		a.Stop()
		return fmt.Errorf("stop distro %q: %w", s.Name, err)
	}
	select {
	case <-a.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop distro %q: %w", s.Name, ctx.Err())
	}
}

// Forget records that vmm forgot the distro (unregister).
func (b *Backend) Forget(ctx context.Context, s vmm.Spec) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forgot = append(b.forgot, s.ID)
	return nil
}

// Crash stops the distro's agent without vmm asking, as if it had died: vmm
// sees its connections close. It reports whether the distro was running.
func (b *Backend) Crash(id string) bool {
	b.mu.Lock()
	a := b.agents[id]
	delete(b.agents, id)
	b.mu.Unlock()
	if a == nil {
		return false
	}
	a.Stop()
	return true
}

// Agent returns the distro's running agent, or nil.
func (b *Backend) Agent(id string) *Agent {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a := b.agents[id]; a != nil && !stopped(a) {
		return a
	}
	return nil
}

// Running returns the ids of the distros whose agent runs, sorted.
func (b *Backend) Running() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	for id, a := range b.agents {
		if !stopped(a) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Starts returns how many agents the Backend has started.
func (b *Backend) Starts() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.starts
}

// Forgotten returns the ids passed to Forget, in order.
func (b *Backend) Forgotten() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.forgot)
}

// Close stops every agent. Distros then count as not running.
func (b *Backend) Close() error {
	b.mu.Lock()
	agents := b.agents
	b.agents = map[string]*Agent{}
	b.mu.Unlock()
	for _, a := range agents {
		a.Stop()
	}
	return nil
}

// lock serializes the calls for one distro, as the real backend does, and
// returns the unlock. A slow BeforeStart holds up only its own distro.
func (b *Backend) lock(id string) func() {
	b.mu.Lock()
	l := b.locks[id]
	if l == nil {
		l = &sync.Mutex{}
		b.locks[id] = l
	}
	b.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// stopped reports whether a has stopped (a shutdown request ends it from
// inside, without the Backend knowing).
func stopped(a *Agent) bool {
	select {
	case <-a.Done():
		return true
	default:
		return false
	}
}
