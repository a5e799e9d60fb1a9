package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
)

// fake is a stand-in for `subsys serve` that records what reaches it.
type fake struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (f *fake) record(r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, r)
}

func (f *fake) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.reqs...)
}

// serveSocket serves h on dir/subsys.sock until the test ends.
func serveSocket(t *testing.T, dir string, h http.HandlerFunc) *fake {
	t.Helper()
	f := &fake{}
	ln, err := net.Listen("unix", filepath.Join(dir, SocketName))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		h(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

// listenTCP listens on addr and counts the connections it is offered.
func listenTCP(t *testing.T, addr string) (net.Listener, *int) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil
	}
	var mu sync.Mutex
	n := new(int)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			*n++
			mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln, n
}

// runCLI runs the command line with args and returns what it printed.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	t.Setenv("SUBSYS_URL", "")
	t.Setenv("SUBSYS_TOKEN", "")
	var out, errOut bytes.Buffer
	oldOut, oldErr := stdout, stderr
	stdout, stderr = &out, &errOut
	defer func() { stdout, stderr = oldOut, oldErr }()
	root := newRoot(Build{Version: "test"})
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func writeJSONReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// TestSocketClient: without a URL the CLI reaches the server on its socket,
// with Host: localhost and no token, even when a token file is there to read.
func TestSocketClient(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "token"), []byte("secret-token-secret-token-secret\n"), 0o600)
	f := serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
		writeJSONReply(w, 200, []api.Distro{{Name: "debian", State: "Running", Version: 1, Default: true}, {Name: "alpine", State: "Stopped", Version: 1}})
	})
	out, _, err := runCLI(t, "--data", dir, "list", "-v")
	if err != nil {
		t.Fatalf("list -v: %v", err)
	}
	for _, want := range []string{"NAME", "* debian", "Running", "  alpine"} {
		if !strings.Contains(out, want) {
			t.Errorf("list -v = %q, lacks %q", out, want)
		}
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != "GET" || r.URL.Path != "/api/v1/distros" || r.Host != "localhost" {
		t.Errorf("request = %s %s Host %q, want GET /api/v1/distros Host localhost", r.Method, r.URL.Path, r.Host)
	}
	if a := r.Header.Get("Authorization"); a != "" {
		t.Errorf("a request over the socket carried Authorization %q: the socket needs no token", a)
	}
}

// TestNoServerNoFallback: with no server, every verb says so, names the
// socket, and connects to nothing else — not a port another local user could
// have bound, nor a URL left in serve.json.
func TestNoServerNoFallback(t *testing.T) {
	dir := t.TempDir()
	token := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600)
	trap, trapped := listenTCP(t, "127.0.0.1:0")
	os.WriteFile(filepath.Join(dir, "serve.json"), []byte(`{"url":"http://`+trap.Addr().String()+`"}`), 0o644)
	_, trapped7070 := listenTCP(t, "127.0.0.1:7070") // nil when taken: then not checked
	tarball := filepath.Join(dir, "x.tar")
	os.WriteFile(tarball, []byte("not a tar"), 0o644)
	sock := filepath.Join(dir, SocketName)
	verbs := [][]string{
		{"list"}, {"list", "-v"}, {"status"}, {"import", "x", tarball}, {"export", "x", filepath.Join(dir, "out.tar")},
		{"run", "-d", "x", "--", "true"}, {"shell", "x"}, {"terminate", "x"}, {"shutdown"}, {"unregister", "x"},
		{"set-default", "x"}, {"clone", "x", "y"}, {"rename", "x", "y"}, {"set-user", "x", "root"},
		{"ports", "x"}, {"expose", "x", "80", "--lan"}, {"portproxy", "list"}, {"portproxy", "delete", "r"},
		{"portproxy", "add", "--listen-port", "1", "--connect-port", "2"}, {"dashboard", "--no-browser"},
	}
	for _, stale := range []bool{false, true} {
		if stale {
			// A socket file nobody listens on: a server that crashed.
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}
		for _, args := range verbs {
			out, _, err := runCLI(t, append([]string{"--data", dir}, args...)...)
			var nr *client.NotRunningError
			if !errors.As(err, &nr) {
				t.Errorf("stale socket %v: subsys %s = %v, want the server is not running", stale, strings.Join(args, " "), err)
				continue
			}
			msg := err.Error()
			if !strings.Contains(msg, "not running") || !strings.Contains(msg, sock) || !strings.Contains(msg, "subsys serve") {
				t.Errorf("subsys %s: error %q, want it to name %s and `subsys serve`", strings.Join(args, " "), msg, sock)
			}
			if strings.Contains(out+msg, token) {
				t.Errorf("subsys %s printed the token", strings.Join(args, " "))
			}
		}
	}
	out, _, err := runCLI(t, "--data", dir, "version")
	if err != nil || !strings.Contains(out, "server: not running") {
		t.Errorf("version = %q, %v; want the server not running", out, err)
	}
	time.Sleep(50 * time.Millisecond) // let the listeners count a late connection
	if *trapped != 0 {
		t.Errorf("%d connections reached the URL in serve.json", *trapped)
	}
	if trapped7070 != nil && *trapped7070 != 0 {
		t.Errorf("%d connections reached 127.0.0.1:7070", *trapped7070)
	}
}

