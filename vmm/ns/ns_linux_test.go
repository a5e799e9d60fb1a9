package ns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/internal/testutil"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// agentPath is the static agent, built once per test binary by TestMain.
var agentPath string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Getenv("SUBSYS_NS_TEST_SERVER") != "" {
		return fakeServer()
	}
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "subsys-agent-build")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		agentPath = filepath.Join(dir, "subsys-agent")
		cmd := exec.Command("go", "build", "-o", agentPath, "github.com/subsys-dev/subsys/vmm/agent/cmd/subsys-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build agent: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "needs root to create mount and PID namespaces")
	}
}

// makeRootFS builds a tiny distro from the static busybox.
func makeRootFS(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "root", "home/alice", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// No /run and no /mnt: the agent creates missing mount points.
	bb, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		testenv.SkipOrFailf(t, "needs busybox-static: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("/usr/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		os.Symlink("busybox", filepath.Join(root, "bin", applet))
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n",
		"etc/group":  "root:x:0:\ntty:x:5:\nusers:x:100:alice\nalice:x:1000:\n",
		"etc/hosts":  "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n",
		// This busybox has no nohup applet.
		"bin/nohup": "#!/bin/sh\ntrap '' HUP\nexec \"$@\"\n",
		// Like Ubuntu's: a symlink that the agent must replace, not follow.
		"etc/resolv.conf": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(root, "etc/resolv.conf"))
	os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(root, "etc/resolv.conf"))
	os.Chown(filepath.Join(root, "home/alice"), 1000, 1000)
	return root
}

type env struct {
	cfg  Config
	b    *Backend
	spec vmm.Spec
}

// newEnv returns a Backend and a distro spec; the distro is stopped at the end.
func newEnv(t *testing.T, name string) *env {
	t.Helper()
	requireRoot(t)
	cfg := Config{
		AgentPath: agentPath,
		RunDir:    filepath.Join(t.TempDir(), "run"),
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	e := &env{cfg: cfg, b: New(cfg), spec: vmm.Spec{ID: "d-" + name, Name: name, RootFS: makeRootFS(t)}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.b.Stop(ctx, e.spec); err != nil {
			t.Errorf("Stop = %v", err)
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(cfg.RunDir, e.spec.ID+".log"))
			t.Logf("agent log:\n%s", log)
		}
	})
	return e
}

