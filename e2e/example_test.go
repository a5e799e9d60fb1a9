//go:build linux

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
)

// TestGoClient drives a real server with package client, as a program of
// someone else's would (the example of client's package doc, and more): over
// TCP with the token, every JSON reply checked against openapi.yaml, and over
// the unix socket as the CLI goes.
func TestGoClient(t *testing.T) {
	s := startServer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, sock := s.client(), s.socketClient()

	// The event stream starts with a snapshot, and follows every change.
	events, err := c.Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if e := nextEvent(t, events, func(e api.Event) bool { return true }); e.Type != api.EventSnapshot || len(e.Snapshot.Distros) != 0 {
		t.Fatalf("first event = %+v, want an empty snapshot", e)
	}

	// Errors are typed.
	var ae *api.Error
	if _, err := c.Get(ctx, "deb"); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != api.CodeNotFound {
		t.Fatalf("Get of a missing distro = %v, want a 404 not_found *api.Error", err)
	}

	// Import, with the upload and the operation reported.
	tarball := tinyRootfs(t)
	var sent int64
	var reports []api.Operation
	op, err := c.Import(ctx, "deb", bytes.NewReader(tarball), client.ImportOptions{Version: 1, Size: int64(len(tarball)),
		OnUpload: func(n int64) { sent = n }, OnProgress: func(op api.Operation) { reports = append(reports, op) }})
	if err != nil || op.Status != api.StatusSuccess || op.Result == nil || op.Result.Entries == 0 {
		t.Fatalf("Import = %+v, %v", op, err)
	}
	if sent != int64(len(tarball)) || len(reports) == 0 || !reports[len(reports)-1].Done() {
		t.Errorf("upload counted %d of %d bytes; %d progress reports", sent, len(tarball), len(reports))
	}
	if got, err := c.Operation(ctx, op.ID); err != nil || got.ID != op.ID || got.Status != api.StatusSuccess {
		t.Errorf("Operation(%s) = %+v, %v", op.ID, got, err)
	}
	nextEvent(t, events, func(e api.Event) bool { return e.Type == api.EventDistro && e.Distro.Name == "deb" })
	if _, err := c.Import(ctx, "deb", bytes.NewReader(tarball), client.ImportOptions{}); !errors.As(err, &ae) || ae.Code != api.CodeAlreadyExists {
		t.Errorf("second import of deb = %v, want already_exists", err)
	}

	// Over the socket, with no token, as the CLI.
	list, err := sock.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "deb" || !list[0].Default || list[0].State != api.StateStopped {
		t.Fatalf("List over the socket = %+v, %v", list, err)
	}

	// Exec, collected: it starts the distro.
	res, err := c.Exec(ctx, "deb", api.ExecRequest{Argv: []string{"sh", "-c", "echo hi; printf '\\377' >&2; exit 2"}})
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := res.StderrBytes()
	if res.ExitCode != 2 || res.Stdout != "hi\n" || err != nil || !bytes.Equal(stderr, []byte{0xff}) {
		t.Errorf("Exec = %+v (stderr %q, %v)", res, stderr, err)
	}
	if d, err := c.Get(ctx, "deb"); err != nil || d.State != api.StateRunning {
		t.Errorf("after Exec: %+v, %v; want Running", d, err)
	}

	// Exec, streamed: input, output on both streams, the exit code.
	p, err := sock.ExecStream(ctx, "deb", api.ExecStart{Argv: []string{"sh", "-c", "cat; echo done >&2; exit 3"}, User: "alice"})
	if err != nil {
		t.Fatalf("ExecStream: %v", err)
	}
	p.Write([]byte("piped "))
	p.Write([]byte("in"))
	p.CloseStdin()
	var out, errOut bytes.Buffer
	st, err := p.Wait(&out, &errOut)
	p.Close()
	if err != nil || st.Code != 3 || out.String() != "piped in" || errOut.String() != "done\n" {
		t.Errorf("streamed exec = %+v, %v; out %q err %q", st, err, out.String(), errOut.String())
	}
	if _, err := c.ExecStream(ctx, "deb", api.ExecStart{Argv: []string{"true"}, User: "nobody-here"}); !errors.As(err, &ae) || ae.Code != api.CodeUserNotFound {
		t.Errorf("ExecStream as an unknown user = %v, want user_not_found", err)
	}

	// A terminal: output, typing, the exit code, and the session list.
	term, err := c.Terminal(ctx, "deb", client.TerminalOptions{Cols: 100, Rows: 40, Ack: true,
		Command: "stty size; echo ready; read x; echo got-$x; exit 7"})
	if err != nil {
		t.Fatalf("Terminal: %v", err)
	}
	defer time.AfterFunc(time.Minute, func() { term.Close() }).Stop() // no Read blocks for good
	if term.ID == "" {
		t.Error("the terminal names no session")
	}
	if sessions, err := c.Terminals(ctx, "deb"); err != nil || len(sessions) != 1 || sessions[0].ID != term.ID {
		t.Errorf("Terminals = %+v, %v; want the one session", sessions, err)
	}
	var screen strings.Builder
	readUntil(t, term, &screen, "ready")
	term.Write([]byte("abc\r"))
	rest, err := io.ReadAll(term)
	screen.Write(rest)
	term.Close()
	if code, ok := term.ExitCode(); err != nil || !ok || code != 7 || !strings.Contains(screen.String(), "got-abc") || !strings.Contains(screen.String(), "40 100") {
		t.Errorf("terminal: %q, exit %d %v, %v", screen.String(), code, ok, err)
	}

	// Settings.
	old, err := c.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := old.ScrollbackBytes * 2
	if st, err := c.UpdateSettings(ctx, api.SettingsUpdate{ScrollbackBytes: &n}); err != nil || st.ScrollbackBytes != n || st.DefaultUser != old.DefaultUser {
		t.Errorf("UpdateSettings = %+v, %v", st, err)
	}

	// Clone, rename, default, default user.
	var cloneReports int
	if op, err := c.Clone(ctx, "deb", "copy", func(api.Operation) { cloneReports++ }); err != nil || op.Status != api.StatusSuccess || cloneReports == 0 {
		t.Fatalf("Clone = %+v, %v (%d reports)", op, err, cloneReports)
	}
	if d, err := c.Rename(ctx, "copy", "twin"); err != nil || d.Name != "twin" {
		t.Errorf("Rename = %+v, %v", d, err)
	}
	if d, err := c.SetDefault(ctx, "twin"); err != nil || !d.Default {
		t.Errorf("SetDefault = %+v, %v", d, err)
	}
	if d, err := c.SetDefaultUser(ctx, "twin", "alice"); err != nil || d.DefaultUser != "alice" {
		t.Errorf("SetDefaultUser = %+v, %v", d, err)
	}
	if status, err := c.Status(ctx); err != nil || status.Distros != 2 || status.Default != "twin" {
		t.Errorf("Status = %+v, %v", status, err)
	}

	// Export streams a tarball of the distro.
	archive, err := c.Export(ctx, "twin", "tar")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	tr := tar.NewReader(archive)
	for {
		h, err := tr.Next()
		if err != nil {
			if err != io.EOF {
				t.Errorf("export: %v", err)
			}
			break
		}
		found = found || strings.TrimPrefix(h.Name, "./") == "bin/busybox"
	}
	archive.Close()
	if !found {
		t.Error("the export has no bin/busybox")
	}

	// Ports and portproxy rules.
	if ports, err := c.Ports(ctx, "deb"); err != nil || len(ports) != 0 {
		t.Errorf("Ports = %+v, %v; want none", ports, err)
	}
	pp := freePorts(t, 2)
	rule, err := c.AddPortProxyRule(ctx, api.RuleRequest{ID: "web", ListenAddress: "127.0.0.1", ListenPort: int(pp[0]), ConnectPort: int(pp[1])})
	if err != nil || rule.ID != "web" || rule.State != api.RuleActive || rule.Proto != api.TCP || rule.Allow == nil {
		t.Fatalf("AddPortProxyRule = %+v, %v", rule, err)
	}
	if _, err := c.AddPortProxyRule(ctx, api.RuleRequest{ListenAddress: "127.0.0.1", ListenPort: int(pp[0]), ConnectPort: 1}); !errors.As(err, &ae) || ae.Code != api.CodeDuplicateRule {
		t.Errorf("a rule on the same port = %v, want duplicate_rule", err)
	}
	if rules, err := c.PortProxyRules(ctx); err != nil || len(rules) != 1 {
		t.Errorf("PortProxyRules = %+v, %v", rules, err)
	}
	if err := c.DeletePortProxyRule(ctx, "web"); err != nil {
		t.Errorf("DeletePortProxyRule: %v", err)
	}
	if _, err := c.PortProxyRule(ctx, "web"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("the deleted rule = %v, want 404", err)
	}

	// A restart drops the event stream; it reconnects and starts again from
	// a snapshot of the whole state.
	s.restart()
	e := nextEvent(t, events, func(e api.Event) bool { return e.Type == api.EventSnapshot })
	if len(e.Snapshot.Distros) != 2 {
		t.Errorf("snapshot after the restart: %+v, want both distros", e.Snapshot.Distros)
	}

	// Stop and delete.
	if d, err := c.Terminate(ctx, "deb"); err != nil || d.State != api.StateStopped {
		t.Errorf("Terminate = %+v, %v", d, err)
	}
	if err := c.Unregister(ctx, "twin"); err != nil {
		t.Errorf("Unregister: %v", err)
	}
	nextEvent(t, events, func(e api.Event) bool { return e.Type == api.EventDistroRemoved && e.Removed.Name == "twin" })
	if err := sock.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	events.Close()
	if _, open := <-events.C; open || events.Err() != nil {
		t.Errorf("after Close: open %v, Err %v", open, events.Err())
	}
}

// nextEvent returns the first event that want accepts, failing after 30 s.
func nextEvent(t *testing.T, s *client.EventStream, want func(api.Event) bool) api.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-s.C:
			if !ok {
				t.Fatalf("the event stream ended: %v", s.Err())
			}
			if want(e) {
				return e
			}
		case <-timeout:
			t.Fatal("timed out waiting for an event")
		}
	}
}

// readUntil reads the terminal into screen until it shows marker.
func readUntil(t *testing.T, term *client.Terminal, screen *strings.Builder, marker string) {
	t.Helper()
	buf := make([]byte, 4096)
	for !strings.Contains(screen.String(), marker) {
		n, err := term.Read(buf)
		screen.Write(buf[:n])
		if err != nil {
			t.Fatalf("terminal ended before %q: %v; screen %q", marker, err, screen.String())
		}
	}
}
