package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// These tests run the agent's Server in the test process, without namespaces,
// against the host's own programs: they check the protocol and process
// handling. vmm/ns tests the agent as a distro's PID 1.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "needs root (the agent sets uids and groups of the processes it starts)")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// socketPair returns two connected unix stream sockets.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// startServer serves one connection and returns a client for it.
func startServer(t *testing.T) (*Client, *Server) {
	t.Helper()
	requireRoot(t)
	// As RunInit does: the test process may have inherited fds without
	// close-on-exec, which the fd check would see.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"), 0o644)
	os.WriteFile(group, []byte("root:x:0:\nnogroup:x:65534:\nusers:x:100:nobody\n"), 0o644)
	srv := NewServer(ServerConfig{Logger: testLogger(t), PasswdFile: passwd, GroupFile: group})
	a, b := socketPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ServeConn(ctx, a) }()
	c, err := NewClient(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeConn = %v", err)
		}
		srv.Close()
	})
	return c, srv
}

type result struct {
	stdout, stderr string
	status         ExitStatus
}

// run runs req with stdin and collects everything.
func run(t *testing.T, c *Client, req ExecRequest, stdin string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := c.Exec(ctx, req)
	if err != nil {
		t.Fatalf("Exec(%q) = %v", req.Argv, err)
	}
	defer p.Close()
	return collect(t, p, stdin)
}

func collect(t *testing.T, p *Process, stdin string) result {
	t.Helper()
	var wg sync.WaitGroup
	var out, errb bytes.Buffer
	wg.Go(func() { io.Copy(&out, p.Stdout()) })
	wg.Go(func() { io.Copy(&errb, p.Stderr()) })
	go func() {
		if stdin != "" {
			io.WriteString(p.Stdin(), stdin)
		}
		p.Stdin().Close()
	}()
	st, err := p.Wait()
	if err != nil {
		t.Fatalf("Wait = %v", err)
	}
	wg.Wait()
	return result{out.String(), errb.String(), st}
}

func sh(script string) ExecRequest { return ExecRequest{Argv: []string{"/bin/sh", "-c", script}} }

func TestHello(t *testing.T) {
	c, _ := startServer(t)
	info, err := c.Hello(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if info.PID != os.Getpid() || info.Hostname != host || info.Version != Version || info.Protocol != ProtocolVersion {
		t.Errorf("Hello = %+v, want pid %d host %q", info, os.Getpid(), host)
	}
}

func TestExecBasics(t *testing.T) {
	c, _ := startServer(t)
	tests := []struct {
		name string
		req  ExecRequest
		in   string
		want result
	}{
		{"stdout and stderr apart", sh("echo out; echo err >&2"), "", result{"out\n", "err\n", ExitStatus{}}},
		{"exit code", sh("exit 3"), "", result{"", "", ExitStatus{Code: 3}}},
		{"stdin and EOF", ExecRequest{Argv: []string{"cat"}}, "line 1\nline 2", result{"line 1\nline 2", "", ExitStatus{}}},
		{"env", ExecRequest{Argv: []string{"sh", "-c", `echo "$HOME $USER $FOO $TERM"`}, Env: []string{"FOO=bar"}}, "", result{"/root root bar \n", "", ExitStatus{}}},
		{"cwd", ExecRequest{Argv: []string{"pwd"}, Cwd: "/tmp"}, "", result{"/tmp\n", "", ExitStatus{}}},
		{"home missing means /", ExecRequest{Argv: []string{"pwd"}, User: "nobody"}, "", result{"/\n", "", ExitStatus{}}},
		{"user", ExecRequest{Argv: []string{"sh", "-c", "id -u; id -g; id -G"}, User: "65534"}, "", result{"65534\n65534\n65534 100\n", "", ExitStatus{}}},
		{"login shell", ExecRequest{Login: true}, "echo $0\n", result{"-sh\n", "", ExitStatus{}}},
		{"own session", sh(`ps -o sid= -p $$; echo $$`), "", result{}},
		{"fds", sh("ls /proc/self/fd"), "", result{"0\n1\n2\n3\n", "", ExitStatus{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, c, tt.req, tt.in)
			if tt.name == "own session" {
				f := strings.Fields(got.stdout)
				if len(f) != 2 || f[0] != f[1] {
					t.Errorf("session id and pid = %q, want equal (Setsid)", got.stdout)
				}
				return
			}
			if got != tt.want {
				t.Errorf("%q = %+v, want %+v", tt.req.Argv, got, tt.want)
			}
		})
	}
}

func TestExecErrors(t *testing.T) {
	c, _ := startServer(t)
	noExec := filepath.Join(t.TempDir(), "data")
	os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644)
	tests := []struct {
		name string
		req  ExecRequest
		want error
	}{
		{"no program", ExecRequest{Argv: []string{"no-such-program"}}, ErrNoSuchFile},
		{"no program path", ExecRequest{Argv: []string{"/no/such"}}, fs.ErrNotExist},
		{"bad cwd", ExecRequest{Argv: []string{"true"}, Cwd: "/no/such/dir"}, ErrNoSuchFile},
		{"no user", ExecRequest{Argv: []string{"true"}, User: "mallory"}, ErrUserNotFound},
		{"not executable", ExecRequest{Argv: []string{noExec}}, ErrPermission},
		{"bad env", ExecRequest{Argv: []string{"true"}, Env: []string{"NOEQUALS"}}, ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := c.Exec(context.Background(), tt.req)
			if err == nil {
				p.Close()
			}
			var re *RemoteError
			if !errors.Is(err, tt.want) || !errors.As(err, &re) {
				t.Errorf("Exec(%+v) = %v, want a RemoteError matching %v", tt.req, err, tt.want)
			}
		})
	}
}

