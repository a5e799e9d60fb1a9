package vmm

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/agent"
)

func TestAgentProblem(t *testing.T) {
	tests := []struct {
		name     string
		info     agent.Info
		outdated bool
	}{
		{"current", agent.Info{Protocol: agent.ProtocolVersion, Version: "v1"}, false},
		{"current, other build", agent.Info{Protocol: agent.ProtocolVersion, Version: "other"}, false},
		{"older", agent.Info{Protocol: agent.ProtocolVersion - 1, Version: "old"}, true},
		{"before protocol versions (none sent)", agent.Info{Version: "ancient"}, true},
		{"newer", agent.Info{Protocol: agent.ProtocolVersion + 1, Version: "new"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := agentProblem(tc.info)
			if (got != "") != tc.outdated {
				t.Fatalf("agentProblem(%+v) = %q, want outdated %v", tc.info, got, tc.outdated)
			}
			if tc.outdated && (!strings.Contains(got, "terminate") || !strings.Contains(got, tc.info.Version)) {
				t.Errorf("agentProblem(%+v) = %q, want it to name the build and say to terminate", tc.info, got)
			}
		})
	}
	long := agentProblem(agent.Info{Version: strings.Repeat("x", 10000)})
	if len(long) > 400 {
		t.Errorf("agentProblem with a huge build string is %d bytes long", len(long))
	}
}

// TestOutdatedAgentOnAdoption: a distro left running by an older server, whose
// agent says hello with an older protocol version, is re-adopted Running but
// reported (agent_outdated and a message), and gets the new agent at its next
// start.
func TestOutdatedAgentOnAdoption(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(data, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	d := store.Distro{ID: "old1", Name: "old", Version: 1, State: string(StateRunning), Location: filepath.Join(data, "distros", "old1"), DefaultUser: "root"}
	if err := db.CreateDistro(ctx, d); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(d.Location, "rootfs"), 0o755)
	fb := newFakeBackend(t)
	fb.running[d.ID] = fakeAgent(t, agent.ProtocolVersion-1)

	m, err := New(ctx, Config{Store: db, DataDir: data, Backends: map[int]Backend{1: fb}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, err := m.Get(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateRunning || !got.AgentOutdated || !strings.Contains(got.Message, "protocol version") {
		t.Fatalf("re-adopted distro with an old agent = state %s, agent_outdated %v, message %q; want Running, true, a message", got.State, got.AgentOutdated, got.Message)
	}
	// Exec and the rest keep working with it: the distro is not stopped.
	if c, err := m.RunningAgent(ctx, "old"); err != nil || c == nil {
		t.Fatalf("RunningAgent = %v, %v; want the adopted agent", c, err)
	}
	if err := m.Terminate(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get(ctx, "old"); got.AgentOutdated || got.Message != "" {
		t.Errorf("stopped distro = agent_outdated %v, message %q; want neither", got.AgentOutdated, got.Message)
	}
	if got, err = m.Start(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if got.State != StateRunning || got.AgentOutdated || got.Message != "" {
		t.Errorf("after a new start = state %s, agent_outdated %v, message %q; want Running with the current agent", got.State, got.AgentOutdated, got.Message)
	}
}

// TestOutdatedAgentOnStart: Start adopts an agent that still answers on its
// socket (a backend's Start does), and that agent is checked too.
func TestOutdatedAgentOnStart(t *testing.T) {
	fb := newFakeBackend(t)
	m, db, data := newTestManager(t, map[int]Backend{1: fb})
	ctx := context.Background()
	d := store.Distro{ID: "s1", Name: "s", Version: 1, State: string(StateStopped), Location: filepath.Join(data, "distros", "s1"), DefaultUser: "root"}
	if err := db.CreateDistro(ctx, d); err != nil {
		t.Fatal(err)
	}
	fb.running[d.ID] = fakeAgent(t, agent.ProtocolVersion+1)
	got, err := m.Start(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if !got.AgentOutdated || got.Message == "" {
		t.Errorf("Start adopting a newer agent = agent_outdated %v, message %q; want it reported", got.AgentOutdated, got.Message)
	}
}
