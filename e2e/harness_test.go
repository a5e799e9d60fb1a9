//go:build linux

// Package e2e tests the built subsys program end to end, as a user and a script
// would use it: a real `subsys serve` process on a real port, real namespaces,
// a real SQLite file, the real CLI. It needs root; `make test-integration` runs it.
package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/internal/testutil"
)

// subsysBin is the program under test: $SUBSYS_BIN, else built by TestMain.
var subsysBin string

func TestMain(m *testing.M) {
	subsysBin = os.Getenv("SUBSYS_BIN")
	var tmp string
	if subsysBin == "" && os.Geteuid() == 0 {
		var err error
		tmp, err = os.MkdirTemp("", "subsys-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := buildSubsys(tmp); err != nil {
			fmt.Fprintln(os.Stderr, "build subsys:", err)
			os.Exit(1)
		}
		subsysBin = filepath.Join(tmp, "subsys")
	}
	code := m.Run()
	if tmp != "" {
		os.RemoveAll(tmp)
	}
	os.Exit(code)
}

// buildSubsys builds the agent and the server into dir; the server finds the agent
// through SUBSYS_AGENT (set by startServer) since nothing is embedded.
func buildSubsys(dir string) error {
	agent := exec.Command("go", "build", "-o", filepath.Join(dir, "subsys-agent"), "../vmm/agent/cmd/subsys-agent")
	agent.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := agent.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "subsys"), "..").CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "needs root for namespaces and mounts: run `make test-integration` as root")
	}
}

// server is one running `subsys serve`.
type server struct {
	t     testing.TB
	data  string
	addr  string
	url   string
	token string
	cmd   *exec.Cmd
	log   *bytes.Buffer
	// level is the server's --log-level: debug for tests, info for
	// benchmarks, where a log line per connection would be measured too.
	level string
	// env is added to the server's environment (NAME=value), as
	// startServerEnv sets it.
	env []string
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer runs subsys serve on data (a new temp dir when empty) and waits until
// it answers. The server is killed at the end of the test, and its distros terminated.
func startServer(t testing.TB, data string) *server {
	t.Helper()
	return startServerLevel(t, data, "debug")
}

// startServerLevel is startServer with the server logging at level.
func startServerLevel(t testing.TB, data, level string) *server {
	t.Helper()
	return startServerEnv(t, data, level)
}

// startServerEnv is startServerLevel with env (NAME=value) added to the
// server's environment, at this start and every restart.
func startServerEnv(t testing.TB, data, level string, env ...string) *server {
	t.Helper()
	requireRoot(t)
	if data == "" {
		data = t.TempDir()
	}
	s := &server{t: t, data: data, addr: freePort(t), log: &bytes.Buffer{}, level: level, env: env}
	s.url = "http://" + s.addr
	s.start()
	t.Cleanup(func() {
		if s.cmd != nil && s.cmd.ProcessState == nil {
			s.api("POST", "/shutdown", nil, nil)
			s.cmd.Process.Signal(syscall.SIGTERM)
			s.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.log.String())
		}
	})
	return s
}

func (s *server) start() {
	s.t.Helper()
	s.cmd = exec.Command(subsysBin, "serve", "--data", s.data, "--listen", s.addr, "--log-level", s.level)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if agent := filepath.Join(filepath.Dir(subsysBin), "subsys-agent"); os.Getenv("SUBSYS_BIN") == "" {
		s.cmd.Env = append(os.Environ(), "SUBSYS_AGENT="+agent)
	}
	if len(s.env) > 0 {
		if s.cmd.Env == nil {
			s.cmd.Env = os.Environ()
		}
		s.cmd.Env = append(s.cmd.Env, s.env...)
	}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(s.data, "token")); err == nil {
			s.token = strings.TrimSpace(string(b))
			if st, _ := s.api("GET", "/version", nil, nil); st == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("server did not come up:\n%s", s.log.String())
}

// kill9 kills the server the hard way, as a crash would.
func (s *server) kill9() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// restart stops the server with SIGTERM and starts it again on the same data.
func (s *server) restart() {
	s.stop()
	s.start()
}

// stop stops the server with SIGTERM and waits until it has exited.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}

// api sends a JSON request (body may be nil, a []byte sent raw, or a value sent as
// JSON) and decodes a JSON reply into out when out is not nil.
func (s *server) api(method, path string, body any, out any) (int, []byte) {
	return s.request(method, path, body, out, nil)
}

