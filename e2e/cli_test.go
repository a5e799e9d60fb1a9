//go:build linux

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// TestCLI drives the verbs a WSL user knows through bin/subsys.
func TestCLI(t *testing.T) {
	s := startServer(t, "")
	dir := t.TempDir()
	tarball := filepath.Join(dir, "tiny.tar.gz")
	if err := os.WriteFile(tarball, tinyRootfs(t), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI := func(stdin []byte, args ...string) string {
		t.Helper()
		out, errOut, code := s.cli(bytes.NewReader(stdin), args...)
		if code != 0 {
			t.Fatalf("subsys %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	mustCLI(nil, "import", "one", tarball)
	raw, _ := os.ReadFile(tarball)
	mustCLI(raw, "import", "two", "-")

	out := mustCLI(nil, "list", "-v")
	want := []string{"NAME", "STATE", "VERSION", "* one", "Stopped", "  two"}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("list -v output lacks %q:\n%s", w, out)
		}
	}
	if out := mustCLI(nil, "list"); !strings.Contains(out, "one (Default)") {
		t.Errorf("list = %q, want the default marked", out)
	}

	// run: default distro, stdin, exit code passthrough, -u, --cd, -d.
	if out := mustCLI(nil, "run", "--", "hostname"); out != "one\n" {
		t.Errorf("run hostname = %q, want one (the default)", out)
	}
	if out := mustCLI([]byte("piped\n"), "run", "-d", "two", "--", "cat"); out != "piped\n" {
		t.Errorf("run cat with stdin = %q", out)
	}
	if out := mustCLI(nil, "run", "-d", "two", "-u", "alice", "--cd", "/tmp", "--", "sh", "-c", "id -un; pwd"); out != "alice\n/tmp\n" {
		t.Errorf("run -u --cd = %q", out)
	}
	stdout, stderr, code := s.cli(nil, "run", "-d", "two", "--", "sh", "-c", "echo out; echo err >&2; exit 42")
	if code != 42 || stdout != "out\n" || stderr != "err\n" {
		t.Errorf("run exit 42 = code %d out %q err %q", code, stdout, stderr)
	}
	if out := mustCLI(nil, "run", "ls", "/"); !strings.Contains(out, "bin") {
		t.Errorf("run without -- = %q", out)
	}
	if _, errOut, code := s.cli(nil, "run", "-d", "nope", "--", "true"); code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("run in an unknown distro: code %d, stderr %q; want an error naming it", code, errOut)
	}
	if out := mustCLI(nil, "list", "--running"); !strings.Contains(out, "one") || !strings.Contains(out, "two") {
		t.Errorf("list --running = %q", out)
	}

	mustCLI(nil, "set-default", "two")
	if out := mustCLI(nil, "run", "hostname"); out != "two\n" {
		t.Errorf("after set-default two, run hostname = %q", out)
	}
	mustCLI(nil, "set-user", "two", "alice")
	if out := mustCLI(nil, "run", "id", "-un"); out != "alice\n" {
		t.Errorf("after set-user, run id = %q", out)
	}
	mustCLI(nil, "terminate", "one")
	if out := mustCLI(nil, "list", "-v"); !strings.Contains(out, "one") || !strings.Contains(out, "Stopped") {
		t.Errorf("after terminate: %s", out)
	}

	exported := filepath.Join(dir, "one.tar.zst")
	mustCLI(nil, "export", "one", exported)
	if b, _ := os.ReadFile(exported); len(b) < 4 || !bytes.Equal(b[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Errorf("export to .tar.zst did not write zstd")
	}
	var buf bytes.Buffer
	if out := mustCLI(nil, "export", "one", "-", "--format", "tar"); len(out) < 1024 {
		t.Errorf("export to stdout wrote %d bytes", len(out))
	}
	buf.Reset()
	if _, errOut, code := s.cli(nil, "export", "nope", filepath.Join(dir, "nope.tar")); code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("export of an unknown distro: code %d err %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope.tar")); !os.IsNotExist(err) {
		t.Errorf("failed export left a file behind")
	}

	mustCLI(nil, "clone", "one", "three")
	mustCLI(nil, "rename", "three", "four")
	if out := mustCLI(nil, "run", "-d", "four", "hostname"); out != "four\n" {
		t.Errorf("renamed clone hostname = %q", out)
	}
	if out := mustCLI(nil, "status"); !strings.Contains(out, "Default distro: two") {
		t.Errorf("status = %q", out)
	}
	if out := mustCLI(nil, "version"); !strings.Contains(out, "server version") {
		t.Errorf("version = %q", out)
	}
	mustCLI(nil, "shutdown")
	if out := mustCLI(nil, "list", "--running"); strings.Contains(out, "one") {
		t.Errorf("after shutdown, running = %q", out)
	}
	mustCLI(nil, "unregister", "four")
	if _, errOut, code := s.cli(nil, "import", "one", tarball); code == 0 || !strings.Contains(errOut, "already exists") {
		t.Errorf("import of a taken name: code %d err %q", code, errOut)
	}

	// SUBSYS_URL and SUBSYS_TOKEN work without a data directory.
	cmd := newCLI(subsysBin, "--data", t.TempDir(), "list")
	cmd.Env = append(os.Environ(), "SUBSYS_URL="+s.url, "SUBSYS_TOKEN="+s.token)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "one") {
		t.Errorf("list with SUBSYS_URL/SUBSYS_TOKEN: %v %s", err, out)
	}
}