// TestURLClient: SUBSYS_URL reaches a server over TCP with the token from
// SUBSYS_TOKEN or from the data directory.
func TestURLClient(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		writeJSONReply(w, 200, []api.Distro{{Name: "debian"}})
	}))
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "token"), []byte("from-file\n"), 0o600)
	tests := []struct {
		name, url, env, want string
		args                 []string
	}{
		{"SUBSYS_URL and token file", srv.URL, "", "Bearer from-file", nil},
		{"SUBSYS_URL and SUBSYS_TOKEN", srv.URL, "from-env", "Bearer from-env", nil},
		{"--url", "", "from-env", "Bearer from-env", []string{"--url", srv.URL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			args := append([]string{"--data", dir}, tt.args...)
			args = append(args, "list")
			t.Setenv("SUBSYS_URL", tt.url)
			t.Setenv("SUBSYS_TOKEN", tt.env)
			var out bytes.Buffer
			stdout = &out
			defer func() { stdout = os.Stdout }()
			root := newRoot(Build{})
			root.SetArgs(args)
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("Authorization = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("no token", func(t *testing.T) {
		t.Setenv("SUBSYS_URL", srv.URL)
		t.Setenv("SUBSYS_TOKEN", "")
		root := newRoot(Build{})
		root.SetArgs([]string{"--data", t.TempDir(), "list"})
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "SUBSYS_TOKEN") {
			t.Errorf("list without a token = %v, want an error naming SUBSYS_TOKEN", err)
		}
	})
}

// TestHostileStrings: what a distro named or a server said reaches the
// terminal without a single control or bidi character, in every table and
// error the CLI prints.
func TestHostileStrings(t *testing.T) {
	evil := "nc\x1b]0;pwned\x07\x1b[2J\u009b31m\u202e\x7f\xff\tX\nY"
	dir := t.TempDir()
	serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/v1/distros" && r.Method == "GET":
			writeJSONReply(w, 200, []api.Distro{{Name: evil, State: api.DistroState(evil), Default: true}})
		case strings.HasSuffix(r.URL.Path, "/ports") && r.Method == "GET":
			writeJSONReply(w, 200, []api.Port{{Proto: "tcp", Port: 8080, Address: evil, Process: evil, PID: 7, State: "error", Error: evil, Allow: []string{evil}}})
		case r.URL.Path == "/api/v1/portproxy" && r.Method == "GET":
			writeJSONReply(w, 200, []api.Rule{{ID: evil, Proto: evil, ListenAddress: evil, ConnectAddress: evil, State: evil}})
		case strings.HasSuffix(r.URL.Path, "/ports/tcp/80"):
			writeJSONReply(w, 200, api.Port{Proto: evil, Port: 80, State: "error", Error: evil})
		case r.URL.Path == "/api/v1/status":
			writeJSONReply(w, 200, map[string]any{"version": evil, "default": evil})
		case strings.HasSuffix(r.URL.Path, "/clone"):
			writeJSONReply(w, 202, api.Operation{ID: "op1", Kind: evil, Distro: evil, Status: "failure", Error: evil})
		case r.URL.Path == "/api/v1/version":
			writeJSONReply(w, 200, map[string]string{"version": evil})
		default:
			writeJSONReply(w, 404, map[string]any{"error": map[string]string{"code": "distro_not_found", "message": "no distro " + evil}})
		}
	})
	for _, args := range [][]string{
		{"list"}, {"list", "-v"}, {"ports", "x"}, {"ports", "x", "--json"}, {"portproxy", "list"}, {"portproxy", "list", "--json"},
		{"expose", "x", "80"}, {"status"}, {"version"}, {"clone", "x", "y"}, {"terminate", "x"}, {"export", "x", "-"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, errOut, err := runCLI(t, append([]string{"--data", dir}, args...)...)
			for i, line := range strings.Split(out+errOut, "\n") {
				checkPrintable(t, fmt.Sprintf("output line %d", i), line)
			}
			if err != nil {
				checkPrintable(t, "error", err.Error())
			}
			if !strings.Contains(out+errOut, `\x1b`) && (err == nil || !strings.Contains(err.Error(), `\x1b`)) && !strings.HasSuffix(args[len(args)-1], "json") {
				t.Errorf("the escape is not shown at all: out %q err %v", out, err)
			}
		})
	}
}

