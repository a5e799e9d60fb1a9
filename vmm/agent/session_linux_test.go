package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// connect serves one more connection with srv, as a restarted server would
// open, and returns its client.
func connect(t *testing.T, srv *Server) *Client {
	t.Helper()
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
		<-served
	})
	return c
}

func openSession(t *testing.T, c *Client, req SessionRequest) SessionInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := c.OpenSession(ctx, req)
	if err != nil {
		t.Fatalf("OpenSession(%+v) = %v", req, err)
	}
	return info
}

// term is an attachment whose output is collected in the background.
type term struct {
	*Attachment
	out    syncBuffer
	copied chan struct{}
	err    error // io.Copy's, once copied is closed
}

func attach(t *testing.T, c *Client, id string) *term {
	t.Helper()
	a, err := c.AttachSession(context.Background(), id)
	if err != nil {
		t.Fatalf("AttachSession(%s) = %v", id, err)
	}
	tm := &term{Attachment: a, copied: make(chan struct{})}
	go func() {
		_, tm.err = io.Copy(&tm.out, a.Output())
		close(tm.copied)
	}()
	t.Cleanup(func() { a.Close() })
	return tm
}

func (tm *term) typeIn(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(tm.Input(), s); err != nil {
		t.Fatalf("type %q: %v", s, err)
	}
}

// expect waits until the output holds s.
func (tm *term) expect(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(tm.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q:\n%q", s, tm.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sessionInfo(t *testing.T, c *Client, id string) (SessionInfo, bool) {
	t.Helper()
	infos, err := c.Sessions(context.Background())
	if err != nil {
		t.Fatalf("Sessions = %v", err)
	}
	for _, info := range infos {
		if info.ID == id {
			return info, true
		}
	}
	return SessionInfo{}, false
}

// agentSession is the agent's own record, for what clients cannot see.
func agentSession(t *testing.T, srv *Server, id string) *session {
	t.Helper()
	sess, err := srv.lookupSession(id)
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

// ringStats reports how much output the session has read from its terminal,
// how much it holds, and how much memory its ring has.
func ringStats(sess *session) (total int64, held, capacity int) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.ring.total, sess.ring.len(), cap(sess.ring.buf)
}

// foregroundSleep reports whether process pid is sleep and in its terminal's
// foreground process group.
func foregroundSleep(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return false
	}
	// After the command name: state ppid pgrp session tty_nr tpgid …
	f := strings.Fields(s[end+1:])
	return s[open+1:end] == "sleep" && len(f) > 5 && f[2] == f[5]
}

func children(pid int) []string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	return strings.Fields(string(b))
}

func gone(pid int) bool { return syscall.Kill(pid, 0) != nil }

var sessionIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