// cliEnv is the environment for a CLI that must find the server on its own:
// no SUBSYS_URL or SUBSYS_TOKEN from the test's environment.
func cliEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SUBSYS_URL=") && !strings.HasPrefix(kv, "SUBSYS_TOKEN=") {
			env = append(env, kv)
		}
	}
	return env
}

// runCLIEnv runs bin/subsys with args in env and returns stdout, stderr and the exit code.
func runCLIEnv(t *testing.T, env []string, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := newCLI(subsysBin, args...)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// trap listens on addr (when it is free) and counts the connections and the
// bytes it is offered: a CLI that falls back to TCP would send its token here.
type trap struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
	got   bytes.Buffer
}

func newTrap(t *testing.T, addr string) *trap {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil
	}
	tr := &trap{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				b, _ := io.ReadAll(io.LimitReader(c, 64<<10))
				tr.mu.Lock()
				tr.conns++
				tr.got.Write(b)
				tr.mu.Unlock()
			}()
		}
	}()
	return tr
}

// check fails the test when anything reached the trap.
func (tr *trap) check(t *testing.T, token string) {
	t.Helper()
	if tr == nil {
		return
	}
	time.Sleep(100 * time.Millisecond) // a late connection still counts
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.conns != 0 {
		t.Errorf("%d connections reached %s", tr.conns, tr.ln.Addr())
	}
	if token != "" && strings.Contains(tr.got.String(), token) {
		t.Errorf("the token reached %s", tr.ln.Addr())
	}
}

