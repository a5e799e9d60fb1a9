package server_test

// These tests run the real Server on a real socket (httptest) in front of a
// real vmm.Manager, store and agent, through package client and plain HTTP,
// as any user: vmmtest.Backend runs each distro's agent in the test process,
// without namespaces or root (see its package doc for what it does not
// confine). Every JSON reply is validated against openapi.yaml, and every
// error reply must be exactly {"error":{"code","message"}}.
//
// The agent's reaper collects every child of this test binary, so no test
// here may start and wait for a child of its own (no os/exec).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
	"github.com/subsys-dev/subsys/internal/apispec"
	"github.com/subsys-dev/subsys/internal/testutil"
	"github.com/subsys-dev/subsys/server"
	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/vmmtest"
)

// wait bounds every wait of these tests: generous, because the machine may
// be small and shared; a passing test waits far less.
const wait = 30 * time.Second

const token = "test-token-0123456789"

// env is a server on a real socket, its manager and backend, and a client.
type env struct {
	t    *testing.T
	url  string
	data string // the manager's data directory
	m    *vmm.Manager
	b    *vmmtest.Backend
	c    *client.Client
	http *http.Client // plain HTTP, replies checked as the client's are
	log  *testutil.SyncBuffer
}

// newEnv starts a server for one test. mod, when set, adjusts its Config.
func newEnv(t *testing.T, mod func(*server.Config)) *env {
	t.Helper()
	return newEnvWith(t, mod, nil)
}

// newEnvWith is newEnv with v2, when not nil, as the manager's version 2
// backend (version 1 is always the env's vmmtest.Backend).
func newEnvWith(t *testing.T, mod func(*server.Config), v2 vmm.Backend) *env {
	t.Helper()
	return newEnvBackends(t, mod, v2, true)
}

// newEnvBackends is newEnvWith, and without a version 1 backend (as on
// Windows) when withV1 is false; the env's b is then unused.
func newEnvBackends(t *testing.T, mod func(*server.Config), v2 vmm.Backend, withV1 bool) *env {
	t.Helper()
	ctx := context.Background()
	logs := &testutil.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := vmmtest.NewBackend(vmmtest.Config{})
	data := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(data, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	backends := map[int]vmm.Backend{}
	if withV1 {
		backends[1] = b
	}
	if v2 != nil {
		backends[2] = v2
	}
	m, err := vmm.New(ctx, vmm.Config{Store: db, DataDir: data, Backends: backends, Logger: logger})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	// Cleanups run last first: the server stops before the manager.
	t.Cleanup(func() {
		m.Close()
		b.Close()
		db.Close()
		if t.Failed() {
			t.Logf("server and manager log:\n%s", logs.String())
		}
	})
	cfg := server.Config{Manager: m, Token: token, Version: "test-version", Logger: logger}
	if mod != nil {
		mod(&cfg)
	}
	ts := httptest.NewUnstartedServer(server.New(cfg))
	// As Server.Serve does: ending the base context ends event streams and
	// websockets, which Close would otherwise wait for.
	base, cancelBase := context.WithCancel(context.Background())
	ts.Config.BaseContext = func(net.Listener) context.Context { return base }
	ts.Start()
	tr := &http.Transport{}
	t.Cleanup(func() {
		cancelBase()
		ts.Close()
		tr.CloseIdleConnections()
	})
	checked := specChecker{t: t, next: tr}
	c, err := client.New(client.Config{URL: ts.URL, Token: token, Transport: checked})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, url: ts.URL, data: data, m: m, b: b, c: c, http: &http.Client{Transport: checked}, log: logs}
}

// do sends one request to path (under /api/v1) with the token, unless hdr
// sets Authorization (to "" for none), and returns the status and body.
func (e *env) do(method, path string, body io.Reader, hdr map[string]string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+"/api/v1"+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
		if v == "" {
			req.Header.Del(k)
		}
	}
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read the reply: %v", method, path, err)
	}
	return resp.StatusCode, raw
}

// apiErr returns the JSON error reply in raw.
func apiErr(raw []byte) api.Error {
	var b api.ErrorBody
	json.Unmarshal(raw, &b)
	return b.Error
}

// asAPIError returns err's *api.Error, or one with code "not an api.Error".
func asAPIError(err error) api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return *ae
	}
	return api.Error{Code: fmt.Sprintf("not an api.Error: %v", err)}
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