func (s *server) request(method, path string, body any, out any, hdr http.Header) (int, []byte) {
	s.t.Helper()
	var r io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		r, ct = bytes.NewReader(b), "application/octet-stream"
	case io.Reader:
		r, ct = b, "application/octet-stream"
	default:
		j, _ := json.Marshal(b)
		r, ct = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(method, s.url+"/api/v1"+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		checkAgainstSpec(s.t, req, resp.StatusCode, resp.Header, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

// client returns a Go client of s over TCP with the token, whose every JSON
// reply is validated against openapi.yaml as api's are.
func (s *server) client() *client.Client {
	s.t.Helper()
	c, err := client.New(client.Config{URL: s.url, Token: s.token, Transport: specChecker{t: s.t, next: http.DefaultTransport}})
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// socketClient returns a Go client of s over its unix socket, as the CLI
// reaches it: no token.
func (s *server) socketClient() *client.Client {
	s.t.Helper()
	c, err := client.New(client.Config{Socket: filepath.Join(s.data, client.SocketName)})
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// specChecker is an http.RoundTripper that checks every JSON reply against
// openapi.yaml on its way to the client.
type specChecker struct {
	t    testing.TB
	next http.RoundTripper
}

func (sc specChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := sc.next.RoundTrip(req)
	if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return resp, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	checkAgainstSpec(sc.t, req, resp.StatusCode, resp.Header, raw)
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return resp, nil
}

// cli runs bin/subsys as a client of s and returns stdout, stderr and the exit code.
func (s *server) cli(stdin io.Reader, args ...string) (string, string, int) {
	s.t.Helper()
	cmd := exec.Command(subsysBin, append([]string{"--data", s.data}, args...)...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// The API's own types under the names older tests use; new code names
// api's types directly.
type (
	operation = api.Operation
	distro    = api.Distro
	apiErr    = api.ErrorBody
)

// importTar uploads tarball as distro name and waits for the operation to succeed.
func (s *server) importTar(name string, tarball []byte) {
	s.t.Helper()
	var op api.Operation
	st, raw := s.api("POST", "/distros?name="+name+"&version=1", tarball, &op)
	if st != http.StatusAccepted {
		s.t.Fatalf("import %s: status %d: %s", name, st, raw)
	}
	s.waitOp(op.ID)
}

func (s *server) waitOp(id string) api.Operation {
	s.t.Helper()
	var op api.Operation
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if st, raw := s.api("GET", "/operations/"+id+"?wait=5", nil, &op); st != 200 {
			s.t.Fatalf("operation %s: %d %s", id, st, raw)
		}
		if op.Status != api.StatusRunning {
			if op.Status != api.StatusSuccess {
				s.t.Fatalf("operation %s: %s: %s", id, op.Status, op.Error)
			}
			return op
		}
	}
	s.t.Fatalf("operation %s did not end", id)
	return op
}

// exec runs a command with POST …/exec: req is an api.ExecRequest, or a map
// for a body the typed request cannot say.
func (s *server) exec(name string, req any) api.ExecResult {
	s.t.Helper()
	var res api.ExecResult
	if st, raw := s.api("POST", "/distros/"+name+"/exec", req, &res); st != 200 {
		s.t.Fatalf("exec %v in %s: %d %s", req, name, st, raw)
	}
	return res
}

func (s *server) sh(name, script string) api.ExecResult {
	s.t.Helper()
	return s.exec(name, api.ExecRequest{Argv: []string{"/bin/sh", "-c", script}})
}

// busyboxApplets are linked into the tiny test root file system.
var busyboxApplets = []string{"sh", "ls", "cat", "echo", "id", "ps", "hostname", "sleep", "true", "false", "env",
	"pwd", "stty", "wc", "head", "mount", "grep", "readlink", "kill", "test", "touch", "mkdir", "rm", "tr", "base64", "od", "dd", "su", "pidof", "yes", "wc"}

// tinyRootfs returns a gzip-compressed tarball of a busybox root file system with
// root and alice (uid 1000).
func tinyRootfs(t testing.TB) []byte {
	t.Helper()
	bb, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		testenv.SkipOrFailf(t, "needs busybox-static (/usr/bin/busybox): %v", err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "run", "mnt", "mnt/host", "root", "home", "home/alice"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		h := &tar.Header{Typeflag: tar.TypeDir, Name: "./" + d + "/", Mode: mode}
		if d == "home/alice" {
			h.Uid, h.Gid = 1000, 1000
		}
		add(h, nil)
	}
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "./bin/busybox", Mode: 0o755}, bb)
	for _, a := range busyboxApplets {
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "./bin/" + a, Linkname: "busybox", Mode: 0o777}, nil)
	}
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "./etc/passwd", Mode: 0o644},
		[]byte("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n"))
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "./etc/group", Mode: 0o644},
		[]byte("root:x:0:\nalice:x:1000:\nstaff:x:50:alice\n"))
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// tarOf builds an uncompressed tarball from headers (bodies from Linkname for
// regular files when body is empty is not used: size 0).
func tarOf(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.h
		h.Size = int64(len(e.body))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

type tarEntry struct {
	h    tar.Header
	body string
}

// concatTars joins a gzip'ed tarball and a plain one into one plain tarball.
func concatTars(t testing.TB, gz, plain []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, r := range []*tar.Reader{tar.NewReader(zr), tar.NewReader(bytes.NewReader(plain))} {
		for {
			h, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			tw.WriteHeader(h)
			io.Copy(tw, r)
		}
	}
	tw.Close()
	return buf.Bytes()
}

// buildStatic builds the program in package dir (./testdata/…) as a static
// binary and returns its bytes, for a root file system or an initramfs.
func buildStatic(t testing.TB, dir string) []byte {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(dir))
	cmd := exec.Command("go", "build", "-o", bin, dir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", dir, err, out)
	}
	body, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// waitFor is testutil.WaitFor, by the name the e2e tests use.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, what, cond)
}
