package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestClientVerbsLeaveTheAgent: a client verb never reads the embedded agent;
// reading it copies megabytes out of the binary, which made every verb's
// start several times slower. Only serve (installAgent) asks for it.
func TestClientVerbsLeaveTheAgent(t *testing.T) {
	t.Setenv("SUBSYS_URL", "")
	t.Setenv("SUBSYS_TOKEN", "")
	called := 0
	b := Build{Version: "test", Agent: func() []byte { called++; return []byte("agent") }}
	dir := t.TempDir() // no server: every verb fails to connect, after its start
	for _, args := range [][]string{
		{"version"}, {"list"}, {"run", "-d", "x", "--", "true"}, {"--help"},
	} {
		var out bytes.Buffer
		oldOut, oldErr := stdout, stderr
		stdout, stderr = &out, &out
		root := newRoot(b)
		root.SetArgs(append([]string{"--data", dir}, args...))
		root.SetOut(&out)
		root.SetErr(&out)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		root.ExecuteContext(ctx)
		cancel()
		stdout, stderr = oldOut, oldErr
	}
	if called != 0 {
		t.Errorf("client verbs read the embedded agent %d times, want 0", called)
	}
}

// TestInstallAgent: serve writes the agent Build supplies into the data
// directory under its hash, reads it once, and refuses a build without one.
func TestInstallAgent(t *testing.T) {
	t.Setenv("SUBSYS_AGENT", "")
	dir := t.TempDir()
	called := 0
	b := Build{Agent: func() []byte { called++; return []byte("#!agent\n") }}
	path, err := installAgent(b, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "#!agent\n" {
		t.Errorf("installed agent = %q, %v; want the program Build supplied", got, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("installed agent mode = %v, %v; want 0755", fi.Mode(), err)
	}
	if rel, _ := filepath.Rel(dir, path); filepath.Dir(filepath.Dir(rel)) != "bin" {
		t.Errorf("installed agent at %s, want bin/<hash>/subsys-agent", rel)
	}
	if called != 1 {
		t.Errorf("Agent called %d times, want 1", called)
	}
	for _, b := range []Build{{}, {Agent: func() []byte { return nil }}} {
		if _, err := installAgent(b, t.TempDir()); err == nil {
			t.Error("installAgent without an embedded agent: no error")
		}
	}
}