// importDistro imports a small tarball as name through the client.
func (e *env) importDistro(name string) api.Distro {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if op, err := e.c.Import(ctx, name, bytes.NewReader(tarball(e.t)), client.ImportOptions{}); err != nil {
		e.t.Fatalf("import %s: %+v, %v", name, op, err)
	}
	d, err := e.c.Get(ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// entries lists a directory of the data directory ("distros", "tmp").
func (e *env) entries(dir string) []string {
	e.t.Helper()
	list, err := os.ReadDir(filepath.Join(e.data, dir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		e.t.Fatal(err)
	}
	var names []string
	for _, de := range list {
		names = append(names, de.Name())
	}
	return names
}

// TestDistroLifecycle: import with progress, get and list, start, exec,
// terminate, unregister — a distro's whole life through the client.
func TestDistroLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()

	// Big enough that the upload is reported in several steps.
	tb := tarball(t, vmmtest.File{Name: "etc/motd", Body: "hello from the distro\n"},
		vmmtest.File{Name: "big", Body: strings.Repeat("x", 1<<20)})
	var uploads []int64
	var reports []api.Operation
	op, err := e.c.Import(ctx, "alpha", bytes.NewReader(tb), client.ImportOptions{
		Size:       int64(len(tb)),
		OnUpload:   func(n int64) { uploads = append(uploads, n) },
		OnProgress: func(op api.Operation) { reports = append(reports, op) },
	})
	if err != nil {
		t.Fatalf("import = %+v, %v", op, err)
	}
	if op.Status != api.StatusSuccess || op.Kind != api.KindImport || op.Distro != "alpha" || op.Result == nil || op.Result.Entries != 6 {
		t.Errorf("import operation = %+v (result %+v), want a successful import of alpha that read 6 entries", op, op.Result)
	}
	if len(uploads) < 2 || !slices.IsSorted(uploads) || uploads[len(uploads)-1] != int64(len(tb)) {
		t.Errorf("upload progress %v, want several rising reports ending at %d", uploads, len(tb))
	}
	if len(reports) == 0 || reports[len(reports)-1].Status != api.StatusSuccess || reports[len(reports)-1].ID != op.ID {
		t.Errorf("operation reports %+v, want them to end with the import's success", reports)
	}
	if got, err := e.c.Operation(ctx, op.ID); err != nil || got.Status != api.StatusSuccess || got.ID != op.ID {
		t.Errorf("GET the operation = %+v, %v", got, err)
	}

	d, err := e.c.Get(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != api.StateStopped || !d.Default || d.Version != 1 || d.ID == "" {
		t.Errorf("after import: %+v, want the stopped default version 1 distro", d)
	}
	rootfs := filepath.Join(d.Location, "rootfs")
	if got, err := os.ReadFile(filepath.Join(rootfs, "etc", "motd")); err != nil || string(got) != "hello from the distro\n" {
		t.Errorf("imported etc/motd = %q, %v", got, err)
	}
	// A second distro, from a tarball already on the server (JSON import).
	path := filepath.Join(t.TempDir(), "beta.tar")
	if err := os.WriteFile(path, tarball(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if op, err := e.c.ImportPath(ctx, api.ImportRequest{Name: "beta", Source: api.ImportSource{Path: path}}, nil); err != nil {
		t.Fatalf("import from a path = %+v, %v", op, err)
	}
	list, err := e.c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list {
		names = append(names, d.Name)
	}
	if !slices.Equal(names, []string{"alpha", "beta"}) {
		t.Errorf("list = %q, want alpha and beta", names)
	}

	if d, err = e.c.Start(ctx, "alpha"); err != nil || d.State != api.StateRunning {
		t.Fatalf("start = %+v, %v", d, err)
	}
	if !slices.Equal(e.b.Running(), []string{d.ID}) {
		t.Errorf("after start the backend runs %q, want %s", e.b.Running(), d.ID)
	}
	if st, err := e.c.Status(ctx); err != nil || st.Distros != 2 || st.Running != 1 || st.Default != "alpha" || st.Version != "test-version" {
		t.Errorf("status = %+v, %v", st, err)
	}
	res, err := e.c.Exec(ctx, "alpha", api.ExecRequest{Argv: []string{"cat", "etc/motd"}, Cwd: rootfs})
	if err != nil || res.ExitCode != 0 || res.Stdout != "hello from the distro\n" {
		t.Errorf("exec cat etc/motd = %+v, %v", res, err)
	}

	if d, err = e.c.Terminate(ctx, "alpha"); err != nil || d.State != api.StateStopped {
		t.Errorf("terminate = %+v, %v", d, err)
	}
	if len(e.b.Running()) != 0 {
		t.Errorf("after terminate the backend runs %q", e.b.Running())
	}
	// Exec starts a stopped distro.
	if res, err := e.c.Exec(ctx, "alpha", api.ExecRequest{Argv: []string{"echo", "again"}}); err != nil || res.Stdout != "again\n" {
		t.Errorf("exec after terminate = %+v, %v", res, err)
	}
	if d, _ = e.c.Get(ctx, "alpha"); d.State != api.StateRunning || e.b.Starts() != 2 {
		t.Errorf("exec did not start the distro: state %s, %d starts", d.State, e.b.Starts())
	}

	// Unregister removes the distro and its files: the probe sees them first.
	if files := e.entries("distros"); len(files) != 2 {
		t.Fatalf("distros/ holds %q before unregister, want both distros", files)
	}
	if err := e.c.Unregister(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Get(ctx, "alpha"); asAPIError(err).Status != http.StatusNotFound || asAPIError(err).Code != api.CodeNotFound {
		t.Errorf("get after unregister = %v, want 404 not_found", err)
	}
	if files := e.entries("distros"); len(files) != 1 || slices.Contains(files, d.ID) {
		t.Errorf("distros/ holds %q after unregister, want only beta's", files)
	}
	if len(e.b.Running()) != 0 || !slices.Equal(e.b.Forgotten(), []string{d.ID}) {
		t.Errorf("after unregister the backend runs %q and forgot %q", e.b.Running(), e.b.Forgotten())
	}
	if st, err := e.c.Status(ctx); err != nil || st.Distros != 1 || st.Running != 0 {
		t.Errorf("status after unregister = %+v, %v", st, err)
	}
}

// TestExec: the buffered exec (POST …/exec) — output, exit, encodings,
// limits and refusals.
func TestExec(t *testing.T) {
	const maxOut = 64 << 10
	e := newEnv(t, func(c *server.Config) { c.MaxOutputBytes = maxOut })
	d := e.importDistro("alpha")
	rootfs := filepath.Join(d.Location, "rootfs")
	b64 := base64.StdEncoding.EncodeToString

	tests := []struct {
		name string
		req  api.ExecRequest
		// want, unless status is set: the reply with Stdout and Stderr
		// decoded (the encodings are checked separately).
		want           api.ExecResult
		stdoutEncoding string
		status         int
		code           string
	}{
		{name: "output, input and exit code",
			req:  api.ExecRequest{Argv: []string{"sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"}, Stdin: b64([]byte("piped in\n"))},
			want: api.ExecResult{ExitCode: 3, Stdout: "PIPED IN\n", Stderr: "oops\n"}, stdoutEncoding: api.EncodingUTF8},
		{name: "cwd, env and user",
			req:  api.ExecRequest{Argv: []string{"sh", "-c", `pwd; echo "$GREETING"; id -u`}, Cwd: rootfs, Env: []string{"GREETING=hi"}, User: "root"},
			want: api.ExecResult{Stdout: fmt.Sprintf("%s\nhi\n%d\n", rootfs, os.Getuid())}, stdoutEncoding: api.EncodingUTF8},
		{name: "bytes that are not UTF-8 come as base64",
			req:  api.ExecRequest{Argv: []string{"printf", `\377\376`}},
			want: api.ExecResult{Stdout: "\xff\xfe"}, stdoutEncoding: api.EncodingBase64},
		{name: "base64 on request",
			req:  api.ExecRequest{Argv: []string{"echo", "hi"}, OutputEncoding: api.EncodingBase64},
			want: api.ExecResult{Stdout: "hi\n"}, stdoutEncoding: api.EncodingBase64},
		{name: "output over the cap is cut",
			req:  api.ExecRequest{Argv: []string{"sh", "-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x", 3*maxOut)}},
			want: api.ExecResult{Stdout: strings.Repeat("x", maxOut), Truncated: true}, stdoutEncoding: api.EncodingUTF8},
		{name: "timeout kills",
			req:  api.ExecRequest{Argv: []string{"sleep", "30"}, TimeoutS: 0.2},
			want: api.ExecResult{ExitCode: 128 + 9, Signal: "KILL", TimedOut: true}, stdoutEncoding: api.EncodingUTF8},
		{name: "no argv", req: api.ExecRequest{}, status: 400, code: api.CodeInvalid},
		{name: "stdin not base64", req: api.ExecRequest{Argv: []string{"true"}, Stdin: "not base64!"}, status: 400, code: api.CodeInvalid},
		{name: "bad encoding", req: api.ExecRequest{Argv: []string{"true"}, OutputEncoding: "latin1"}, status: 400, code: api.CodeInvalid},
		{name: "negative timeout", req: api.ExecRequest{Argv: []string{"true"}, TimeoutS: -1}, status: 400, code: api.CodeInvalid},
		{name: "user the distro lacks", req: api.ExecRequest{Argv: []string{"true"}, User: "nobody-here"}, status: 400, code: api.CodeUserNotFound},
		{name: "program the distro lacks", req: api.ExecRequest{Argv: []string{"no-such-program-here"}}, status: 400, code: api.CodeNotFoundInDistro},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			res, err := e.c.Exec(ctx, "alpha", tc.req)
			if tc.status != 0 {
				if ae := asAPIError(err); ae.Status != tc.status || ae.Code != tc.code {
					t.Errorf("exec = %+v, %v; want %d %s", res, err, tc.status, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.StdoutEncoding != tc.stdoutEncoding {
				t.Errorf("stdout encoding %q, want %q", res.StdoutEncoding, tc.stdoutEncoding)
			}
			stdout, err1 := res.StdoutBytes()
			stderr, err2 := res.StderrBytes()
			if err := errors.Join(err1, err2); err != nil {
				t.Fatal(err)
			}
			got := res
			got.Stdout, got.Stderr, got.StdoutEncoding, got.StderrEncoding = string(stdout), string(stderr), "", ""
			if got != tc.want {
				t.Errorf("exec = %+.200v, want %+.200v", got, tc.want)
			}
		})
	}
	if _, err := e.c.Exec(context.Background(), "missing", api.ExecRequest{Argv: []string{"true"}}); asAPIError(err).Code != api.CodeNotFound {
		t.Errorf("exec in a distro that does not exist = %v, want not_found", err)
	}
}

// TestExecStream: exec over its websocket (GET …/exec/ws), as `subsys run`
// uses it — input, both outputs, exit codes, a terminal, signals, refusals.
func TestExecStream(t *testing.T) {
	e := newEnv(t, nil)
	e.importDistro("alpha")
	tests := []struct {
		name           string
		start          api.ExecStart
		stdin          string
		signal         string // sent once started
		stdout, stderr string
		exit           client.ExitStatus
	}{
		{name: "pipes", start: api.ExecStart{Argv: []string{"sh", "-c", `read x; echo "got $x"; echo err >&2; exit 5`}},
			stdin: "hi\n", stdout: "got hi\n", stderr: "err\n", exit: client.ExitStatus{Code: 5}},
		{name: "terminal", start: api.ExecStart{Argv: []string{"sh", "-c", "test -t 0 && stty size"}, TTY: true, Cols: 100, Rows: 30},
			stdout: "30 100\r\n"},
		{name: "signal", start: api.ExecStart{Argv: []string{"sleep", "30"}}, signal: "TERM",
			exit: client.ExitStatus{Code: 128 + 15, Signal: "TERM"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			p, err := e.c.ExecStream(ctx, "alpha", tc.start)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if tc.stdin != "" {
				if _, err := io.WriteString(p, tc.stdin); err != nil {
					t.Fatal(err)
				}
				if err := p.CloseStdin(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.signal != "" {
				if err := p.Signal(tc.signal); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			st, err := p.Wait(&stdout, &stderr)
			if err != nil || st != tc.exit || stdout.String() != tc.stdout || stderr.String() != tc.stderr {
				t.Errorf("= %+v, %v, stdout %q, stderr %q; want %+v, stdout %q, stderr %q", st, err, stdout.String(), stderr.String(), tc.exit, tc.stdout, tc.stderr)
			}
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := e.c.ExecStream(ctx, "alpha", api.ExecStart{Argv: []string{"true"}, User: "nobody-here"})
	if ae := asAPIError(err); ae.Code != api.CodeUserNotFound || ae.Message == "" {
		t.Errorf("exec as a user the distro lacks = %v, want user_not_found", err)
	}
	// A missing distro is refused before the upgrade: an HTTP error reply.
	_, err = e.c.ExecStream(ctx, "missing", api.ExecStart{Argv: []string{"true"}})
	if ae := asAPIError(err); ae.Status != http.StatusNotFound || ae.Code != api.CodeNotFound {
		t.Errorf("exec in a distro that does not exist = %v, want 404 not_found", err)
	}
}

// reader copies a terminal's output into a buffer until it ends, and
// reports how it ended.
type reader struct {
	out  testutil.SyncBuffer
	done chan error
}

func readTerminal(term *client.Terminal) *reader {
	r := &reader{done: make(chan error, 1)}
	go func() {
		_, err := io.Copy(&r.out, term)
		r.done <- err
	}()
	return r
}

// waitOutput waits until the output holds s.
func (r *reader) waitOutput(t *testing.T, s string) {
	t.Helper()
	testutil.WaitFor(t, wait, fmt.Sprintf("terminal output %q (have %q)", s, r.out.String()), func() bool {
		return strings.Contains(r.out.String(), s)
	})
}

// end waits until the reading ends and returns why.
func (r *reader) end(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(wait):
		t.Fatal("the terminal's output did not end")
		return nil
	}
}

// TestTerminal: a terminal session lives in the distro beyond its
// websocket: attach, type, read, detach, reattach (the output replayed),
// attached elsewhere, list, kill; and a program's exit ends the stream.
func TestTerminal(t *testing.T) {
	e := newEnv(t, nil)
	e.importDistro("alpha")
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()

	// A program that answers each line, so its output is told from the echo.
	term, err := e.c.Terminal(ctx, "alpha", client.TerminalOptions{Command: `while read l; do echo "got:$l"; done`})
	if err != nil {
		t.Fatal(err)
	}
	if term.ID == "" {
		t.Fatal("the terminal has no session id")
	}
	r := readTerminal(term)
	if _, err := io.WriteString(term, "one\n"); err != nil {
		t.Fatal(err)
	}
	r.waitOutput(t, "got:one")
	if err := term.Close(); err != nil {
		t.Fatal(err)
	}
	r.end(t)

	list, err := e.c.Terminals(ctx, "alpha")
	if err != nil || len(list) != 1 || list[0].ID != term.ID || list[0].Exited {
		t.Fatalf("terminals after detach = %+v, %v; want session %s alive", list, err, term.ID)
	}

	// Reattach: what it wrote is replayed, and it goes on answering.
	term2, err := e.c.Terminal(ctx, "alpha", client.TerminalOptions{Session: term.ID})
	if err != nil {
		t.Fatal(err)
	}
	defer term2.Close()
	r2 := readTerminal(term2)
	r2.waitOutput(t, "got:one")
	io.WriteString(term2, "two\n")
	r2.waitOutput(t, "got:two")
	testutil.WaitFor(t, wait, "the session to show as attached", func() bool {
		list, err := e.c.Terminals(ctx, "alpha")
		return err == nil && len(list) == 1 && list[0].Attached
	})

	// Another attachment takes it over.
	term3, err := e.c.Terminal(ctx, "alpha", client.TerminalOptions{Session: term.ID, Ack: true})
	if err != nil {
		t.Fatal(err)
	}
	defer term3.Close()
	if err := r2.end(t); !errors.Is(err, client.ErrAttachedElsewhere) {
		t.Errorf("the first attachment ended with %v, want ErrAttachedElsewhere", err)
	}
	r3 := readTerminal(term3)
	io.WriteString(term3, "three\n")
	r3.waitOutput(t, "got:three")

	// Kill ends the session: reattaching is refused, as its list shows.
	if err := e.c.KillTerminal(ctx, "alpha", term.ID); err != nil {
		t.Fatal(err)
	}
	r3.end(t)
	if list, err := e.c.Terminals(ctx, "alpha"); err != nil || len(list) != 0 {
		t.Errorf("terminals after kill = %+v, %v; want none", list, err)
	}
	_, err = e.c.Terminal(ctx, "alpha", client.TerminalOptions{Session: term.ID})
	if ae := asAPIError(err); ae.Status != http.StatusNotFound || ae.Code != api.CodeSessionNotFound {
		t.Errorf("reattach after kill = %v, want 404 session_not_found", err)
	}

	// A program that exits ends the stream with its code.
	term4, err := e.c.Terminal(ctx, "alpha", client.TerminalOptions{Command: "echo bye; exit 7"})
	if err != nil {
		t.Fatal(err)
	}
	defer term4.Close()
	r4 := readTerminal(term4)
	if err := r4.end(t); err != nil {
		t.Errorf("the stream of a program that exited ended with %v, want EOF", err)
	}
	if code, ok := term4.ExitCode(); !ok || code != 7 || !strings.Contains(r4.out.String(), "bye") {
		t.Errorf("exit code %d, %v, output %q; want 7 after bye", code, ok, r4.out.String())
	}

	// A stopped distro has no sessions to reattach, and is not started for it.
	if _, err := e.c.Terminate(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	starts := e.b.Starts()
	_, err = e.c.Terminal(ctx, "alpha", client.TerminalOptions{Session: term.ID})
	if ae := asAPIError(err); ae.Status != http.StatusNotFound || ae.Code != api.CodeSessionNotFound {
		t.Errorf("reattach in a stopped distro = %v, want 404 session_not_found", err)
	}
	if e.b.Starts() != starts {
		t.Error("a reattach started the distro")
	}

	t.Run("kill a session that is gone", func(t *testing.T) {
		if _, err := e.c.Start(ctx, "alpha"); err != nil {
			t.Fatal(err)
		}
		err := e.c.KillTerminal(ctx, "alpha", term.ID)
		ae := asAPIError(err)
		if ae.Status != http.StatusNotFound || ae.Code != api.CodeSessionNotFound {
			t.Errorf("kill of a killed session = %v, want 404 session_not_found", err)
		}
	})
}

// TestBusyAndCancel: while an import runs, what would conflict with it is
// refused with 409 naming the operation; DELETE /operations/{id} cancels it
// (the upload has stalled) into a failure, and nothing of it is left.
func TestBusyAndCancel(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	body := testutil.NewStalledReader(tarball(t, vmmtest.File{Name: "big", Body: strings.Repeat("x", 1<<20)}))
	defer close(body.Release)
	sent := body.Sent
	type reply struct {
		status int
		raw    []byte
		err    error
	}
	uploaded := make(chan reply, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/api/v1/distros?name=slow", body)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			uploaded <- reply{err: err}
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		uploaded <- reply{status: resp.StatusCode, raw: raw}
	}()
	<-sent

	// The row is Installing a moment before its operation is registered; in
	// that moment a refusal cannot name the operation yet.
	var busy api.Error
	testutil.WaitFor(t, wait, "unregister during the import refused, naming it", func() bool {
		status, raw := e.do("DELETE", "/distros/slow", nil, nil)
		busy = apiErr(raw)
		if status != http.StatusConflict && status != http.StatusNotFound {
			t.Fatalf("unregister during the import = %d %s, want 409 (or 404 before the import has begun)", status, raw)
		}
		return status == http.StatusConflict && strings.Contains(busy.Message, "(import)")
	})
	if busy.Code != api.CodeBusy || !strings.Contains(busy.Message, `"slow"`) {
		t.Errorf("busy refusal = %+v, want code busy naming the distro", busy)
	}
	i := strings.Index(busy.Message, "operation ")
	if i < 0 {
		t.Fatalf("busy message %q names no operation", busy.Message)
	}
	id := strings.Fields(busy.Message[i+len("operation "):])[0]
	op, err := e.c.Operation(ctx, id)
	if err != nil || op.Kind != api.KindImport || op.Distro != "slow" || op.Status != api.StatusRunning {
		t.Fatalf("the operation the refusal names = %+v, %v; want the running import of slow", op, err)
	}
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/distros/slow/start", ""},
		{"POST", "/distros/slow/clone", `{"name":"copy"}`},
		{"PATCH", "/distros/slow", `{"name":"renamed"}`},
		{"POST", "/distros/slow/export", ""},
	} {
		status, raw := e.do(tc.method, tc.path, strings.NewReader(tc.body), map[string]string{"Content-Type": "application/json"})
		if ae := apiErr(raw); status != http.StatusConflict || ae.Code != api.CodeBusy || !strings.Contains(ae.Message, id) {
			t.Errorf("%s %s during the import = %d %s, want 409 busy naming %s", tc.method, tc.path, status, raw, id)
		}
	}
	// Who subscribes now starts from the import under way.
	ev, err := e.c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := <-ev.C
	ev.Close()
	if first.Type != api.EventSnapshot || len(first.Snapshot.Operations) != 1 || first.Snapshot.Operations[0].ID != id ||
		len(first.Snapshot.Distros) != 1 || first.Snapshot.Distros[0].State != api.StateInstalling {
		t.Errorf("snapshot during the import = %+v, want slow Installing and its import", first.Data())
	}
	// What the cancel must clean up is there (so the probes below can see it).
	if status, _ := e.do("GET", "/distros/slow", nil, nil); status != http.StatusOK {
		t.Errorf("GET the distro being imported = %d, want 200", status)
	}
	if files := e.entries("tmp"); len(files) == 0 {
		t.Errorf("no staging under tmp/ during the import")
	}

	start := time.Now()
	op, err = e.c.CancelOperation(ctx, id)
	if err != nil || op.Status != api.StatusFailure || !strings.Contains(op.Error, "cancel") {
		t.Fatalf("cancel of a stalled import = %+v, %v (after %v), want it failed as cancelled", op, err, time.Since(start))
	}
	if got, err := e.c.Operation(ctx, id); err != nil || got.Status != api.StatusFailure {
		t.Errorf("the operation after the cancel = %+v, %v", got, err)
	}
	select {
	case r := <-uploaded:
		// The upload ends at once; its reply, if it got one, says why.
		if r.err == nil && (r.status != http.StatusConflict || apiErr(r.raw).Code != api.CodeCancelled) {
			t.Errorf("the cancelled upload was answered %d %s, want 409 cancelled", r.status, r.raw)
		}
		t.Logf("the cancelled upload: %d %s %v", r.status, bytes.TrimSpace(r.raw), r.err)
	case <-time.After(wait):
		t.Error("the cancelled upload did not end")
	}
	if status, raw := e.do("GET", "/distros/slow", nil, nil); status != http.StatusNotFound || apiErr(raw).Code != api.CodeNotFound {
		t.Errorf("GET after the cancel = %d %s, want 404 not_found", status, raw)
	}
	if list, err := e.c.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("distros after the cancel = %+v, %v", list, err)
	}
	if files := append(e.entries("tmp"), e.entries("distros")...); len(files) != 0 {
		t.Errorf("the cancelled import left %q", files)
	}
	if e.b.Starts() != 0 {
		t.Errorf("a distro being imported was started")
	}
	// The name is free again.
	e.importDistro("slow")
}

// recorder collects an event stream's events as they come.
type recorder struct {
	mu     sync.Mutex
	events []api.Event
	done   chan struct{}
}

func record(ch <-chan api.Event) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ev := range ch {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}
	}()
	return r
}

// facts returns the events as "entity: fact" strings, in order: "distro
// one: Running", "distro two: removed", "import two: success", "snapshot:
// one Stopped". An entity's fact repeated in a row (a distro's disk usage
// changed, an operation's progress) is kept once.
func (r *recorder) facts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	last := map[string]string{}
	for _, ev := range r.events {
		var entity, fact string
		switch ev.Type {
		case api.EventSnapshot:
			var ds []string
			for _, d := range ev.Snapshot.Distros {
				ds = append(ds, d.Name+" "+string(d.State))
			}
			entity, fact = "snapshot", strings.Join(ds, ", ")+fmt.Sprintf(" (%d operations)", len(ev.Snapshot.Operations))
			out = append(out, entity+": "+fact)
			continue
		case api.EventDistro:
			entity, fact = "distro "+ev.Distro.Name, string(ev.Distro.State)
		case api.EventDistroRemoved:
			entity, fact = "distro "+ev.Removed.Name, "removed"
		case api.EventOperation:
			entity, fact = ev.Operation.Kind+" "+ev.Operation.Distro, ev.Operation.Status
		default:
			entity, fact = string(ev.Type), "?"
		}
		if last[entity] == fact {
			continue
		}
		last[entity] = fact
		out = append(out, entity+": "+fact)
	}
	return out
}

func (r *recorder) waitFact(t *testing.T, fact string) {
	t.Helper()
	testutil.WaitFor(t, wait, "event "+fact, func() bool { return slices.Contains(r.facts(), fact) })
}

// TestEvents: GET /events is a server-sent event stream that starts with a
// snapshot and then carries every change, in the order it happened.
func TestEvents(t *testing.T) {
	e := newEnv(t, nil)
	e.importDistro("one")
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()

	// The wire: text/event-stream, a retry, then the snapshot as one event.
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Errorf("GET /events = %d %s", resp.StatusCode, ct)
	}
	br := bufio.NewReader(resp.Body)
	var lines []string
	for len(lines) < 5 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", lines, err)
		}
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	resp.Body.Close()
	var snap api.Snapshot
	data, ok := strings.CutPrefix(lines[3], "data: ")
	if lines[0] != "retry: 1000" || lines[1] != "" || lines[2] != "event: snapshot" || !ok || lines[4] != "" ||
		json.Unmarshal([]byte(data), &snap) != nil || len(snap.Distros) != 1 || snap.Distros[0].Name != "one" {
		t.Errorf("the stream starts %q, want a retry, then a snapshot of distro one", lines)
	}

	ev, err := e.c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	r := record(ev.C)
	r.waitFact(t, "snapshot: one Stopped (0 operations)")

	if _, err := e.c.Start(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	r.waitFact(t, "distro one: Running")
	e.importDistro("two")
	r.waitFact(t, "import two: success")
	r.waitFact(t, "distro two: Stopped")
	if _, err := e.c.Terminate(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	r.waitFact(t, "distro one: Stopped")
	if err := e.c.Unregister(ctx, "two"); err != nil {
		t.Fatal(err)
	}
	r.waitFact(t, "unregister two: success")
	r.waitFact(t, "distro two: removed")
	ev.Close()
	<-r.done
	if err := ev.Err(); err != nil {
		t.Errorf("the stream ended with %v", err)
	}

	facts := r.facts()
	t.Logf("events: %q", facts)
	if facts[0] != "snapshot: one Stopped (0 operations)" {
		t.Errorf("the first event is %q, want the snapshot", facts[0])
	}
	want := map[string][]string{
		"snapshot":       {"one Stopped (0 operations)"}, // once: the stream never reconnected
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
	// Across entities, what the calls' order makes certain.
	for _, pair := range [][2]string{
		{"distro one: Running", "import two: running"},
		{"distro one: Running", "distro two: Installing"},
		{"import two: success", "distro one: Stopped"},
		{"distro two: Stopped", "distro one: Stopped"},
		{"distro one: Stopped", "unregister two: running"},
		{"unregister two: running", "distro two: removed"},
	} {
		if index[pair[0]] >= index[pair[1]] {
			t.Errorf("%q came after %q", pair[0], pair[1])
		}
	}
}

// TestSettings: GET and PUT /settings; a refused change changes nothing.
func TestSettings(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	before, err := e.c.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.DefaultVersion != 1 || before.ScrollbackBytes == 0 || before.SessionTimeoutS == 0 {
		t.Errorf("default settings = %+v", before)
	}
	scroll, timeout, user := 4096, 60, "me"
	mem, cpus, idle, kernel := 2048, 2, -1, "/boot/vmlinuz"
	after, err := e.c.UpdateSettings(ctx, api.SettingsUpdate{ScrollbackBytes: &scroll, SessionTimeoutS: &timeout, DefaultUser: &user,
		VMMemoryMiB: &mem, VMProcessors: &cpus, VMIdleTimeoutS: &idle, Kernel: &kernel})
	want := before
	want.ScrollbackBytes, want.SessionTimeoutS, want.DefaultUser = scroll, timeout, user
	want.VMMemoryMiB, want.VMProcessors, want.VMIdleTimeoutS, want.Kernel = mem, cpus, idle, kernel
	if err != nil || after != want {
		t.Errorf("PUT = %+v, %v; want %+v", after, err, want)
	}
	if got, err := e.c.Settings(ctx); err != nil || got != want {
		t.Errorf("GET after PUT = %+v, %v; want %+v", got, err, want)
	}

	for _, body := range []string{
		`{"default_version": 3}`,
		`{"scrollback_bytes": 10}`,
		`{"session_timeout_s": 1}`,
		`{"v1_lan_default": "on"}`,
		`{"import_reserve_percent": 90}`,
		`{"vm_memory_mib": 100}`,
		`{"vm_processors": -1}`,
		`{"kernel": "relative/vmlinuz"}`,
		`{"default_user": "no/slash"}`,
		`{"scrollback_bytes": 8192, "no_such_setting": 1}`,
		`{"scrollback_bytes": "8192"}`,
		`{"scrollback_bytes": 8192} {}`,
		`not json`,
	} {
		status, raw := e.do("PUT", "/settings", strings.NewReader(body), map[string]string{"Content-Type": "application/json"})
		if ae := apiErr(raw); status != http.StatusBadRequest || ae.Code != api.CodeInvalid {
			t.Errorf("PUT %s = %d %s, want 400 invalid", body, status, raw)
		}
	}
	if got, err := e.c.Settings(ctx); err != nil || got != want {
		t.Errorf("GET after refused changes = %+v, %v; want %+v", got, err, want)
	}
}

// TestErrorReplies: every refusal is {"error":{"code","message"}} with the
// status its code means; each probe's request succeeds when the one thing
// that is wrong with it is put right (the first rows).
func TestErrorReplies(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxJSONBytes = 1 << 10 })
	e.importDistro("alpha")
	garbage := bytes.Repeat([]byte("not a tarball "), 100)
	big := `{"name":"` + strings.Repeat("x", 2<<10) + `"}`
	ws := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	tests := []struct {
		name, method, path string
		body               string
		hdr                map[string]string
		status             int
		code               string // "" for a success
	}{
		// Controls: the same requests, right.
		{"with the token", "GET", "/distros", "", nil, 200, ""},
		{"the distro", "GET", "/distros/alpha", "", nil, 200, ""},
		{"same origin", "POST", "/distros/alpha/start", "", map[string]string{"Origin": e.url}, 200, ""},
		{"small JSON", "PATCH", "/distros/alpha", `{"default_user":"root"}`, jsonCT, 200, ""},

		{"no token", "GET", "/distros", "", map[string]string{"Authorization": ""}, 401, api.CodeUnauthorized},
		{"wrong token", "GET", "/distros", "", map[string]string{"Authorization": "Bearer nope"}, 401, api.CodeUnauthorized},
		{"token in a cookie", "GET", "/distros", "", map[string]string{"Authorization": "", "Cookie": "subsys_token=" + token}, 401, api.CodeUnauthorized},
		{"events without token", "GET", "/events", "", map[string]string{"Authorization": ""}, 401, api.CodeUnauthorized},
		{"version without token", "GET", "/version", "", map[string]string{"Authorization": ""}, 401, api.CodeUnauthorized},
		{"status without token", "GET", "/status", "", map[string]string{"Authorization": ""}, 401, api.CodeUnauthorized},
		{"settings without token", "GET", "/settings", "", map[string]string{"Authorization": ""}, 401, api.CodeUnauthorized},
		{"host not allowed", "GET", "/distros", "", map[string]string{"Host": "evil.example"}, 403, api.CodeForbiddenHost},
		{"cross-site origin", "POST", "/distros/alpha/start", "", map[string]string{"Origin": "http://evil.example"}, 403, api.CodeForbiddenOrigin},
		{"cross-site fetch", "POST", "/distros/alpha/start", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, api.CodeForbiddenOrigin},
		{"cross-site websocket", "GET", "/distros/alpha/terminal", "", merge(ws, map[string]string{"Origin": "http://evil.example"}), 403, api.CodeForbiddenOrigin},
		{"no such path", "GET", "/nothing-here", "", nil, 404, api.CodeNotFound},
		{"method not allowed", "PUT", "/distros", "", nil, 405, api.CodeMethodNotAllowed},
		{"no such distro", "GET", "/distros/missing", "", nil, 404, api.CodeNotFound},
		{"start a missing distro", "POST", "/distros/missing/start", "", nil, 404, api.CodeNotFound},
		{"unregister a missing distro", "DELETE", "/distros/missing", "", nil, 404, api.CodeNotFound},
		{"no such operation", "GET", "/operations/nope", "", nil, 404, api.CodeNotFound},
		{"cancel no operation", "DELETE", "/operations/nope", "", nil, 404, api.CodeNotFound},
		{"bad wait", "GET", "/operations/nope?wait=soon", "", nil, 400, api.CodeInvalid},
		{"terminal without upgrade", "GET", "/distros/alpha/terminal", "", nil, 400, api.CodeWebsocketRequired},
		{"exec/ws without upgrade", "GET", "/distros/alpha/exec/ws", "", nil, 400, api.CodeWebsocketRequired},
		{"terminal in a missing distro", "GET", "/distros/missing/terminal", "", ws, 404, api.CodeNotFound},
		{"terminal of bad size", "GET", "/distros/alpha/terminal?cols=0", "", ws, 400, api.CodeInvalid},
		{"reattach a missing session", "GET", "/distros/alpha/terminal?session=nope", "", ws, 404, api.CodeSessionNotFound},
		{"terminals of a missing distro", "GET", "/distros/missing/terminals", "", nil, 404, api.CodeNotFound},
		{"bad JSON", "PATCH", "/distros/alpha", `{"name":`, jsonCT, 400, api.CodeInvalid},
		{"unknown field", "PATCH", "/distros/alpha", `{"nmae":"x"}`, jsonCT, 400, api.CodeInvalid},
		{"JSON too big", "PATCH", "/distros/alpha", big, jsonCT, 413, api.CodeTooLarge},
		{"bad name", "PATCH", "/distros/alpha", `{"name":"../x"}`, jsonCT, 400, api.CodeInvalid},
		{"clone onto itself", "POST", "/distros/alpha/clone", `{"name":"alpha"}`, jsonCT, 409, api.CodeAlreadyExists},
		{"import a name taken", "POST", "/distros?name=alpha", string(tarball(t)), nil, 409, api.CodeAlreadyExists},
		{"import without a name", "POST", "/distros", string(tarball(t)), nil, 400, api.CodeInvalid},
		{"import of a bad version", "POST", "/distros?name=v&version=two", string(tarball(t)), nil, 400, api.CodeInvalid},
		{"import as version 2", "POST", "/distros?name=v2&version=2", string(tarball(t)), nil, 501, api.CodeUnsupported},
		{"import of garbage", "POST", "/distros?name=junk", string(garbage), nil, 400, api.CodeInvalidArchive},
		{"import from no path", "POST", "/distros", `{"name":"p","source":{}}`, jsonCT, 400, api.CodeInvalid},
		{"export in a bad format", "POST", "/distros/alpha/export?format=zip", "", nil, 400, api.CodeInvalid},
		{"ports without a port manager", "GET", "/distros/alpha/ports", "", nil, 501, api.CodeUnsupported},
		{"portproxy without a proxy", "GET", "/portproxy", "", nil, 501, api.CodeUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			status, raw := e.do(tc.method, tc.path, body, tc.hdr)
			if status != tc.status {
				t.Errorf("%s %s = %d %s, want %d %s", tc.method, tc.path, status, raw, tc.status, tc.code)
			}
			if tc.code == "" {
				return
			}
			// The shape itself is checked by specChecker for every reply.
			if ae := apiErr(raw); ae.Code != tc.code || ae.Message == "" {
				t.Errorf("%s %s = %s, want code %s and a message", tc.method, tc.path, raw, tc.code)
			}
		})
	}
	// Refused imports left nothing.
	if list, err := e.c.List(context.Background()); err != nil || len(list) != 1 {
		t.Errorf("distros after the refusals = %+v, %v; want alpha alone", list, err)
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// The OpenAPI contract, as the e2e tests check it.
var (
	specOnce sync.Once
	spec     *apispec.Spec
	specErr  error
)

func openAPISpec() (*apispec.Spec, error) {
	specOnce.Do(func() { spec, specErr = apispec.Load(server.OpenAPI) })
	return spec, specErr
}

// specChecker is an http.RoundTripper that checks every reply on its way
// to the client: a JSON one against openapi.yaml, an error one for the
// shape {"error":{"code","message"}} and nothing else.
type specChecker struct {
	t    testing.TB
	next http.RoundTripper
}

func (sc specChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := sc.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	isJSON := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
	if !isJSON && resp.StatusCode < 400 {
		return resp, nil
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	if resp.StatusCode >= 400 {
		checkErrorShape(sc.t, req, resp, raw)
	}
	if isJSON && !(resp.StatusCode >= 400 && specLacksErrors[req.Method+" "+strings.TrimPrefix(req.URL.Path, "/api/v1")]) {
		checkAgainstSpec(sc.t, req, resp.StatusCode, resp.Header, raw)
	}
	return resp, nil
}

// specLacksErrors are the operations to which openapi.yaml gives no error
// reply (no "default" response), though like every route they answer 401
// without a credential: their error replies are checked for their shape
// only. An entry removed here fails the test until the document has it.
var specLacksErrors = map[string]bool{}

// checkErrorShape fails unless raw is exactly {"error":{"code","message"}},
// both set, served as JSON.
func checkErrorShape(t testing.TB, req *http.Request, resp *http.Response, raw []byte) {
	t.Helper()
	var body struct {
		Error *struct {
			Code    *string `json:"code"`
			Message *string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(&body)
	if err == nil && dec.More() {
		err = errors.New("trailing data")
	}
	if ct := resp.Header.Get("Content-Type"); err == nil && !strings.HasPrefix(ct, "application/json") {
		err = fmt.Errorf("served as %q", ct)
	}
	if err == nil && (body.Error == nil || body.Error.Code == nil || *body.Error.Code == "" || body.Error.Message == nil || *body.Error.Message == "") {
		err = errors.New("code or message missing")
	}
	if err != nil {
		t.Errorf("%s %s → %d: not an API error reply (%v): %.300s", req.Method, req.URL.Path, resp.StatusCode, err, raw)
	}
}

// checkAgainstSpec validates one JSON reply against openapi.yaml. A path
// the API does not have (404, 405) is not in the document either.
func checkAgainstSpec(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	s, err := openAPISpec()
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !s.Has(req) && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) {
		return
	}
	s.Check(t, req, status, header, body)
}
