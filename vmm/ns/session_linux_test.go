package ns

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/vmm/agent"
)

// term collects an attachment's output in the background.
type term struct {
	*agent.Attachment
	out syncBuffer
}

func attachTerm(t *testing.T, c *agent.Client, id string) *term {
	t.Helper()
	a, err := c.AttachSession(context.Background(), id)
	if err != nil {
		t.Fatalf("AttachSession = %v", err)
	}
	tm := &term{Attachment: a}
	go io.Copy(&tm.out, a.Output())
	t.Cleanup(func() { a.Close() })
	return tm
}

func (tm *term) run(t *testing.T, line, want string) {
	t.Helper()
	if _, err := io.WriteString(tm.Input(), line+"\n"); err != nil {
		t.Fatalf("type %q: %v", line, err)
	}
	tm.expect(t, want)
}

func (tm *term) expect(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(tm.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q:\n%q", want, tm.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A terminal session lives in the distro's agent: it survives the server
// (a new Backend, a new connection) and is reattached with its scrollback.
func TestSessionAcrossServerRestart(t *testing.T) {
	e := newEnv(t, "sessions")
	c := e.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := c.OpenSession(ctx, agent.SessionRequest{ExecRequest: agent.ExecRequest{Login: true, User: "alice", Cols: 100, Rows: 30}})
	if err != nil {
		t.Fatalf("OpenSession = %v", err)
	}
	if info.User != "alice" || len(info.Argv) != 1 || info.Argv[0] != "-sh" {
		t.Errorf("OpenSession = %+v, want alice's login shell", info)
	}
	tm := attachTerm(t, c, info.ID)
	tm.run(t, "echo \"$0 $(id -un) $TERM $(tty)\"; stty size", "30 100\r\n")
	if !regexp.MustCompile(`-sh alice xterm-256color /dev/pts/\d+\r\n`).MatchString(tm.out.String()) {
		t.Errorf("session printed %q", tm.out.String())
	}
	tm.run(t, "echo 'before-restart'", "before-restart\r\n")
	c.Close()

	b2 := New(e.cfg)
	e.b = b2
	c2, err := b2.Connect(ctx, e.spec)
	if err != nil {
		t.Fatalf("Connect = %v", err)
	}
	defer c2.Close()
	waitFor(t, func() bool {
		infos, err := c2.Sessions(ctx)
		return err == nil && len(infos) == 1 && infos[0].ID == info.ID && !infos[0].Attached
	})
	again := attachTerm(t, c2, info.ID)
	again.expect(t, "before-restart\r\n")
	again.run(t, "echo 'after-restart'", "after-restart\r\n")

	again.run(t, "sleep 100", "sleep 100\r\n")
	waitFor(t, func() bool { return strings.Contains(shOut(t, c2, "ps -o args"), "sleep 100") })
	if err := again.Signal("INT"); err != nil {
		t.Fatal(err)
	}
	again.run(t, "echo status=$?", "status=130\r\n")

	if err := c2.KillSession(ctx, info.ID); err != nil {
		t.Fatalf("KillSession = %v", err)
	}
	if st, err := again.Wait(); err != nil || st.Signal != "HUP" {
		t.Errorf("Wait after KillSession = %+v, %v, want HUP", st, err)
	}
	if infos, err := c2.Sessions(ctx); err != nil || len(infos) != 0 {
		t.Errorf("Sessions after KillSession = %+v, %v, want none", infos, err)
	}
	if _, err := c2.AttachSession(ctx, info.ID); !errors.Is(err, agent.ErrSessionNotFound) {
		t.Errorf("AttachSession after KillSession = %v, want ErrSessionNotFound", err)
	}
}

// Stopping a distro ends its sessions promptly, attached or not.
func TestSessionsEndWithDistro(t *testing.T) {
	e := newEnv(t, "sessionstop")
	c := e.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 2 {
		if _, err := c.OpenSession(ctx, agent.SessionRequest{ExecRequest: agent.ExecRequest{Argv: []string{"sh"}}}); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := c.Sessions(ctx)
	if err != nil || len(infos) != 2 {
		t.Fatalf("Sessions = %+v, %v", infos, err)
	}
	tm := attachTerm(t, c, infos[0].ID)
	tm.run(t, "echo 'ready'", "ready\r\n")
	start := time.Now()
	if err := e.b.Stop(ctx, e.spec); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %v", d)
	}
	waited := make(chan struct{})
	go func() { tm.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Error("attachment still waiting after Stop")
	}
}
