package ns

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/vmm"
)

// TestForgetRemovesRunFiles: after a distro has run, its run directory keeps
// its agent log (a stop keeps it for post-mortems); Forget, at unregister,
// removes it and every other file of the distro there. Before, 160
// import/unregister cycles left 160 logs.
func TestForgetRemovesRunFiles(t *testing.T) {
	e := newEnv(t, "forgotten")
	c := e.start(t)
	shOut(t, c, "true")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.b.Stop(ctx, e.spec); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.RunDir, e.spec.ID+".log")); err != nil {
		t.Fatalf("no agent log after a run and a stop (%v): this test proves nothing", err)
	}
	if err := e.b.Forget(ctx, e.spec); err != nil {
		t.Fatalf("Forget = %v", err)
	}
	entries, _ := os.ReadDir(e.cfg.RunDir)
	for _, ent := range entries {
		if strings.HasPrefix(ent.Name(), e.spec.ID) {
			t.Errorf("%s left in the run directory after Forget", ent.Name())
		}
	}
	e.b.mu.Lock()
	_, kept := e.b.locks[e.spec.ID]
	e.b.mu.Unlock()
	if kept {
		t.Errorf("the backend still holds a lock for the forgotten distro")
	}
	if err := e.b.Forget(ctx, e.spec); err != nil {
		t.Errorf("Forget of a forgotten distro = %v, want nil", err)
	}
}

// TestRelativePaths: a backend configured with relative paths (serve --data
// ./mydata) starts distros: the agent runs in /, so its path must be made
// absolute first. Before, every start failed with "fork/exec
// mydata/bin/…/subsys-agent: no such file or directory".
func TestRelativePaths(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	bin, err := os.ReadFile(agentPath)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "mydata", "bin"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "mydata", "bin", "subsys-agent"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	b := New(Config{AgentPath: "mydata/bin/subsys-agent", RunDir: "mydata/run"})
	spec := vmm.Spec{ID: "rel", Name: "rel", RootFS: makeRootFS(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start with relative paths = %v", err)
	}
	defer c.Close()
	if got := shOut(t, c, "echo ok"); got != "ok\n" {
		t.Errorf("exec = %q, want ok", got)
	}
	if err := b.Stop(ctx, spec); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if err := b.Forget(ctx, spec); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Forget = %v", err)
	}
}
