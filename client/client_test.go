package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/subsys-dev/subsys/api"
)

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// serveSocket serves h on a unix socket in a new directory and returns a
// client for it.
func serveSocket(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), SocketName)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := New(Config{Socket: path})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSocket: over the socket requests go to Host localhost with no token.
func TestSocket(t *testing.T) {
	var got *http.Request
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		reply(w, 200, []api.Distro{{Name: "deb", State: api.StateRunning, Default: true}})
	})
	list, err := c.List(ctxT(t))
	if err != nil || len(list) != 1 || list[0].Name != "deb" || list[0].State != api.StateRunning {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if got.Host != "localhost" || got.URL.Path != "/api/v1/distros" || got.Header.Get("Authorization") != "" {
		t.Errorf("request: Host %q path %q Authorization %q", got.Host, got.URL.Path, got.Header.Get("Authorization"))
	}
	if c.Socket() == "" || c.Where() != c.Socket() {
		t.Errorf("Socket %q, Where %q", c.Socket(), c.Where())
	}
}

// TestURL: over TCP the token goes along, and the URL's path prefix is kept.
func TestURL(t *testing.T) {
	var auth, path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, path = r.Header.Get("Authorization"), r.URL.Path
		reply(w, 200, api.Version{Version: "1.2"})
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL + "/prefix/", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Version(ctxT(t)); err != nil || v != "1.2" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	if auth != "Bearer tok" || path != "/prefix/api/v1/version" {
		t.Errorf("Authorization %q, path %q", auth, path)
	}
	for _, cfg := range []Config{{URL: "ftp://x", Token: "t"}, {URL: "http://", Token: "t"}, {URL: srv.URL}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestFromEnvironment: SUBSYS_URL with SUBSYS_TOKEN or the token file, else
// the socket of the data directory.
func TestFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "token"), []byte("from-file\n"), 0o600)
	t.Setenv("SUBSYS_URL", "")
	c, err := FromEnvironment(dir)
	if err != nil || c.Socket() != filepath.Join(dir, SocketName) {
		t.Fatalf("no SUBSYS_URL: %v, socket %q", err, c.Socket())
	}
	t.Setenv("SUBSYS_URL", "http://127.0.0.1:1")
	t.Setenv("SUBSYS_TOKEN", "")
	if c, err = FromEnvironment(dir); err != nil || c.token != "from-file" || c.Socket() != "" {
		t.Fatalf("token file: %v, %+v", err, c)
	}
	t.Setenv("SUBSYS_TOKEN", "from-env")
	if c, err = FromEnvironment(dir); err != nil || c.token != "from-env" {
		t.Fatalf("SUBSYS_TOKEN: %v", err)
	}
	t.Setenv("SUBSYS_TOKEN", "")
	if _, err = FromEnvironment(t.TempDir()); err == nil || !strings.Contains(err.Error(), "SUBSYS_TOKEN") {
		t.Errorf("no token: %v, want an error naming SUBSYS_TOKEN", err)
	}
}

// TestErrors: error replies are *api.Error with status, code and message;
// no server is *NotRunningError.
func TestErrors(t *testing.T) {
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/distros/proxy" {
			w.WriteHeader(502)
			io.WriteString(w, "<html>bad gateway</html>")
			return
		}
		reply(w, 404, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: `distro "x" not found`}})
	})
	_, err := c.Get(ctxT(t), "x")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != api.CodeNotFound || err.Error() != `distro "x" not found` {
		t.Errorf("Get = %#v", err)
	}
	_, err = c.Get(ctxT(t), "proxy")
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "http" || !strings.Contains(ae.Message, "bad gateway") {
		t.Errorf("non-JSON error = %#v", err)
	}

	dead, _ := New(Config{Socket: filepath.Join(t.TempDir(), SocketName)})
	_, err = dead.List(ctxT(t))
	var nr *NotRunningError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "not running") || !strings.Contains(err.Error(), nr.Socket) {
		t.Errorf("no server: %v", err)
	}
	if _, err := dead.ExecStream(ctxT(t), "x", api.ExecStart{}); !errors.As(err, &nr) {
		t.Errorf("websocket, no server: %v", err)
	}
}