// TestCLINoTCPFallback: with the server down, no verb connects anywhere —
// not to 127.0.0.1:7070, which any local user may bind first, nor to a URL left
// in an old serve.json — and each says the server is not running, naming its
// socket. The token file is there to read: nothing may carry it off.
func TestCLINoTCPFallback(t *testing.T) {
	if subsysBin == "" {
		testenv.SkipOrFail(t, "needs bin/subsys: set SUBSYS_BIN, or run as root to build it")
	}
	data := t.TempDir()
	token := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	if err := os.WriteFile(filepath.Join(data, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	well := newTrap(t, "127.0.0.1:7070")
	if well == nil {
		t.Log("127.0.0.1:7070 is taken: checking the serve.json address only")
	}
	old := newTrap(t, "127.0.0.1:0")
	os.WriteFile(filepath.Join(data, "serve.json"), []byte(`{"url":"http://`+old.ln.Addr().String()+`"}`), 0o644)
	tarball := filepath.Join(data, "x.tar")
	os.WriteFile(tarball, []byte("x"), 0o644)
	sock := filepath.Join(data, "subsys.sock")
	verbs := [][]string{
		{"list"}, {"list", "-v"}, {"status"}, {"import", "x", tarball}, {"export", "x", filepath.Join(data, "out.tar")},
		{"run", "--", "true"}, {"run", "-d", "x", "--", "true"}, {"shell", "x"}, {"terminate", "x"}, {"shutdown"},
		{"unregister", "x"}, {"set-default", "x"}, {"clone", "x", "y"}, {"rename", "x", "y"}, {"set-user", "x", "root"},
		{"ports", "x"}, {"expose", "x", "80", "--lan"}, {"portproxy", "list"}, {"portproxy", "delete", "r"},
		{"portproxy", "add", "--listen-port", "1", "--connect-port", "2"}, {"dashboard"}, {"dashboard", "--no-browser"},
	}
	env := cliEnv()
	for _, stale := range []bool{false, true} {
		if stale {
			// The socket of a server that crashed: a file nothing listens on.
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}
		for _, args := range verbs {
			out, errOut, code := runCLIEnv(t, env, nil, append([]string{"--data", data}, args...)...)
			what := fmt.Sprintf("stale socket %v: subsys %s", stale, strings.Join(args, " "))
			if code == 0 || !strings.Contains(errOut, "not running") || !strings.Contains(errOut, sock) || !strings.Contains(errOut, "subsys serve") {
				t.Errorf("%s: exit %d, stderr %q; want an error that the server at %s is not running", what, code, errOut, sock)
			}
			if strings.Contains(out+errOut, token) {
				t.Errorf("%s printed the token", what)
			}
		}
	}
	if out, _, _ := runCLIEnv(t, env, nil, "--data", data, "version"); !strings.Contains(out, "server: not running") {
		t.Errorf("version with the server down = %q", out)
	}
	well.check(t, token)
	old.check(t, token)
}

// TestCLIOverSocket: with the server up, the CLI works through its socket
// alone — no token file to read, no TCP — including the exec websocket,
// export, `dashboard` and `token rotate`; and a process name full of escape
// sequences reaches `subsys ports` as visible text.
func TestCLIOverSocket(t *testing.T) {
	s := startServer(t, "")
	well := newTrap(t, "127.0.0.1:7070")
	// The token file gone: whatever works now works through the socket.
	tokenFile := filepath.Join(s.data, "token")
	if err := os.Rename(tokenFile, tokenFile+".away"); err != nil {
		t.Fatal(err)
	}
	env := cliEnv()
	must := func(stdin []byte, args ...string) string {
		t.Helper()
		out, errOut, code := runCLIEnv(t, env, stdin, append([]string{"--data", s.data}, args...)...)
		if code != 0 {
			t.Fatalf("subsys %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	raw := tinyRootfs(t)
	must(raw, "import", "sock", "-")
	if out := must(nil, "run", "--", "hostname"); out != "sock\n" {
		t.Errorf("run hostname over the socket = %q", out)
	}
	if out := must([]byte("piped\n"), "run", "-d", "sock", "--", "cat"); out != "piped\n" {
		t.Errorf("run cat over the socket = %q", out)
	}
	if out := must(nil, "export", "sock", "-", "--format", "tar"); len(out) < 1024 {
		t.Errorf("export over the socket wrote %d bytes", len(out))
	}

	// A relative --data is the same directory.
	rel, err := filepath.Rel(mustGetwd(t), s.data)
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runCLIEnv(t, env, nil, "--data", rel, "list"); code != 0 || !strings.Contains(out, "sock") {
		t.Errorf("list --data %s: exit %d, %q %q", rel, code, out, errOut)
	}

	// A listener named with escape sequences, as comm: the symlink's name
	// (busybox runs the applet named after it, its own name starting with busybox).
	evil := "busybox\x1b[2J\u202e"
	p := freePorts(t, 1)[0]
	s.sh("sock", fmt.Sprintf(`ln -s /bin/busybox "/tmp/$(printf 'busybox\033[2J\342\200\256')" && "/tmp/$(printf 'busybox\033[2J\342\200\256')" nc -l -p %d </dev/null >/dev/null 2>&1 &`, p))
	waitFor(t, 10*time.Second, "the listener in the ports list", func() bool {
		for _, q := range s.ports("sock") {
			if q.Port == p && q.Process == evil {
				return true
			}
		}
		return false
	})
	out := must(nil, "ports", "sock")
	if strings.ContainsAny(out, "\x1b\u202e") || !strings.Contains(out, `busybox\x1b[2J\u202e`) {
		t.Errorf("ports = %q, want the process name escaped", out)
	}
	if out := must(nil, "ports", "sock", "--json"); strings.ContainsAny(out, "\x1b\u202e") {
		t.Errorf("ports --json = %q, want no raw escape or bidi character", out)
	}

	// dashboard: a login URL with the current token in its fragment.
	os.Rename(tokenFile+".away", tokenFile)
	out = must(nil, "dashboard", "--no-browser")
	if want := "#token=" + s.token; !strings.HasPrefix(out, "http://localhost:") || !strings.Contains(out, want) {
		t.Errorf("dashboard = %q, want http://localhost:…/%s", out, want)
	}

	// token rotate: a new token in the file, the old one refused.
	oldToken := s.token
	out = must(nil, "token", "rotate")
	if !strings.Contains(out, tokenFile) || !strings.Contains(out, "subsys dashboard") {
		t.Errorf("token rotate = %q", out)
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(b))
	if fi, _ := os.Stat(tokenFile); s.token == oldToken || len(s.token) != 64 || fi.Mode().Perm() != 0o600 {
		t.Errorf("after rotate the token file holds %q, mode %v", s.token, fi.Mode().Perm())
	}
	if st, _ := s.api("GET", "/version", nil, nil); st != 200 {
		t.Errorf("GET /version with the new token: %d", st)
	}
	req, _ := http.NewRequest("GET", s.url+"/api/v1/version", nil)
	req.Header.Set("Authorization", "Bearer "+oldToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("the old token after rotate: %v %v, want 401", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	if out := must(nil, "dashboard", "--no-browser"); !strings.Contains(out, "#token="+s.token) {
		t.Errorf("dashboard after rotate = %q, want the new token", out)
	}

	// With the server stopped, rotate writes the file itself.
	s.stop()
	out = must(nil, "token", "rotate")
	if !strings.Contains(out, "not running") {
		t.Errorf("token rotate with the server down = %q", out)
	}
	if b, _ := os.ReadFile(tokenFile); strings.TrimSpace(string(b)) == s.token || len(b) != 65 {
		t.Errorf("token rotate with the server down left %q", b)
	}
	s.start() // the cleanup talks to it
	well.check(t, oldToken)
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