// TestExportPOST: export is a POST with the format in the query.
func TestExportPOST(t *testing.T) {
	dir := t.TempDir()
	f := serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("tarball"))
	})
	dst := filepath.Join(dir, "out.tar.zst")
	if _, _, err := runCLI(t, "--data", dir, "export", "debian", dst); err != nil {
		t.Fatal(err)
	}
	r := f.requests()[0]
	if r.Method != "POST" || r.URL.Path != "/api/v1/distros/debian/export" || r.URL.Query().Get("format") != "tar.zst" {
		t.Errorf("export sent %s %s, want POST /api/v1/distros/debian/export?format=tar.zst", r.Method, r.URL)
	}
	if b, _ := os.ReadFile(dst); string(b) != "tarball" {
		t.Errorf("exported file = %q", b)
	}
}

// TestExecWebsocketOverSocket: `run` dials the exec websocket through the
// socket, with no token.
func TestExecWebsocketOverSocket(t *testing.T) {
	dir := t.TempDir()
	f := serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.ReadMessage() // the start message
		conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"started"}`))
		conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"exit","code":3}`))
	})
	_, _, err := runCLI(t, "--data", dir, "run", "-d", "debian", "--", "true")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 3 {
		t.Fatalf("run = %v, want exit status 3", err)
	}
	r := f.requests()[0]
	if r.URL.Path != "/api/v1/distros/debian/exec/ws" || r.Host != "localhost" || r.Header.Get("Authorization") != "" {
		t.Errorf("websocket request = %s Host %q Authorization %q", r.URL.Path, r.Host, r.Header.Get("Authorization"))
	}
}

// TestRelativeDataDir: --data is made absolute before any verb runs.
func TestRelativeDataDir(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	os.Mkdir("mydata", 0o700)
	_, _, err := runCLI(t, "--data", "./mydata", "list")
	want := filepath.Join(base, "mydata", SocketName)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("list with --data ./mydata = %v, want the absolute socket %s", err, want)
	}
	// serve too: the flag's value is what the verb gets.
	root := newRoot(Build{})
	var seen string
	for _, c := range root.Commands() {
		if c.Name() == "serve" {
			c.RunE = func(cmd *cobra.Command, _ []string) error {
				seen = cmd.Flag("data").Value.String()
				return nil
			}
		}
	}
	root.SetArgs([]string{"serve", "--data", "mydata"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(base, "mydata"); seen != want {
		t.Errorf("serve --data mydata got %q, want %q", seen, want)
	}
}

// TestTokenRotate: over the socket the server rotates; with no server the
// CLI writes the file itself.
func TestTokenRotate(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		dir := t.TempDir()
		f := serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
			writeJSONReply(w, 200, map[string]string{"token_file": filepath.Join(dir, "token")})
		})
		out, _, err := runCLI(t, "--data", dir, "token", "rotate")
		if err != nil {
			t.Fatal(err)
		}
		if r := f.requests()[0]; r.Method != "POST" || r.URL.Path != "/api/v1/token/rotate" {
			t.Errorf("rotate sent %s %s", r.Method, r.URL.Path)
		}
		for _, want := range []string{filepath.Join(dir, "token"), "every browser session has ended", "subsys dashboard"} {
			if !strings.Contains(out, want) {
				t.Errorf("token rotate = %q, lacks %q", out, want)
			}
		}
	})
	t.Run("no server", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "token")
		old := strings.Repeat("a", 64) + "\n"
		os.WriteFile(path, []byte(old), 0o644)
		out, _, err := runCLI(t, "--data", dir, "token", "rotate")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		if !regexp.MustCompile(`^[0-9a-f]{64}\n$`).Match(b) || string(b) == old {
			t.Errorf("token file = %q, want 64 new hex characters and a newline", b)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("token file mode = %v, want 0600", fi.Mode().Perm())
		}
		for _, want := range []string{"not running", path, "subsys dashboard"} {
			if !strings.Contains(out, want) {
				t.Errorf("token rotate = %q, lacks %q", out, want)
			}
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("data directory holds %d files, want only the token", len(ents))
		}
	})
}