func TestSessionShell(t *testing.T) {
	c, _ := startServer(t)
	before := time.Now()
	info := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sh"}, Cols: 80, Rows: 24}})
	if !sessionIDPattern.MatchString(info.ID) || !slices.Equal(info.Argv, []string{"sh"}) || info.User != "root" ||
		info.PID <= 0 || info.Cols != 80 || info.Rows != 24 || info.Attached || info.Exited ||
		info.CreatedAt.Before(before) || info.DetachedAt.IsZero() {
		t.Errorf("OpenSession = %+v", info)
	}

	tm := attach(t, c, info.ID)
	tm.typeIn(t, "echo 'hello'; echo $TERM\n")
	tm.expect(t, "hello\r\nxterm-256color\r\n")
	if got, _ := sessionInfo(t, c, info.ID); !got.Attached || !got.DetachedAt.IsZero() {
		t.Errorf("attached session = %+v, want Attached and no DetachedAt", got)
	}

	t.Run("resize", func(t *testing.T) {
		tm.typeIn(t, "stty size\n")
		tm.expect(t, "24 80\r\n")
		if err := tm.Resize(100, 30); err != nil {
			t.Fatal(err)
		}
		tm.typeIn(t, "stty size\n")
		tm.expect(t, "30 100\r\n")
		if got, _ := sessionInfo(t, c, info.ID); got.Cols != 100 || got.Rows != 30 {
			t.Errorf("after Resize: %dx%d, want 100x30", got.Cols, got.Rows)
		}
	})

	t.Run("signal", func(t *testing.T) {
		tm.typeIn(t, "sleep 100\n")
		// Until the shell has made sleep the terminal's foreground job, INT
		// would go to the shell's group, or hit the child before it is sleep.
		waitFor(t, func() bool {
			kids := children(info.PID)
			return len(kids) == 1 && foregroundSleep(kids[0])
		})
		if err := tm.Signal("INT"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return len(children(info.PID)) == 0 })
		tm.typeIn(t, "echo status=$?\n")
		tm.expect(t, "status=130\r\n")
		if err := tm.Signal("NOPE"); !errors.Is(err, ErrBadRequest) {
			t.Errorf("Signal(NOPE) = %v, want ErrBadRequest", err)
		}
	})

	t.Run("exit", func(t *testing.T) {
		tm.typeIn(t, "echo 'bye'; exit 3\n")
		st, err := tm.Wait()
		if err != nil || st != (ExitStatus{Code: 3}) {
			t.Fatalf("Wait = %+v, %v, want exit 3", st, err)
		}
		<-tm.copied
		if tm.err != nil || !strings.HasSuffix(tm.out.String(), "bye\r\n") {
			t.Errorf("output after exit = %q, %v, want it to end with bye", tm.out.String(), tm.err)
		}
		waitFor(t, func() bool { got, _ := sessionInfo(t, c, info.ID); return !got.Attached })
		got, ok := sessionInfo(t, c, info.ID)
		if !ok || !got.Exited || got.ExitCode != 3 || got.Signal != "" || got.DetachedAt.IsZero() {
			t.Errorf("exited session = %+v, %v", got, ok)
		}
	})

	t.Run("attach after exit", func(t *testing.T) {
		again := attach(t, c, info.ID)
		st, err := again.Wait()
		if err != nil || st.Code != 3 {
			t.Errorf("Wait = %+v, %v, want exit 3 at once", st, err)
		}
		<-again.copied
		if out := again.out.String(); !strings.Contains(out, "hello\r\n") || !strings.HasSuffix(out, "bye\r\n") {
			t.Errorf("replay = %q, want the whole session", out)
		}
	})

	if err := c.KillSession(context.Background(), info.ID); err != nil {
		t.Errorf("KillSession of an exited session = %v", err)
	}
	if _, ok := sessionInfo(t, c, info.ID); ok {
		t.Error("killed session still listed")
	}
}

func TestSessionLoginShell(t *testing.T) {
	c, _ := startServer(t)
	info := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Login: true, User: "nobody", Cols: 90, Rows: 20}})
	if !slices.Equal(info.Argv, []string{"-sh"}) || info.User != "nobody" {
		t.Errorf("OpenSession = %+v, want argv -sh, user nobody", info)
	}
	tm := attach(t, c, info.ID)
	tm.typeIn(t, "echo $0 $(id -u) $(tty); stty size\n")
	tm.expect(t, "20 90\r\n")
	if !regexp.MustCompile(`-sh 65534 /dev/pts/\d+\r\n`).MatchString(tm.out.String()) {
		t.Errorf("login shell printed %q", tm.out.String())
	}
	c.KillSession(context.Background(), info.ID)
}

func TestSessionReattach(t *testing.T) {
	c, s := startServer(t)
	info := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sh"}}})
	tm := attach(t, c, info.ID)
	tm.typeIn(t, "echo 'first'; sleep 0.3; echo 'while-detached'\n")
	tm.expect(t, "first\r\n")
	if err := tm.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tm.Wait(); !errors.Is(err, ErrDetached) {
		t.Errorf("Wait after Close = %v, want ErrDetached", err)
	}
	waitFor(t, func() bool { got, _ := sessionInfo(t, c, info.ID); return !got.Attached && !got.DetachedAt.IsZero() })
	if gone(info.PID) {
		t.Fatal("the program ended with the attachment")
	}
	// The shell writes while no one is attached.
	sess := agentSession(t, s, info.ID)
	waitFor(t, func() bool {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		b := make([]byte, sess.ring.len())
		return strings.Contains(string(b[:sess.ring.readAt(b, 0)]), "while-detached")
	})

	again := attach(t, c, info.ID)
	again.expect(t, "first\r\n")
	again.expect(t, "while-detached\r\n")
	again.typeIn(t, "echo 'still-works'\n")
	again.expect(t, "still-works\r\n")
	if strings.Count(again.out.String(), "first\r\n") != 1 {
		t.Errorf("replay repeated output: %q", again.out.String())
	}
	c.KillSession(context.Background(), info.ID)
}

