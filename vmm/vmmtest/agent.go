package vmmtest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/subsys-dev/subsys/internal/testutil"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// Agent is a real agent.Server running in the test process, reachable over
// unix socket pairs: each Connect makes a new pair, serves one end with
// ServeConn and returns a client on the other, as a new connection to a
// distro's agent socket would. It does not run as PID 1 (agent.RunInit): no
// namespaces, no mounts, no pivot_root, so it needs no root. Processes it
// starts run on the host as the user the agent's passwd file names (see
// Tarball).
//
// The agent's reaper collects every child of the test process (see
// agent.Server): a test binary that uses an Agent must not start and wait
// for children of its own (os/exec's Wait would fail with ECHILD).
type Agent struct {
	srv *agent.Server
	// ctx ends every connection; cancel is called by Stop and by a
	// client's shutdown request.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed once Stop has finished
	once   sync.Once

	// mu orders Connect's conns.Add before Stop's conns.Wait: once stopped
	// is set, no connection is added.
	mu      sync.Mutex
	stopped bool
	conns   sync.WaitGroup // ServeConn goroutines
}

// StartAgent starts an agent with cfg (nil Logger: its log is discarded, so
// that every exec does not fill the test's output). It ends, as a distro's
// agent does, when a client asks for shutdown or Stop is called.
func StartAgent(cfg agent.ServerConfig) *Agent {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{srv: agent.NewServer(cfg), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	// A shutdown request ends the agent from the inside, as RunInit does: the
	// client's Shutdown returns once its connection closes.
	go func() {
		select {
		case <-a.srv.ShutdownRequested():
			a.Stop()
		case <-a.done:
		}
	}()
	return a
}

// Connect opens a new connection to the agent and returns its client; the
// caller closes it. It fails once the agent has stopped.
func (a *Agent) Connect() (*agent.Client, error) {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return nil, fmt.Errorf("connect to agent: %w", agent.ErrDisconnected)
	}
	a.conns.Add(1)
	a.mu.Unlock()
	srvEnd, cliEnd, err := testutil.NewSocketPair()
	if err != nil {
		a.conns.Done()
		return nil, err
	}
	go func() {
		defer a.conns.Done()
		a.srv.ServeConn(a.ctx, srvEnd) // closes srvEnd
	}()
	c, err := agent.NewClient(cliEnd)
	if err != nil {
		cliEnd.Close()
		return nil, err
	}
	return c, nil
}

// Server returns the agent.Server, for tests that look at its state.
func (a *Agent) Server() *agent.Server { return a.srv }

// Stop ends the agent: its terminal sessions (killing their programs) and
// every connection, and waits for them. Processes started by exec are not
// killed — without a PID namespace the agent cannot tell them all — but
// lose their streams; tests should run programs that end. Stop may be called
// more than once.
func (a *Agent) Stop() {
	a.once.Do(func() {
		a.mu.Lock()
		a.stopped = true
		a.mu.Unlock()
		a.srv.Close()
		a.cancel()
		a.conns.Wait()
		close(a.done)
	})
	<-a.done
}

// Done is closed once the agent has stopped.
func (a *Agent) Done() <-chan struct{} { return a.done }

// ServeAgent starts an agent with cfg for one test and returns a client
// connected to it; the test's cleanup closes the client and stops the agent.
// It is the setup that tests of the agent protocol's users share: a real
// agent over a socket pair, without root.
func ServeAgent(t testing.TB, cfg agent.ServerConfig) (*agent.Client, *Agent) {
	t.Helper()
	a := StartAgent(cfg)
	c, err := a.Connect()
	if err != nil {
		a.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		a.Stop()
	})
	return c, a
}