// TestImport: the upload is counted, then the operation is followed to its end.
func TestImport(t *testing.T) {
	var polls int
	var uploaded []byte
	var query string
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/distros":
			uploaded, _ = io.ReadAll(r.Body)
			query = r.URL.RawQuery
			reply(w, 202, api.Operation{ID: "op1", Kind: api.KindImport, Distro: "deb", Status: api.StatusRunning})
		case "/api/v1/operations/op1":
			polls++
			op := api.Operation{ID: "op1", Kind: api.KindImport, Distro: "deb", Status: api.StatusRunning, Progress: api.Progress{Done: int64(polls)}}
			if polls == 3 {
				op.Status, op.Result = api.StatusSuccess, &api.OperationResult{Entries: 9}
			}
			reply(w, 200, op)
		}
	})
	var sent int64
	var seen []api.Operation
	op, err := c.Import(ctxT(t), "deb", strings.NewReader("tarball"), ImportOptions{Version: 1, Location: "/srv/d", Size: 7,
		OnUpload: func(n int64) { sent = n }, OnProgress: func(op api.Operation) { seen = append(seen, op) }})
	if err != nil || op.Status != api.StatusSuccess || op.Result.Entries != 9 {
		t.Fatalf("Import = %+v, %v", op, err)
	}
	if string(uploaded) != "tarball" || sent != 7 || query != "location=%2Fsrv%2Fd&name=deb&version=1" {
		t.Errorf("uploaded %q, counted %d, query %q", uploaded, sent, query)
	}
	if len(seen) != 3 || seen[0].Progress.Done != 1 {
		t.Errorf("progress reports %+v", seen)
	}
}

// TestOperationFailure: a failed operation is an *api.OperationError.
func TestOperationFailure(t *testing.T) {
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		reply(w, 202, api.Operation{ID: "o", Kind: api.KindClone, Distro: "a", Status: api.StatusFailure, Error: "disk full"})
	})
	_, err := c.Clone(ctxT(t), "a", "b", nil)
	var oe *api.OperationError
	if !errors.As(err, &oe) || err.Error() != "clone a failed: disk full" {
		t.Errorf("Clone = %v", err)
	}
}

// TestExport: a POST with the format; the body streams.
func TestExport(t *testing.T) {
	var method, format string
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		method, format = r.Method, r.URL.Query().Get("format")
		io.WriteString(w, "archive")
	})
	rc, err := c.Export(ctxT(t), "deb", "tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if method != "POST" || format != "tar.zst" || string(b) != "archive" {
		t.Errorf("export: %s format %q body %q", method, format, b)
	}
}