func TestSessionTakeover(t *testing.T) {
	c, _ := startServer(t)
	info := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sh"}}})
	first := attach(t, c, info.ID)
	first.typeIn(t, "echo 'one'\n")
	first.expect(t, "one\r\n")

	second := attach(t, c, info.ID)
	if _, err := first.Wait(); !errors.Is(err, ErrDetached) {
		t.Errorf("taken-over Wait = %v, want ErrDetached", err)
	}
	<-first.copied
	if !errors.Is(first.err, ErrDetached) {
		t.Errorf("taken-over Output ended with %v, want ErrDetached", first.err)
	}
	second.expect(t, "one\r\n")
	second.typeIn(t, "echo 'two'\n")
	second.expect(t, "two\r\n")
	if strings.Contains(first.out.String(), "two") {
		t.Errorf("the old attachment saw new output: %q", first.out.String())
	}
	if _, err := io.WriteString(first.Input(), "echo ghost\n"); err == nil {
		time.Sleep(100 * time.Millisecond)
	}
	second.typeIn(t, "echo 'three'\n")
	second.expect(t, "three\r\n")
	if strings.Contains(second.out.String(), "ghost") {
		t.Errorf("input of the old attachment reached the terminal: %q", second.out.String())
	}
	if got, _ := sessionInfo(t, c, info.ID); !got.Attached {
		t.Errorf("session after takeover = %+v, want attached", got)
	}
	c.KillSession(context.Background(), info.ID)
}

// A server restart is a new connection to the same agent.
func TestSessionNewConnection(t *testing.T) {
	c, s := startServer(t)
	info := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sh"}}})
	tm := attach(t, c, info.ID)
	tm.typeIn(t, "echo 'before-restart'\n")
	tm.expect(t, "before-restart\r\n")
	c.Close()
	if _, err := tm.Wait(); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Wait after the connection closed = %v, want ErrDisconnected", err)
	}

	c2 := connect(t, s)
	waitFor(t, func() bool { got, ok := sessionInfo(t, c2, info.ID); return ok && !got.Attached })
	again := attach(t, c2, info.ID)
	again.expect(t, "before-restart\r\n")
	again.typeIn(t, "echo 'after-restart'\n")
	again.expect(t, "after-restart\r\n")
	if err := c2.KillSession(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := again.Wait(); err != nil || st.Signal != "HUP" {
		t.Errorf("Wait after KillSession = %+v, %v, want killed by HUP", st, err)
	}
}

// TestSessionFirstAttachGetsAll: the server opens a session and only then
// attaches to it. What the program writes in between must wait in the
// terminal, not pass through the scrollback, or a fast program loses all but
// its last scrollback's worth before the first client sees a byte. The pause
// stands for a loaded machine between the two requests; without it the
// program races the attach.
func TestSessionFirstAttachGetsAll(t *testing.T) {
	c, _ := startServer(t)
	// seq's lines with the terminal's \r\n: about 4.7 MiB, written at once,
	// past the 1 MiB scrollback.
	const lines = 600000
	var want strings.Builder
	for i := 1; i <= lines; i++ {
		want.WriteString(strconv.Itoa(i))
		want.WriteString("\r\n")
	}
	for _, pause := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run("pause "+pause.String(), func(t *testing.T) {
			info := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"seq", strconv.Itoa(lines)}}})
			time.Sleep(pause)
			tm := attach(t, c, info.ID)
			select {
			case <-tm.copied:
			case <-time.After(30 * time.Second):
				t.Fatalf("output did not end in 30 s: %d bytes", len(tm.out.String()))
			}
			if st, err := tm.Wait(); err != nil || st != (ExitStatus{}) {
				t.Errorf("Wait = %+v, %v, want exit 0", st, err)
			}
			if got := tm.out.String(); got != want.String() {
				i := 0
				for i < min(len(got), want.Len()) && got[i] == want.String()[i] {
					i++
				}
				t.Errorf("got %d bytes, want %d; they differ from byte %d: %.40q", len(got), want.Len(), i, got[i:])
			}
		})
	}
}