func TestExecSignal(t *testing.T) {
	c, _ := startServer(t)
	p, err := c.Exec(context.Background(), sh("echo ready; sleep 100"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(p.Stdout(), buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("read = %q, %v", buf, err)
	}
	if err := p.Signal("KILL"); err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait()
	if err != nil || st != (ExitStatus{Code: 128 + 9, Signal: "KILL"}) {
		t.Errorf("Wait = %+v, %v, want 137 KILL", st, err)
	}
	if err := p.Signal("NOPE"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("Signal(NOPE) = %v, want ErrBadRequest", err)
	}
}

func TestExecTTY(t *testing.T) {
	c, _ := startServer(t)
	got := run(t, c, ExecRequest{Argv: []string{"sh", "-c", `stty size; test -t 0 && echo tty; echo "$TERM"; echo err >&2`}, TTY: true, Cols: 100, Rows: 30}, "")
	want := "30 100\r\ntty\r\nxterm-256color\r\nerr\r\n"
	if got.stdout != want || got.stderr != "" || got.status.Code != 0 {
		t.Errorf("tty = %+v, want stdout %q", got, want)
	}

	p, err := c.Exec(context.Background(), ExecRequest{Argv: []string{"sh"}, TTY: true, Cols: 80, Rows: 24})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out syncBuffer
	copied := make(chan struct{})
	go func() { io.Copy(&out, p.Stdout()); close(copied) }()
	io.WriteString(p.Stdin(), "stty size\n")
	waitFor(t, func() bool { return strings.Contains(out.String(), "24 80") })
	if err := p.Resize(120, 40); err != nil {
		t.Fatal(err)
	}
	io.WriteString(p.Stdin(), "stty size\n")
	waitFor(t, func() bool { return strings.Contains(out.String(), "40 120") })
	p.Stdin().Close() // Ctrl-D ends the shell
	st, err := p.Wait()
	<-copied
	if err != nil || st.Code != 0 {
		t.Errorf("Wait = %+v, %v, want 0", st, err)
	}
}

func TestExecBackgroundChildReturns(t *testing.T) {
	c, _ := startServer(t)
	for _, script := range []string{
		"sleep 1000 & echo $!",
		"nohup sleep 1000 >/dev/null 2>&1 & echo $!",
	} {
		start := time.Now()
		got := run(t, c, sh(script), "")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%q took %v, want prompt return", script, d)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(got.stdout))
		if err != nil {
			t.Fatalf("%q printed %q", script, got.stdout)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Errorf("background sleep %d is gone: %v", pid, err)
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Reading only stdout must not stall while stderr output waits in its buffer.
func TestExecReadOnlyStdout(t *testing.T) {
	c, _ := startServer(t)
	p, err := c.Exec(context.Background(), sh("head -c 200000 /dev/zero >&2; head -c 5000000 /dev/zero"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	n, err := io.Copy(io.Discard, p.Stdout())
	if err != nil || n != 5000000 {
		t.Fatalf("stdout = %d bytes, %v", n, err)
	}
	st, err := p.Wait()
	if err != nil || st.Code != 0 {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	if n, _ := io.Copy(io.Discard, p.Stderr()); n != 200000 {
		t.Errorf("stderr = %d bytes, want 200000", n)
	}
}

// Stdin and stdout both far beyond the windows, at once.
func TestExecLargeDuplex(t *testing.T) {
	c, _ := startServer(t)
	const size = 8 << 20
	in := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	p, err := c.Exec(context.Background(), ExecRequest{Argv: []string{"cat"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() {
		p.Stdin().Write(in)
		p.Stdin().Close()
	}()
	out, err := io.ReadAll(p.Stdout())
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("cat returned %d bytes (%v), want the %d sent", len(out), err, len(in))
	}
	if st, err := p.Wait(); err != nil || st.Code != 0 {
		t.Errorf("Wait = %+v, %v", st, err)
	}
}

func TestProcessClose(t *testing.T) {
	c, _ := startServer(t)
	p, err := c.Exec(context.Background(), sh("echo $$; exec cat"))
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 32)
	n, _ := p.Stdout().Read(line)
	pid, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("pid line %q", line[:n])
	}
	p.Close()
	// cat sees end of file on stdin and exits.
	waitFor(t, func() bool { return syscall.Kill(pid, 0) != nil })
	if _, err := p.Wait(); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Wait after Close = %v, want ErrDisconnected", err)
	}
}

func TestShutdownRequest(t *testing.T) {
	c, srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// This Server is not PID 1: nobody ends the session, so Shutdown times out
	// after the agent acknowledged it.
	if err := c.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	select {
	case <-srv.ShutdownRequested():
	default:
		t.Error("ShutdownRequested not closed")
	}
}

func TestBadHeader(t *testing.T) {
	c, _ := startServer(t)
	for _, in := range []string{
		strings.Repeat("x", maxHeaderSize+10) + "\n",
		"not json\n",
		`{"op":"frobnicate"}` + "\n",
	} {
		st, err := c.sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		go io.WriteString(st, in)
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		var rep reply
		err = readHeader(bufio.NewReader(st), &rep)
		st.Close()
		if err != nil || rep.OK || rep.Error == nil {
			t.Errorf("reply to %.20q = %+v, %v, want an error reply", in, rep, err)
		}
	}
	// The session still works.
	if _, err := c.Hello(context.Background()); err != nil {
		t.Errorf("Hello after bad headers = %v", err)
	}
}

func TestHelloContext(t *testing.T) {
	c, _ := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Hello(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Hello(cancelled) = %v, want context.Canceled", err)
	}
	c.Close()
	<-c.Done()
	if _, err := c.Hello(context.Background()); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Hello after Close = %v, want ErrDisconnected", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