// TestRequests: what the typed calls send, method, path and body.
func TestRequests(t *testing.T) {
	type seen struct{ method, path, body string }
	var got []seen
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, seen{r.Method, r.URL.Path, strings.TrimSpace(string(b))})
		switch {
		case r.Method == "DELETE" && !strings.HasPrefix(r.URL.Path, "/api/v1/operations/"):
			w.WriteHeader(204)
		case strings.HasSuffix(r.URL.Path, "/portproxy") && r.Method == "GET",
			strings.HasSuffix(r.URL.Path, "/ports"), strings.HasSuffix(r.URL.Path, "/terminals"):
			reply(w, 200, []any{})
		default:
			reply(w, 200, map[string]any{})
		}
	})
	ctx := ctxT(t)
	yes := true
	calls := []struct {
		call func() error
		want seen
	}{
		{func() error { _, err := c.Rename(ctx, "a", "b"); return err }, seen{"PATCH", "/api/v1/distros/a", `{"name":"b"}`}},
		{func() error { _, err := c.SetDefault(ctx, "a"); return err }, seen{"PATCH", "/api/v1/distros/a", `{"default":true}`}},
		{func() error { _, err := c.SetDefaultUser(ctx, "a", "alice"); return err }, seen{"PATCH", "/api/v1/distros/a", `{"default_user":"alice"}`}},
		{func() error { _, err := c.Start(ctx, "a"); return err }, seen{"POST", "/api/v1/distros/a/start", ""}},
		{func() error { _, err := c.Terminate(ctx, "a"); return err }, seen{"POST", "/api/v1/distros/a/terminate", ""}},
		{func() error { return c.Unregister(ctx, "a") }, seen{"DELETE", "/api/v1/distros/a", ""}},
		{func() error { return c.Shutdown(ctx) }, seen{"POST", "/api/v1/shutdown", ""}},
		{func() error { _, err := c.Exec(ctx, "a", api.ExecRequest{Argv: []string{"id"}}); return err }, seen{"POST", "/api/v1/distros/a/exec", `{"argv":["id"]}`}},
		{func() error { _, err := c.Ports(ctx, "a"); return err }, seen{"GET", "/api/v1/distros/a/ports", ""}},
		{func() error {
			_, err := c.SetPort(ctx, "a", "TCP", 80, api.PortUpdate{LAN: &yes, Allow: &[]string{}})
			return err
		},
			seen{"PUT", "/api/v1/distros/a/ports/tcp/80", `{"lan":true,"allow":[]}`}},
		{func() error { _, err := c.PortProxyRules(ctx); return err }, seen{"GET", "/api/v1/portproxy", ""}},
		{func() error {
			_, err := c.AddPortProxyRule(ctx, api.RuleRequest{ListenPort: 8081, ConnectPort: 80})
			return err
		}, seen{"POST", "/api/v1/portproxy", `{"listen_port":8081,"connect_port":80}`}},
		{func() error { return c.DeletePortProxyRule(ctx, "r/1") }, seen{"DELETE", "/api/v1/portproxy/r/1", ""}},
		{func() error { _, err := c.CancelOperation(ctx, "o"); return err }, seen{"DELETE", "/api/v1/operations/o", ""}},
		{func() error { _, err := c.Terminals(ctx, "a"); return err }, seen{"GET", "/api/v1/distros/a/terminals", ""}},
		{func() error { return c.KillTerminal(ctx, "a", "s1") }, seen{"DELETE", "/api/v1/distros/a/terminals/s1", ""}},
		{func() error {
			v := 2
			_, err := c.UpdateSettings(ctx, api.SettingsUpdate{DefaultVersion: &v})
			return err
		}, seen{"PUT", "/api/v1/settings", `{"default_version":2}`}},
		{func() error { _, err := c.VM(ctx); return err }, seen{"GET", "/api/v1/vm", ""}},
		{func() error { _, err := c.SetVersion(ctx, "a", 2, nil); return err }, seen{"POST", "/api/v1/distros/a/set-version", `{"version":2}`}},
		{func() error { _, err := c.DashboardURL(ctx); return err }, seen{"GET", "/api/v1/dashboard", ""}},
		{func() error { _, err := c.RotateToken(ctx); return err }, seen{"POST", "/api/v1/token/rotate", ""}},
		{func() error { _, err := c.Ticket(ctx); return err }, seen{"POST", "/api/v1/tickets", ""}},
	}
	for _, tt := range calls {
		got = nil
		if err := tt.call(); err != nil {
			t.Errorf("%s %s: %v", tt.want.method, tt.want.path, err)
			continue
		}
		if len(got) != 1 || got[0] != tt.want {
			t.Errorf("sent %+v, want %+v", got, tt.want)
		}
	}
}

var upgrader = websocket.Upgrader{}