// TestSessionFlood: in a flood the pump waits a moment to fill its frames
// (see floodFrame); that wait must hold up nothing else: a takeover or a kill
// in mid-flood, or the output that follows the flood.
func TestSessionFlood(t *testing.T) {
	c, _ := startServer(t)
	ctx := context.Background()
	info := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"yes"}}})
	first, err := c.AttachSession(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := io.CopyN(io.Discard, first.Output(), 8<<20); err != nil {
		t.Fatal(err)
	}
	second, err := c.AttachSession(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := first.Wait(); !errors.Is(err, ErrDetached) {
		t.Errorf("taken-over Wait = %v, want ErrDetached", err)
	}
	if _, err := io.CopyN(io.Discard, second.Output(), 8<<20); err != nil {
		t.Fatalf("after the takeover: %v", err)
	}
	go io.Copy(io.Discard, second.Output())
	start := time.Now()
	if err := c.KillSession(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= killGrace {
		t.Errorf("KillSession of a flood took %v, want the SIGHUP to end it at once", d)
	}
	if st, err := second.Wait(); err != nil || st.Signal != "HUP" {
		t.Errorf("Wait = %+v, %v, want killed by HUP", st, err)
	}

	// What follows a flood goes out at once, not a frame's fill later.
	sh := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sh"}}})
	tm := attach(t, c, sh.ID)
	tm.typeIn(t, "head -c 4000000 /dev/zero | tr '\\0' x; echo; echo flood-$((1+1))\n")
	tm.expect(t, "\r\nflood-2\r\n")
	for i := range 5 {
		start := time.Now()
		tm.typeIn(t, fmt.Sprintf("echo after-$((%d+1))\n", i))
		tm.expect(t, fmt.Sprintf("after-%d\r\n", i+1))
		if d := time.Since(start); d > time.Second {
			t.Errorf("a command after the flood answered in %v", d)
		}
	}
	c.KillSession(ctx, sh.ID)
}

func TestSessionScrollbackBound(t *testing.T) {
	c, s := startServer(t)
	const scrollback, flood = 64 << 10, 5 << 20
	// The flood comes once a first attachment has come and gone: before the
	// first attach the program is held back instead (see
	// TestSessionFirstAttachGetsAll).
	info := openSession(t, c, SessionRequest{Scrollback: scrollback, ExecRequest: ExecRequest{
		Argv: []string{"sh", "-c", "read go; head -c " + strconv.Itoa(flood) + " /dev/zero | tr '\\0' x; echo; echo END; exec sleep 100"}}})
	sess := agentSession(t, s, info.ID)
	first := attach(t, c, info.ID)
	first.typeIn(t, "go\n")
	first.expect(t, "go\r\n")
	first.Close()
	// All of it: the echo of go, the flood and the end.
	waitFor(t, func() bool {
		total, _, _ := ringStats(sess)
		return total >= int64(len("go\r\n")+flood+len("\r\nEND\r\n"))
	})
	total, held, capacity := ringStats(sess)
	if held > scrollback || capacity > scrollback {
		t.Errorf("after %d bytes of output the ring holds %d bytes in %d, want at most %d", total, held, capacity, scrollback)
	}
	tm := attach(t, c, info.ID)
	tm.expect(t, "\r\nEND\r\n")
	if out := tm.out.String(); len(out) > scrollback || !strings.HasPrefix(out, "xxxx") {
		t.Errorf("replay of %d bytes (%.10q…), want at most %d, the flood's tail", len(out), out, scrollback)
	}
	c.KillSession(context.Background(), info.ID)
}

// An attached client that stops reading stops the program: the agent reads
// no more than the window from the terminal.
func TestSessionSlowReader(t *testing.T) {
	c, s := startServer(t)
	info := openSession(t, c, SessionRequest{Scrollback: 4096, ExecRequest: ExecRequest{Argv: []string{"yes"}}})
	sess := agentSession(t, s, info.ID)
	a, err := c.AttachSession(context.Background(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	start, _, _ := ringStats(sess)
	time.Sleep(time.Second)
	blocked, _, _ := ringStats(sess)
	cpu := cpuTicks(t, info.PID)
	time.Sleep(300 * time.Millisecond)
	if later, _, _ := ringStats(sess); later != blocked {
		t.Errorf("the agent kept reading: %d then %d bytes", blocked, later)
	}
	if later := cpuTicks(t, info.PID); later > cpu+2 {
		t.Errorf("yes kept running: %d then %d ticks", cpu, later)
	}
	t.Logf("read while attached and not read: %d bytes", blocked-start)
	// What was read while attached fits in the window, plus one read that
	// was under way when the attachment arrived.
	if read := blocked - start; read > initialWindow+dataChunk {
		t.Errorf("the agent read %d bytes for a client that reads nothing, want at most %d", read, initialWindow+dataChunk)
	}
	const more = 4 << 20
	n, err := io.CopyN(io.Discard, a.Output(), more)
	if err != nil || n != more {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	if now, _, _ := ringStats(sess); now < blocked+more/2 {
		t.Errorf("after reading %d bytes the agent has read %d more, want the program to go on", more, now-blocked)
	}
	c.KillSession(context.Background(), info.ID)
}

// cpuTicks is the process's user and system time in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// Fields after comm: state is f[0], utime f[11], stime f[12].
	u, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return u + st
}

func TestSessionDetachTimeout(t *testing.T) {
	c, s := startServer(t)
	start := time.Now()
	info := openSession(t, c, SessionRequest{DetachTimeout: 500 * time.Millisecond, ExecRequest: ExecRequest{Argv: []string{"sleep", "100"}}})
	waitFor(t, func() bool { _, ok := sessionInfo(t, c, info.ID); return !ok })
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Errorf("session removed after %v, want the 500ms timeout", d)
	}
	waitFor(t, func() bool { return gone(info.PID) })

	// Nobody attaches to a program that floods its terminal: it is held back
	// on the full terminal, waiting for the first attachment (see
	// TestSessionFirstAttachGetsAll), and still times out, the session's
	// goroutines and all.
	flood := openSession(t, c, SessionRequest{DetachTimeout: 500 * time.Millisecond, ExecRequest: ExecRequest{Argv: []string{"yes"}}})
	sess := agentSession(t, s, flood.ID)
	time.Sleep(200 * time.Millisecond)
	if total, _, _ := ringStats(sess); total != 0 {
		t.Errorf("%d bytes read before the first attachment, want none", total)
	}
	select {
	case <-sess.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the session was not released 10 s after its detach timeout")
	}
	if !gone(flood.PID) {
		t.Error("yes outlived its session")
	}
	if _, ok := sessionInfo(t, c, flood.ID); ok {
		t.Error("timed-out session still listed")
	}
	if _, err := c.AttachSession(context.Background(), info.ID); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("AttachSession of a timed-out session = %v, want ErrSessionNotFound", err)
	}

	// An attached session does not time out; the timeout counts from the
	// detach.
	info = openSession(t, c, SessionRequest{DetachTimeout: 300 * time.Millisecond, ExecRequest: ExecRequest{Argv: []string{"sh"}}})
	tm := attach(t, c, info.ID)
	time.Sleep(800 * time.Millisecond)
	if _, ok := sessionInfo(t, c, info.ID); !ok || gone(info.PID) {
		t.Fatal("an attached session timed out")
	}
	tm.Close()
	detached := time.Now()
	waitFor(t, func() bool { _, ok := sessionInfo(t, c, info.ID); return !ok })
	if d := time.Since(detached); d < 250*time.Millisecond {
		t.Errorf("session removed %v after the detach, want 300ms", d)
	}
	waitFor(t, func() bool { return gone(info.PID) })

	// An exited session stays listed until the timeout.
	info = openSession(t, c, SessionRequest{DetachTimeout: 500 * time.Millisecond, ExecRequest: ExecRequest{Argv: []string{"true"}}})
	waitFor(t, func() bool { got, _ := sessionInfo(t, c, info.ID); return got.Exited })
	waitFor(t, func() bool { _, ok := sessionInfo(t, c, info.ID); return !ok })
}

func TestSessionKill(t *testing.T) {
	c, _ := startServer(t)
	info := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sh"}}})
	tm := attach(t, c, info.ID)
	tm.typeIn(t, "echo 'ready'\n")
	tm.expect(t, "ready\r\n")
	if err := c.KillSession(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	if !gone(info.PID) {
		t.Error("program still there after KillSession returned")
	}
	if st, err := tm.Wait(); err != nil || st != (ExitStatus{Code: 128 + 1, Signal: "HUP"}) {
		t.Errorf("attached Wait = %+v, %v, want 129 HUP", st, err)
	}
	if _, ok := sessionInfo(t, c, info.ID); ok {
		t.Error("killed session still listed")
	}

	// A program that ignores SIGHUP gets SIGKILL 2 s later.
	info = openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sh", "-c", "trap '' HUP; echo 'ready'; exec sleep 100"}}})
	tm = attach(t, c, info.ID)
	tm.expect(t, "ready\r\n")
	start := time.Now()
	if err := c.KillSession(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < killGrace-100*time.Millisecond || !gone(info.PID) {
		t.Errorf("KillSession returned after %v, program gone: %v; want SIGKILL after %v", d, gone(info.PID), killGrace)
	}
	if st, err := tm.Wait(); err != nil || st.Signal != "KILL" {
		t.Errorf("attached Wait = %+v, %v, want KILL", st, err)
	}

	for _, id := range []string{info.ID, "0123456789abcdef", "", "../x"} {
		if err := c.KillSession(context.Background(), id); !errors.Is(err, ErrSessionNotFound) {
			t.Errorf("KillSession(%q) = %v, want ErrSessionNotFound", id, err)
		}
		if _, err := c.AttachSession(context.Background(), id); !errors.Is(err, ErrSessionNotFound) {
			t.Errorf("AttachSession(%q) = %v, want ErrSessionNotFound", id, err)
		}
	}
}

func TestSessionsList(t *testing.T) {
	c, _ := startServer(t)
	if infos, err := c.Sessions(context.Background()); err != nil || len(infos) != 0 {
		t.Fatalf("Sessions = %+v, %v, want none", infos, err)
	}
	shell := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sh"}}})
	done := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sh", "-c", "exit 5"}}})
	attach(t, c, shell.ID)
	waitFor(t, func() bool {
		infos, err := c.Sessions(context.Background())
		return err == nil && len(infos) == 2 && infos[0].Attached && infos[1].Exited
	})
	infos, _ := c.Sessions(context.Background())
	if infos[0].ID != shell.ID || infos[0].Exited || infos[0].PID != shell.PID || !infos[0].DetachedAt.IsZero() {
		t.Errorf("Sessions[0] = %+v, want the attached shell", infos[0])
	}
	if infos[1].ID != done.ID || infos[1].Attached || infos[1].ExitCode != 5 || infos[1].DetachedAt.IsZero() {
		t.Errorf("Sessions[1] = %+v, want the exited one, code 5", infos[1])
	}
	c.KillSession(context.Background(), shell.ID)
	c.KillSession(context.Background(), done.ID)
}

func TestSessionOpenErrors(t *testing.T) {
	c, _ := startServer(t)
	tests := []struct {
		name string
		req  SessionRequest
		want error
	}{
		{"negative scrollback", SessionRequest{Scrollback: -1}, ErrBadRequest},
		{"huge scrollback", SessionRequest{Scrollback: maxScrollback + 1}, ErrBadRequest},
		{"negative timeout", SessionRequest{DetachTimeout: -time.Second}, ErrBadRequest},
		{"no program", SessionRequest{ExecRequest: ExecRequest{Argv: []string{"no-such-program"}}}, ErrNoSuchFile},
		{"no user", SessionRequest{ExecRequest: ExecRequest{User: "mallory"}}, ErrUserNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.OpenSession(context.Background(), tt.req); !errors.Is(err, tt.want) {
				t.Errorf("OpenSession(%+v) = %v, want %v", tt.req, err, tt.want)
			}
		})
	}
	if infos, err := c.Sessions(context.Background()); err != nil || len(infos) != 0 {
		t.Errorf("Sessions after failed opens = %+v, %v, want none", infos, err)
	}
}

// Close kills every session's program and leaves no session goroutine.
func TestServerCloseEndsSessions(t *testing.T) {
	c, s := startServer(t)
	info := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sh"}}})
	tm := attach(t, c, info.ID)
	tm.typeIn(t, "echo 'ready'\n")
	tm.expect(t, "ready\r\n")
	idle := openSession(t, c, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"sleep", "100"}}})
	s.Close()
	waitFor(t, func() bool { return gone(info.PID) && gone(idle.PID) })
	if st, err := tm.Wait(); err == nil && st.Signal != "KILL" {
		t.Errorf("attached Wait after Close = %+v, want an error or KILL", st)
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "agent.(*session)") {
		t.Errorf("session goroutines left after Close:\n%s", stacks)
	}
	if _, err := c.OpenSession(context.Background(), SessionRequest{}); err == nil {
		t.Error("OpenSession after Close succeeded")
	}
}