// TestDashboard: the URL is printed as the server sent it, if it is a URL a
// browser may be sent to.
func TestDashboard(t *testing.T) {
	dir := t.TempDir()
	login := "http://localhost:7070/#token=abc"
	f := serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
		writeJSONReply(w, 200, map[string]string{"url": login})
	})
	out, _, err := runCLI(t, "--data", dir, "dashboard", "--no-browser")
	if err != nil || out != login+"\n" {
		t.Errorf("dashboard = %q, %v; want %q", out, err, login)
	}
	if r := f.requests()[0]; r.Method != "GET" || r.URL.Path != "/api/v1/dashboard" {
		t.Errorf("dashboard sent %s %s", r.Method, r.URL.Path)
	}
}

func TestLoginURL(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"http://localhost:7070/#token=abc", true},
		{"https://subsys.example:8443/#token=abc", true},
		{"file:///etc/passwd", false},
		{"javascript:alert(1)", false},
		{"x-scheme-handler://evil", false},
		{"/#token=abc", false},
		{"http://user:pw@localhost/", false},
		{"http://localhost:7070/#token=abc\x1b[2J", false},
		{"http://localhost:7070/\u202e#token=abc", false},
		{"", false},
	}
	for _, tt := range tests {
		_, err := loginURL(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("loginURL(%q) = %v, want ok %v", tt.in, err, tt.ok)
		}
		if err != nil {
			checkPrintable(t, "loginURL error", err.Error())
		}
	}
}

// TestRedirectPage: the page xdg-open gets is the user's alone and sends the
// browser on to the URL, escaped for HTML.
func TestRedirectPage(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	path, err := writeRedirectPage(`http://localhost:7070/#token=a"b<c>&`)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("page %s: %v, mode %v; want 0600", path, err, fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("page directory mode = %v, want 0700", di.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `url=http://localhost:7070/#token=a&#34;b&lt;c&gt;&amp;"`) {
		t.Errorf("page = %s, want the URL escaped in the refresh", b)
	}
}

// TestListOutdatedAgent: list -v says which running distro has an agent from
// before an upgrade, and what to do, escaping the server's words.
func TestListOutdatedAgent(t *testing.T) {
	dir := t.TempDir()
	serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
		writeJSONReply(w, 200, []api.Distro{
			{Name: "old", State: "Running", Version: 1, AgentOutdated: true, Message: "agent speaks protocol 0\x1b[2J; terminate and start it"},
			{Name: "new", State: "Running", Version: 1},
		})
	})
	out, errOut, err := runCLI(t, "--data", dir, "list", "-v")
	if err != nil {
		t.Fatalf("list -v: %v", err)
	}
	if !strings.Contains(out, "old") || !strings.Contains(errOut, "note: old: agent speaks protocol 0") {
		t.Errorf("list -v = %q / %q, want a note on old", out, errOut)
	}
	if strings.Contains(errOut, "new:") || strings.ContainsRune(errOut, 0x1b) {
		t.Errorf("notes %q: only old, with escapes neutralized", errOut)
	}
}

// TestRunErrors: a command the server cannot start says why, sanitized, and a
// stream that breaks says it was run's.
func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		_, start, _ := conn.ReadMessage()
		if strings.Contains(string(start), "bob") {
			conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"error","error":{"code":"user_not_found","message":"no user \u001b[2Jbob"}}`))
			return
		}
		conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"started"}`))
		// …and the socket drops.
	})
	_, _, err := runCLI(t, "--data", dir, "run", "-d", "deb", "-u", "bob", "--", "true")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeUserNotFound || err.Error() != `no user \x1b[2Jbob` {
		t.Errorf("run as bob = %v, want the server's message, escaped", err)
	}
	_, _, err = runCLI(t, "--data", dir, "run", "-d", "deb", "--", "true")
	if err == nil || !strings.HasPrefix(err.Error(), "run: connection lost") {
		t.Errorf("run on a dropped socket = %v, want run: connection lost", err)
	}
}