// TestExecStream: the start frame, stdin, a signal, output on both channels
// and the exit code, over the socket.
func TestExecStream(t *testing.T) {
	var start api.ExecStart
	var frames []string
	var mu sync.Mutex
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		_, first, _ := conn.ReadMessage()
		json.Unmarshal(first, &start)
		conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"started"}`))
		for range 3 {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			mu.Lock()
			frames = append(frames, string(msg))
			mu.Unlock()
		}
		conn.WriteMessage(websocket.BinaryMessage, []byte("\x01out"))
		conn.WriteMessage(websocket.BinaryMessage, []byte("\x02err"))
		conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"exit","code":3,"signal":"TERM"}`))
	})
	p, err := c.ExecStream(ctxT(t), "deb", api.ExecStart{Argv: []string{"cat"}, User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Write([]byte("in"))
	p.Signal("INT")
	p.CloseStdin()
	var out, errb bytes.Buffer
	st, err := p.Wait(&out, &errb)
	if err != nil || st != (ExitStatus{Code: 3, Signal: "TERM"}) {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	if out.String() != "out" || errb.String() != "err" || start.User != "alice" || start.Argv[0] != "cat" {
		t.Errorf("out %q err %q start %+v", out.String(), errb.String(), start)
	}
	want := []string{"\x00in", `{"type":"signal","name":"INT"}`, `{"type":"eof"}`}
	if fmt.Sprint(frames) != fmt.Sprint(want) {
		t.Errorf("frames %q, want %q", frames, want)
	}
}

// TestExecStreamError: an error frame instead of started is an *api.Error.
func TestExecStreamError(t *testing.T) {
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.ReadMessage()
		conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"error","error":{"code":"user_not_found","message":"no user bob"}}`))
	})
	_, err := c.ExecStream(ctxT(t), "deb", api.ExecStart{User: "bob"})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeUserNotFound || ae.Message != "no user bob" {
		t.Errorf("ExecStream = %v, want user_not_found", err)
	}
}

// TestTerminal: the session frame names it; output, an ack when asked for,
// the exit code, then io.EOF.
func TestTerminal(t *testing.T) {
	var query string
	var frames []string
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"session","id":"0123456789abcdef"}`))
		conn.WriteMessage(websocket.BinaryMessage, []byte("$ "))
		for range 3 { // the opt-in ack, the ack of "$ ", the keystrokes
			_, msg, _ := conn.ReadMessage()
			frames = append(frames, string(msg))
		}
		conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"exit","code":0}`))
		conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "exited"))
	})
	term, err := c.Terminal(ctxT(t), "deb", TerminalOptions{Cols: 100, Rows: 30, Ack: true})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	if term.ID != "0123456789abcdef" || query != "cols=100&rows=30" {
		t.Errorf("session %q, query %q", term.ID, query)
	}
	buf := make([]byte, 10)
	n, err := term.Read(buf)
	if err != nil || string(buf[:n]) != "$ " {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	term.Write([]byte("exit\r"))
	if _, err := term.Read(buf); err != io.EOF {
		t.Errorf("Read after exit = %v, want io.EOF", err)
	}
	if code, ok := term.ExitCode(); !ok || code != 0 {
		t.Errorf("ExitCode = %d, %v", code, ok)
	}
	want := []string{`{"type":"ack"}`, `{"type":"ack","bytes":2}`, "exit\r"}
	if fmt.Sprint(frames) != fmt.Sprint(want) {
		t.Errorf("frames %q, want %q", frames, want)
	}
}

// TestEvents: events arrive typed; a dropped stream reconnects and starts
// from a new snapshot; a credential refused for good ends it with Err.
func TestEvents(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns++
		n := conns
		mu.Unlock()
		if n == 3 {
			reply(w, 401, api.ErrorBody{Error: api.Error{Code: api.CodeUnauthorized, Message: "token rotated"}})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "retry: 10\n\n: keepalive\n\n")
		fmt.Fprintf(w, "event: snapshot\ndata: {\"distros\":[{\"name\":\"d%d\"}],\"operations\":[]}\n\n", n)
		fmt.Fprintf(w, "event: from-the-future\ndata: {}\n\n")
		fmt.Fprintf(w, "event: distro\ndata: {\"name\":\"d%d\",\"state\":\"Running\"}\n\n", n)
		// The connection ends here: the client reconnects.
	})
	s, err := c.Events(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for e := range s.C {
		switch e.Type {
		case api.EventSnapshot:
			got = append(got, "snapshot "+e.Snapshot.Distros[0].Name)
		case api.EventDistro:
			got = append(got, "distro "+e.Distro.Name+" "+string(e.Distro.State))
		default:
			got = append(got, string(e.Type))
		}
	}
	want := []string{"snapshot d1", "distro d1 Running", "snapshot d2", "distro d2 Running"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %q, want %q", got, want)
	}
	var ae *api.Error
	if err := s.Err(); !errors.As(err, &ae) || ae.Code != api.CodeUnauthorized {
		t.Errorf("Err = %v, want unauthorized", err)
	}
}

// TestEventsClose: Close ends a stream that is waiting for events.
func TestEventsClose(t *testing.T) {
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "event: snapshot\ndata: {\"distros\":[],\"operations\":[]}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	s, err := c.Events(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if e := <-s.C; e.Type != api.EventSnapshot {
		t.Fatalf("first event %+v", e)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the stream")
	}
	if _, ok := <-s.C; ok || s.Err() != nil {
		t.Errorf("after Close: channel open %v, Err %v", ok, s.Err())
	}
}