// BenchmarkSessionOutput: bytes/s of `cat` of a 64 MiB file through a terminal
// session, agent and client in this process over a socket pair: the agent's
// share of the web terminal's path (pty, frames, yamux), with the client's
// demultiplexing. Run it with -cpuprofile to see where the time goes.
func BenchmarkSessionOutput(b *testing.B) {
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(b, "needs root")
	}
	const size = 64 << 20
	file := filepath.Join(b.TempDir(), "big")
	line := strings.Repeat("subsys terminal throughput ", 3) + "\n"
	if err := os.WriteFile(file, []byte(strings.Repeat(line, size/len(line)+1)[:size]), 0o644); err != nil {
		b.Fatal(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	srv := NewServer(ServerConfig{Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ServeConn(ctx, conns[0]) }()
	c, err := NewClient(conns[1])
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		c.Close()
		cancel()
		<-served
		srv.Close()
	}()
	buf := make([]byte, 64<<10)
	b.SetBytes(size)
	cpu0, switches0 := processCPU(b)
	b.ResetTimer()
	for range b.N {
		info, err := c.OpenSession(ctx, SessionRequest{ExecRequest: ExecRequest{Argv: []string{"cat", file}}})
		if err != nil {
			b.Fatal(err)
		}
		a, err := c.AttachSession(ctx, info.ID)
		if err != nil {
			b.Fatal(err)
		}
		var n int64
		for {
			m, err := a.Output().Read(buf)
			n += int64(m)
			if err != nil {
				break
			}
		}
		// The terminal turns each \n into \r\n.
		if want := int64(size + size/len(line)); n < want {
			b.Fatalf("read %d bytes, want %d", n, want)
		}
		a.Close()
		c.KillSession(ctx, info.ID)
	}
	// CPU time and context switches (the goroutines' and threads' wakeups)
	// are steadier than wall time on a shared machine.
	cpu, switches := processCPU(b)
	b.ReportMetric((cpu-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(switches-switches0)/float64(b.N), "switches/op")
}

// processCPU is this process's user and system time so far, and its
// context switches: agent and client, not the programs they run.
func processCPU(b *testing.B) (time.Duration, int64) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw + ru.Nivcsw
}