func (e *env) start(t *testing.T) *agent.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := e.b.Start(ctx, e.spec)
	if err != nil {
		t.Fatalf("Start = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type result struct {
	stdout, stderr string
	status         agent.ExitStatus
}

func run(t *testing.T, c *agent.Client, req agent.ExecRequest, stdin string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := c.Exec(ctx, req)
	if err != nil {
		t.Fatalf("Exec(%q) = %v", req.Argv, err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	var out, errb bytes.Buffer
	wg.Go(func() { io.Copy(&out, p.Stdout()) })
	wg.Go(func() { io.Copy(&errb, p.Stderr()) })
	go func() {
		io.WriteString(p.Stdin(), stdin)
		p.Stdin().Close()
	}()
	st, err := p.Wait()
	if err != nil {
		t.Fatalf("Wait(%q) = %v", req.Argv, err)
	}
	wg.Wait()
	return result{out.String(), errb.String(), st}
}

func sh(script string) agent.ExecRequest {
	return agent.ExecRequest{Argv: []string{"sh", "-c", script}}
}

// shOut runs a script that must succeed and returns its stdout.
func shOut(t *testing.T, c *agent.Client, script string) string {
	t.Helper()
	r := run(t, c, sh(script), "")
	if r.status.Code != 0 {
		t.Fatalf("%q = %+v", script, r)
	}
	return r.stdout
}

func TestDistro(t *testing.T) {
	e := newEnv(t, "testdistro")
	c := e.start(t)

	t.Run("agent is PID 1", func(t *testing.T) {
		info, err := c.Hello(context.Background())
		if err != nil || info.PID != 1 || info.Hostname != "testdistro" {
			t.Errorf("Hello = %+v, %v, want pid 1, hostname testdistro", info, err)
		}
		if got := shOut(t, c, "tr '\\0' ' ' < /proc/1/cmdline"); !strings.Contains(got, "subsys-agent") {
			t.Errorf("/proc/1/cmdline = %q, want the agent", got)
		}
		if got := shOut(t, c, "echo $$"); strings.TrimSpace(got) == "1" {
			t.Errorf("the shell is PID 1")
		}
		// Only the agent and ps itself (which sh -c runs in its place).
		got := shOut(t, c, "ps -o pid,args")
		lines := strings.Split(strings.TrimSpace(got), "\n")
		if len(lines) != 3 || !strings.HasPrefix(strings.TrimSpace(lines[1]), "1 ") || !strings.Contains(lines[2], "ps") {
			t.Errorf("ps shows other processes:\n%s", got)
		}
	})

	t.Run("survives kill 1", func(t *testing.T) {
		shOut(t, c, "kill -TERM 1; kill -INT 1; kill -HUP 1; kill -QUIT 1; sleep 0.1")
		if _, err := c.Hello(context.Background()); err != nil {
			t.Errorf("Hello after signalling PID 1 = %v", err)
		}
	})

	t.Run("hostname", func(t *testing.T) {
		if got := shOut(t, c, "hostname"); got != "testdistro\n" {
			t.Errorf("hostname = %q", got)
		}
	})

	t.Run("mounts", func(t *testing.T) {
		mounts := shOut(t, c, "cat /proc/mounts")
		for _, want := range []string{"proc /proc proc", "sysfs /sys sysfs ro", "tmpfs /dev tmpfs", "devpts /dev/pts devpts",
			"shm /dev/shm tmpfs", "tmpfs /tmp tmpfs", "tmpfs /run tmpfs"} {
			if !strings.Contains(mounts, want) {
				t.Errorf("/proc/mounts lacks %q:\n%s", want, mounts)
			}
		}
		script := `set -e
echo discard > /dev/null
test "$(head -c 5 /dev/zero | wc -c)" = 5
test "$(head -c 16 /dev/urandom | wc -c)" = 16
test "$(head -c 16 /dev/random | wc -c)" = 16
! echo x 2>/dev/null > /dev/full
test "$(readlink /dev/ptmx)" = pts/ptmx
test -L /dev/fd && test -L /dev/stdin && test -L /dev/stdout && test -L /dev/stderr
test -c /dev/tty
test -d /sys/kernel
echo x > /dev/shm/x && echo x > /tmp/x && echo x > /run/x
test "$(stat -c %a /tmp)" = 1777 && test "$(stat -c %a /run/lock)" = 1777
echo ok`
		if got := shOut(t, c, script); got != "ok\n" {
			t.Errorf("device checks printed %q", got)
		}
	})

	t.Run("host at /mnt/host", func(t *testing.T) {
		want, err := os.ReadFile("/etc/os-release")
		if err != nil {
			testenv.SkipOrFail(t, "host has no /etc/os-release")
		}
		if got := shOut(t, c, "cat /mnt/host/etc/os-release"); got != string(want) {
			t.Errorf("/mnt/host/etc/os-release = %q, want the host's", got)
		}
	})

	t.Run("network files", func(t *testing.T) {
		resolv := shOut(t, c, "test ! -L /etc/resolv.conf && cat /etc/resolv.conf")
		host, _ := os.ReadFile("/etc/resolv.conf")
		if !strings.Contains(resolv, string(host)) {
			t.Errorf("resolv.conf = %q, want the host's %q", resolv, host)
		}
		hosts := shOut(t, c, "cat /etc/hosts")
		for _, want := range []string{"127.0.0.1\tlocalhost\n", "127.0.1.1\ttestdistro\n", "::1\tlocalhost ip6-localhost\n"} {
			if !strings.Contains(hosts, want) {
				t.Errorf("/etc/hosts = %q, lacks %q", hosts, want)
			}
		}
	})

	t.Run("users", func(t *testing.T) {
		tests := []struct{ user, want string }{
			{"", "uid=0(root) gid=0(root) groups=0(root)\n/root\n"},
			{"alice", "uid=1000(alice) gid=1000(alice) groups=100(users),1000(alice)\n/home/alice\n"},
			{"1000", "uid=1000(alice) gid=1000(alice) groups=100(users),1000(alice)\n/home/alice\n"},
		}
		for _, tt := range tests {
			r := run(t, c, agent.ExecRequest{Argv: []string{"sh", "-c", "id; pwd"}, User: tt.user}, "")
			if r.stdout != tt.want {
				t.Errorf("id as %q = %q, want %q", tt.user, r.stdout, tt.want)
			}
		}
		_, err := c.Exec(context.Background(), agent.ExecRequest{Argv: []string{"id"}, User: "mallory"})
		if !errors.Is(err, agent.ErrUserNotFound) {
			t.Errorf("Exec as mallory = %v, want ErrUserNotFound", err)
		}
	})

	t.Run("cwd and env", func(t *testing.T) {
		r := run(t, c, agent.ExecRequest{Argv: []string{"sh", "-c", `pwd; echo "$HOME|$USER|$LOGNAME|$SHELL|$PATH|$FOO|$TERM"`},
			Cwd: "/tmp", User: "alice", Env: []string{"FOO=bar"}}, "")
		want := "/tmp\n/home/alice|alice|alice|/bin/sh|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|bar|\n"
		if r.stdout != want {
			t.Errorf("got %q, want %q", r.stdout, want)
		}
		for _, req := range []agent.ExecRequest{
			{Argv: []string{"true"}, Cwd: "/no/such"},
			{Argv: []string{"no-such-program"}},
		} {
			if _, err := c.Exec(context.Background(), req); !errors.Is(err, agent.ErrNoSuchFile) {
				t.Errorf("Exec(%+v) = %v, want ErrNoSuchFile", req, err)
			}
		}
	})

	t.Run("login shell", func(t *testing.T) {
		r := run(t, c, agent.ExecRequest{Login: true, User: "alice"}, "echo $0; pwd\n")
		if r.stdout != "-sh\n/home/alice\n" {
			t.Errorf("login shell printed %q", r.stdout)
		}
	})

	t.Run("stdin and exit codes", func(t *testing.T) {
		if r := run(t, c, agent.ExecRequest{Argv: []string{"cat"}}, "some\ninput"); r.stdout != "some\ninput" || r.status.Code != 0 {
			t.Errorf("cat = %+v", r)
		}
		if r := run(t, c, sh("echo err >&2; exit 3"), ""); r.stderr != "err\n" || r.status != (agent.ExitStatus{Code: 3}) {
			t.Errorf("exit 3 = %+v", r)
		}
		p, err := c.Exec(context.Background(), sh("echo ready; exec sleep 100"))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		buf := make([]byte, 6)
		io.ReadFull(p.Stdout(), buf)
		p.Signal("KILL")
		if st, err := p.Wait(); err != nil || st != (agent.ExitStatus{Code: 137, Signal: "KILL"}) {
			t.Errorf("killed process = %+v, %v, want 137 KILL", st, err)
		}
	})

	t.Run("tty", func(t *testing.T) {
		r := run(t, c, agent.ExecRequest{Argv: []string{"sh", "-c", "stty size; tty; echo $TERM"}, TTY: true, Cols: 100, Rows: 30}, "")
		if r.stdout != "30 100\r\n/dev/pts/0\r\nxterm-256color\r\n" {
			t.Errorf("tty = %q", r.stdout)
		}
		p, err := c.Exec(context.Background(), agent.ExecRequest{Argv: []string{"sh"}, TTY: true, Cols: 80, Rows: 24})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		var out testutil.SyncBuffer
		copied := make(chan struct{})
		go func() { io.Copy(&out, p.Stdout()); close(copied) }()
		io.WriteString(p.Stdin(), "stty size\n")
		testutil.WaitFor(t, waitTimeout, "stty size to print 24 80", func() bool { return strings.Contains(out.String(), "24 80") })
		p.Resize(132, 50)
		io.WriteString(p.Stdin(), "stty size; exit 7\n")
		if st, err := p.Wait(); err != nil || st.Code != 7 {
			t.Errorf("shell exit = %+v, %v", st, err)
		}
		<-copied
		if !strings.Contains(out.String(), "50 132") {
			t.Errorf("after resize: %q", out.String())
		}
	})

	t.Run("no fd leaks", func(t *testing.T) {
		for _, tty := range []bool{false, true} {
			r := run(t, c, agent.ExecRequest{Argv: []string{"ls", "/proc/self/fd"}, TTY: tty}, "")
			if got := strings.Fields(r.stdout); strings.Join(got, " ") != "0 1 2 3" {
				t.Errorf("tty=%v: /proc/self/fd = %q, want 0 1 2 and ls's own 3", tty, got)
			}
		}
	})

	t.Run("background processes survive", func(t *testing.T) {
		for _, script := range []string{
			"nohup sleep 1001 >/dev/null 2>&1 &",
			"sleep 1002 &",
		} {
			start := time.Now()
			run(t, c, sh(script), "")
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("%q took %v, want a prompt return", script, d)
			}
		}
		// Started in the background: give them a moment to exec.
		testutil.WaitFor(t, waitTimeout, "sleep 1001 and 1002 in ps", func() bool {
			ps := shOut(t, c, "ps -o args")
			return strings.Contains(ps, "sleep 1001") && strings.Contains(ps, "sleep 1002")
		})
		// Still there later: nothing killed them when their execs ended.
		time.Sleep(200 * time.Millisecond)
		ps := shOut(t, c, "ps -o args")
		for _, want := range []string{"sleep 1001", "sleep 1002"} {
			if !strings.Contains(ps, want) {
				t.Errorf("%q is gone:\n%s", want, ps)
			}
		}
	})

	t.Run("orphans are reaped", func(t *testing.T) {
		// The inner shell exits at once; its sleep is reparented to the agent.
		shOut(t, c, "sh -c 'sleep 0.2 >/dev/null 2>&1 &'; exit 0")
		time.Sleep(600 * time.Millisecond)
		if got := shOut(t, c, "ps -o stat,pid,args | grep '^Z' || true"); got != "" {
			t.Errorf("zombies:\n%s", got)
		}
	})
}

func TestStopAndRestart(t *testing.T) {
	e := newEnv(t, "stopper")
	c := e.start(t)
	shOut(t, c, "sleep 1000 >/dev/null 2>&1 &")
	testutil.WaitFor(t, waitTimeout, "sleep 1000 in ps", func() bool { return strings.Contains(shOut(t, c, "ps -o args"), "sleep 1000") })
	pidData, err := os.ReadFile(filepath.Join(e.cfg.RunDir, e.spec.ID+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidData)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.b.Stop(ctx, e.spec); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("agent %d still exists after Stop: %v", pid, err)
	}
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Error("client session still open after Stop")
	}
	for _, ext := range []string{".sock", ".pid"} {
		if _, err := os.Stat(filepath.Join(e.cfg.RunDir, e.spec.ID+ext)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Stop: %v", ext, err)
		}
	}
	if _, err := e.b.Connect(ctx, e.spec); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("Connect after Stop = %v, want ErrNotRunning", err)
	}
	if err := e.b.Stop(ctx, e.spec); err != nil {
		t.Errorf("Stop of a stopped distro = %v, want nil", err)
	}

	c2 := e.start(t)
	if got := shOut(t, c2, "ps -o args | grep -c '^sleep 1000$' || true"); got != "0\n" {
		t.Errorf("the old distro's sleep survived Stop: %q", got)
	}
}

func TestAdoptAfterServerRestart(t *testing.T) {
	e := newEnv(t, "adoptee")
	c := e.start(t)
	shOut(t, c, "nohup sleep 1003 >/dev/null 2>&1 &")
	testutil.WaitFor(t, waitTimeout, "sleep 1003 in ps", func() bool { return strings.Contains(shOut(t, c, "ps -o args"), "sleep 1003") })
	first, _ := c.Hello(context.Background())
	c.Close()

	// A new server process: a new Backend on the same run directory.
	b2 := New(e.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c2, err := b2.Connect(ctx, e.spec)
	if err != nil {
		t.Fatalf("Connect = %v", err)
	}
	defer c2.Close()
	if !strings.Contains(shOut(t, c2, "ps -o args"), "sleep 1003") {
		t.Error("background process gone after reconnect")
	}
	c3, err := b2.Start(ctx, e.spec)
	if err != nil {
		t.Fatalf("Start of a running distro = %v", err)
	}
	defer c3.Close()
	if !strings.Contains(shOut(t, c3, "ps -o args"), "sleep 1003") {
		t.Error("Start did not adopt the running distro")
	}
	if second, _ := c3.Hello(ctx); second != first {
		t.Errorf("Hello after adopt = %+v, want %+v", second, first)
	}
	e.b = b2 // Stop through the new server
}

// fakeServer is a server process for TestServerKilled: it starts a distro,
// says so, and waits to be killed.
func fakeServer() int {
	cfg := Config{AgentPath: os.Getenv("SUBSYS_NS_TEST_AGENT"), RunDir: os.Getenv("SUBSYS_NS_TEST_RUNDIR")}
	spec := vmm.Spec{ID: "d-killed", Name: "killed", RootFS: os.Getenv("SUBSYS_NS_TEST_ROOTFS")}
	c, err := New(cfg).Start(context.Background(), spec)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	p, err := c.Exec(context.Background(), agent.ExecRequest{Argv: []string{"sh", "-c", "sleep 1004 >/dev/null 2>&1 &"}})
	if err == nil {
		_, err = p.Wait()
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("started")
	select {}
}

// The distro outlives a server killed with SIGKILL, and the next server
// adopts it.
func TestServerKilled(t *testing.T) {
	e := newEnv(t, "killed")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SUBSYS_NS_TEST_SERVER=1", "SUBSYS_NS_TEST_AGENT="+e.cfg.AgentPath,
		"SUBSYS_NS_TEST_RUNDIR="+e.cfg.RunDir, "SUBSYS_NS_TEST_ROOTFS="+e.spec.RootFS)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 256)
	n, _ := io.ReadAtLeast(out, line, 1)
	cmd.Process.Kill()
	cmd.Wait()
	if got := string(line[:n]); got != "started\n" {
		t.Fatalf("server said %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.b.Connect(ctx, e.spec)
	if err != nil {
		t.Fatalf("Connect after the server was killed = %v", err)
	}
	defer c.Close()
	testutil.WaitFor(t, waitTimeout, "sleep 1004 in ps", func() bool { return strings.Contains(shOut(t, c, "ps -o args"), "sleep 1004") })
}

func TestConnectNotRunning(t *testing.T) {
	e := newEnv(t, "idle")
	ctx := context.Background()
	if _, err := e.b.Connect(ctx, e.spec); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("Connect = %v, want ErrNotRunning", err)
	}
	// A stale socket: bound, never listened on, as after a crash.
	os.MkdirAll(e.cfg.RunDir, 0o700)
	sock := filepath.Join(e.cfg.RunDir, e.spec.ID+".sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := e.b.Connect(ctx, e.spec); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("Connect on a stale socket = %v, want ErrNotRunning", err)
	}
	c := e.start(t)
	if _, err := c.Hello(ctx); err != nil {
		t.Errorf("Hello after Start over a stale socket = %v", err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v, want 0600", fi.Mode(), err)
	}
}

func TestBadSpec(t *testing.T) {
	requireRoot(t)
	b := New(Config{AgentPath: agentPath, RunDir: t.TempDir()})
	for _, id := range []string{"", "../x", "a/b", ".hidden"} {
		if _, err := b.Start(context.Background(), vmm.Spec{ID: id, Name: "x", RootFS: "/nonexistent"}); err == nil {
			t.Errorf("Start with id %q succeeded", id)
		}
	}
}

// A distro's rootfs is untrusted: a symlink where a mount point should be must
// not make the agent mount over, or write into, a host directory.
func TestSymlinkedMountPoint(t *testing.T) {
	for _, target := range []string{"proc", "dev", "tmp", "mnt/host", "run", "mnt"} {
		t.Run(strings.ReplaceAll(target, "/", "_"), func(t *testing.T) {
			e := newEnv(t, "evil")
			hostDir := t.TempDir()
			os.WriteFile(filepath.Join(hostDir, "marker"), []byte("host"), 0o644)
			link := filepath.Join(e.spec.RootFS, target)
			os.MkdirAll(filepath.Dir(link), 0o755)
			os.RemoveAll(link)
			if err := os.Symlink(hostDir, link); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := e.b.Start(ctx, e.spec)
			if err == nil {
				c.Close()
				t.Fatalf("Start with rootfs/%s -> %s succeeded", target, hostDir)
			}
			if !strings.Contains(err.Error(), "refusing") {
				t.Errorf("Start error = %v, want a refusal", err)
			}
			entries, _ := os.ReadDir(hostDir)
			if len(entries) != 1 || entries[0].Name() != "marker" {
				t.Errorf("host dir changed: %v", entries)
			}
		})
	}

	// A symlinked parent is followed inside the rootfs only.
	t.Run("mnt", func(t *testing.T) {
		e := newEnv(t, "evil2")
		hostDir := t.TempDir()
		os.WriteFile(filepath.Join(hostDir, "marker"), []byte("host"), 0o644)
		if err := os.Symlink(hostDir, filepath.Join(e.spec.RootFS, "mnt")); err != nil {
			t.Fatal(err)
		}
		// Inside the rootfs, the link leads here.
		if err := os.MkdirAll(filepath.Join(e.spec.RootFS, hostDir), 0o755); err != nil {
			t.Fatal(err)
		}
		// And an /etc that leads to the host: the network files must not be
		// written through it.
		etc := filepath.Join(e.spec.RootFS, "etc")
		os.Rename(etc, etc+".real")
		if err := os.Symlink("/mnt/host"+hostDir, etc); err != nil {
			t.Fatal(err)
		}
		c := e.start(t)
		shOut(t, c, "true")
		entries, _ := os.ReadDir(hostDir)
		if len(entries) != 1 || entries[0].Name() != "marker" {
			t.Errorf("host dir changed: %v", entries)
		}
		if _, err := os.Stat(filepath.Join(e.spec.RootFS, hostDir, "host")); err != nil {
			t.Errorf("mount point not created inside the rootfs: %v", err)
		}
	})
}

// waitTimeout bounds this package's waits on a distro.
const waitTimeout = 10 * time.Second

// syncBuffer and waitFor are testutil's, by the names session_linux_test.go
// uses.
type syncBuffer = testutil.SyncBuffer

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, waitTimeout, "the condition", cond)
}
