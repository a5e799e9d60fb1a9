//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/subsys-dev/subsys/api"
)

// ackMode is how a test client uses the terminal's acknowledgements.
type ackMode int

const (
	// noAcks is a plain websocket client (websocat, a script): it sends no ack
	// frame, so TCP backpressure alone paces it.
	noAcks ackMode = iota
	// optInOnly opts in with {"type":"ack","bytes":0} and then acknowledges
	// nothing by itself (the test does, with ackAll): a browser that stopped
	// rendering.
	optInOnly
	// autoAck opts in and acknowledges every 32 KiB, as the dashboard does.
	autoAck
)

func (m ackMode) String() string {
	return [...]string{"noAcks", "optInOnly", "autoAck"}[m]
}

// termClient is a Go client of the terminal websocket, acknowledging output as
// the dashboard does, or not at all (see ackMode).
type termClient struct {
	t    testing.TB
	c    *websocket.Conn
	id   string
	wmu  sync.Mutex
	mu   sync.Mutex
	out  bytes.Buffer
	exit *int
	done chan struct{}
	ack  bool // acknowledge as output arrives
	// received counts every output byte, kept even when out is reset.
	received int64
}

func (s *server) dialTerminal(distro, query string) (*websocket.Conn, *http.Response, error) {
	u := "ws://" + s.addr + "/api/v1/distros/" + distro + "/terminal?" + query
	return websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + s.token}})
}

func (s *server) openTerminal(distro, query string, mode ackMode) *termClient {
	s.t.Helper()
	c, resp, err := s.dialTerminal(distro, query)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		s.t.Fatalf("terminal websocket: %v (status %d)", err, status)
	}
	tc := &termClient{t: s.t, c: c, done: make(chan struct{}), ack: mode == autoAck}
	if mode != noAcks {
		// The opt-in goes first, as the dashboard sends it: acks then pace the
		// output from its first byte.
		tc.control(map[string]any{"type": "ack", "bytes": 0})
	}
	kind, msg, err := c.ReadMessage()
	if err != nil || kind != websocket.TextMessage {
		s.t.Fatalf("first frame: %v", err)
	}
	var ctl struct{ Type, ID string }
	if json.Unmarshal(msg, &ctl) != nil || ctl.Type != "session" || ctl.ID == "" {
		s.t.Fatalf("first frame = %s, want a session frame", msg)
	}
	tc.id = ctl.ID
	go tc.read()
	s.t.Cleanup(func() { c.Close() })
	return tc
}

func (tc *termClient) read() {
	defer close(tc.done)
	var pending int64
	for {
		kind, msg, err := tc.c.ReadMessage()
		if err != nil {
			return
		}
		if kind == websocket.BinaryMessage {
			tc.mu.Lock()
			if tc.out.Len() > 1<<20 {
				// Keep the tail only: enough for every check, bounded for floods.
				tail := append([]byte(nil), tc.out.Bytes()[tc.out.Len()-64<<10:]...)
				tc.out.Reset()
				tc.out.Write(tail)
			}
			tc.out.Write(msg)
			tc.received += int64(len(msg))
			tc.mu.Unlock()
			pending += int64(len(msg))
			if tc.ack && pending >= 32<<10 {
				tc.control(api.Control{Type: api.ControlAck, Bytes: pending})
				pending = 0
			}
			continue
		}
		var ctl api.Control
		json.Unmarshal(msg, &ctl)
		if ctl.Type == api.ControlExit {
			tc.mu.Lock()
			tc.exit = ctl.Code
			tc.mu.Unlock()
		}
		if tc.ack && pending > 0 {
			tc.control(api.Control{Type: api.ControlAck, Bytes: pending})
			pending = 0
		}
	}
}

func (tc *termClient) control(v any) {
	b, _ := json.Marshal(v)
	tc.wmu.Lock()
	defer tc.wmu.Unlock()
	tc.c.WriteMessage(websocket.TextMessage, b)
}

func (tc *termClient) ackAll() {
	tc.mu.Lock()
	n := tc.received
	tc.mu.Unlock()
	tc.control(map[string]any{"type": "ack", "bytes": n})
}

func (tc *termClient) send(s string) {
	tc.wmu.Lock()
	defer tc.wmu.Unlock()
	if err := tc.c.WriteMessage(websocket.BinaryMessage, []byte(s)); err != nil {
		tc.t.Fatalf("send: %v", err)
	}
}

func (tc *termClient) output() string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.out.String()
}

func (tc *termClient) waitOutput(want string, timeout time.Duration) {
	tc.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(tc.output(), want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatalf("terminal output never showed %q; it is:\n%q", want, tc.output())
}

// TestTerminalProtocol: resize, signal, exit, reattach with replay, listing and
// killing sessions, and refusals.
func TestTerminalProtocol(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))

	tc := s.openTerminal("tiny", "cols=100&rows=30", autoAck)
	tc.send("echo hel''lo\n")
	tc.waitOutput("hello", 5*time.Second)
	tc.send("stty size\n")
	tc.waitOutput("30 100", 5*time.Second)
	tc.control(map[string]any{"type": "resize", "cols": 120, "rows": 40})
	time.Sleep(100 * time.Millisecond)
	tc.send("stty size; echo $TERM\n")
	tc.waitOutput("40 120", 5*time.Second)
	tc.waitOutput("xterm-256color", 5*time.Second)
	// Ctrl-C as a signal frame interrupts a foreground command.
	tc.send("sleep 100; echo after-sleep\n")
	time.Sleep(300 * time.Millisecond)
	tc.control(api.Control{Type: api.ControlSignal, Name: "INT"})
	tc.send("echo still-here\n")
	tc.waitOutput("still-here", 5*time.Second)

	// The session is listed, attached.
	var list []api.TerminalSession
	s.api("GET", "/distros/tiny/terminals", nil, &list)
	if len(list) != 1 || list[0].ID != tc.id || !list[0].Attached {
		t.Fatalf("terminals = %+v, want one attached session %s", list, tc.id)
	}

	// Drop the socket; the session lives on and a reattach replays its output.
	tc.send("echo before-drop\n")
	tc.waitOutput("before-drop", 5*time.Second)
	tc.c.Close()
	<-tc.done
	waitFor(t, 5*time.Second, "the session to show detached", func() bool {
		s.api("GET", "/distros/tiny/terminals", nil, &list)
		return len(list) == 1 && !list[0].Attached
	})
	again := s.openTerminal("tiny", "session="+tc.id, autoAck)
	again.waitOutput("before-drop", 5*time.Second)
	again.send("echo reattached\n")
	again.waitOutput("reattached", 5*time.Second)

	// Reattach survives a server restart too: sessions live in the agent.
	s.restart()
	third := s.openTerminal("tiny", "session="+tc.id, autoAck)
	third.waitOutput("reattached", 5*time.Second)
	third.send("exit 3\n")
	select {
	case <-third.done:
	case <-time.After(5 * time.Second):
		t.Fatal("socket not closed after the shell exited")
	}
	if third.exit == nil || *third.exit != 3 {
		t.Errorf("exit frame code = %v, want 3", third.exit)
	}

	// Unknown session: 404 before the upgrade.
	if _, resp, err := s.dialTerminal("tiny", "session=nope"); err == nil || resp == nil || resp.StatusCode != 404 {
		t.Errorf("attach to an unknown session: err %v, resp %v; want 404", err, resp)
	}
	// DELETE kills a session.
	victim := s.openTerminal("tiny", "", autoAck)
	if st, raw := s.api("DELETE", "/distros/tiny/terminals/"+victim.id, nil, nil); st != 204 {
		t.Errorf("DELETE terminal = %d %s", st, raw)
	}
	select {
	case <-victim.done:
	case <-time.After(5 * time.Second):
		t.Error("killed session's socket stayed open")
	}
	// A command instead of the shell, and its exit code.
	cmd := s.openTerminal("tiny", "command=echo+one-shot%3B+exit+5", autoAck)
	<-cmd.done
	if !strings.Contains(cmd.output(), "one-shot") || cmd.exit == nil || *cmd.exit != 5 {
		t.Errorf("command terminal: output %q exit %v", cmd.output(), cmd.exit)
	}
	// Oversized control frames close the socket.
	big := s.openTerminal("tiny", "", autoAck)
	big.control(map[string]any{"type": "resize", "pad": strings.Repeat("x", 70<<10)})
	select {
	case <-big.done:
	case <-time.After(5 * time.Second):
		t.Error("a 70 KiB control frame was accepted")
	}
	// Another origin is refused.
	hdr := http.Header{"Authorization": {"Bearer " + s.token}, "Origin": {"http://evil.example"}}
	if _, resp, err := websocket.DefaultDialer.Dial("ws://"+s.addr+"/api/v1/distros/tiny/terminal", hdr); err == nil || resp.StatusCode != 403 {
		t.Errorf("cross-origin terminal: err %v, want 403", err)
	}
	// Reattaching to a stopped distro is a 404 and does not start it.
	live := s.openTerminal("tiny", "", autoAck)
	s.api("POST", "/distros/tiny/terminate", nil, nil)
	<-live.done
	if _, resp, err := s.dialTerminal("tiny", "session="+live.id); err == nil || resp == nil || resp.StatusCode != 404 {
		t.Errorf("reattach on a stopped distro: err %v; want 404", err)
	}
	var d distro
	if s.api("GET", "/distros/tiny", nil, &d); d.State != "Stopped" {
		t.Errorf("a reattach attempt started the distro: %s", d.State)
	}
}

// TestTerminalSlowReader: a client that opted in to acknowledgements and then
// acknowledges nothing gets at most the server's window — the server stops
// reading the session above the high-water mark, and the program producing
// output is held back rather than buffered without limit; acknowledging lets it
// go on. Ctrl-C stops a flood at once.
func TestTerminalSlowReader(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))
	// The pause lets the opt-in arrive before the first byte of output, so the
	// bound below is exact rather than racing the first frames.
	tc := s.openTerminal("tiny", "command=sleep+1%3B+yes", optInOnly)
	time.Sleep(3 * time.Second)
	received := func() int64 {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		return tc.received
	}
	got := received()
	// The high-water mark (256 KiB) plus at most one read of the session.
	if got > 512<<10 {
		t.Errorf("a client that acknowledged nothing received %d bytes: no flow control", got)
	}
	if got == 0 {
		t.Fatalf("no output at all")
	}
	time.Sleep(time.Second)
	if again := received(); again != got {
		t.Errorf("output went on without acknowledgements: %d bytes, then %d", got, again)
	}
	tc.ackAll()
	waitFor(t, 10*time.Second, "output to resume after acknowledging", func() bool {
		return received() > got
	})

	flood := s.openTerminal("tiny", "", autoAck)
	flood.send("yes\n")
	time.Sleep(time.Second)
	start := time.Now()
	flood.send("\x03")
	flood.send("echo flood-over\n")
	flood.waitOutput("flood-over", 5*time.Second)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Ctrl-C took %v to stop a flood, want ≤ 1 s", d)
	}
}

// TestTerminalPlainClient: a websocket client that knows nothing of
// acknowledgements (websocat, a script) gets every byte of a large output, paced
// by TCP alone (before acknowledgements were opt-in it stalled for good after
// 256 KiB), and one that stops reading holds the program back without the
// server buffering its output.
func TestTerminalPlainClient(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))
	// base64 of 4 MiB of zeros is 5592406 "A"s and "==", in 76-column lines.
	const size, wantA = 4 << 20, (4<<20)/3*4 + 2
	c, _, err := s.dialTerminal("tiny", "command="+url.QueryEscape(fmt.Sprintf("head -c %d /dev/zero | base64", size)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var as, total int64
	exit := -1
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			kind, r, err := c.NextReader()
			if err != nil {
				done <- err
				return
			}
			if kind == websocket.TextMessage {
				var ctl api.Control
				msg, _ := io.ReadAll(r)
				if json.Unmarshal(msg, &ctl) == nil && ctl.Type == api.ControlExit && ctl.Code != nil {
					exit = *ctl.Code
				}
				continue
			}
			for {
				n, err := r.Read(buf)
				atomic.AddInt64(&total, int64(n))
				atomic.AddInt64(&as, int64(bytes.Count(buf[:n], []byte("A"))))
				if err != nil {
					break
				}
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		c.Close()
		<-done
		t.Fatalf("the output did not get through in 60 s: %d bytes arrived (%d of %d \"A\"s)", atomic.LoadInt64(&total), atomic.LoadInt64(&as), wantA)
	}
	if as != wantA || exit != 0 {
		t.Errorf("received %d bytes with %d \"A\"s, exit %d; want %d \"A\"s and exit 0", total, as, exit, wantA)
	}

	// A plain client that stops reading holds a flood back: the server's write
	// blocks, it stops reading the session, and nothing piles up in its memory.
	// Reading again lets the flood go on.
	flood, _, err := s.dialTerminal("tiny", "command=base64+/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	if _, _, err := flood.ReadMessage(); err != nil { // the session frame
		t.Fatal(err)
	}
	before := vmRSS(s.cmd.Process.Pid)
	time.Sleep(3 * time.Second)
	if grew := vmRSS(s.cmd.Process.Pid) - before; grew > 32<<20 {
		t.Errorf("the server grew by %d MiB while a client read nothing of a flood", grew>>20)
	}
	var got int64
	flood.SetReadDeadline(time.Now().Add(10 * time.Second))
	for got < 16<<20 {
		_, msg, err := flood.ReadMessage()
		if err != nil {
			t.Fatalf("reading the flood again after %d bytes: %v", got, err)
		}
		got += int64(len(msg))
	}
}

// TestTerminalBulk: 16 MiB through the terminal arrive whole and promptly, both
// to a client that acknowledges as it goes (a lost acknowledgement stalls this
// for good) and to one that sends no acknowledgements at all.
func TestTerminalBulk(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))
	for _, mode := range []ackMode{autoAck, noAcks} {
		tc := s.openTerminal("tiny", "command="+url.QueryEscape("head -c 16777216 /dev/zero"), mode)
		select {
		case <-tc.done:
		case <-time.After(30 * time.Second):
			tc.mu.Lock()
			got := tc.received
			tc.mu.Unlock()
			t.Fatalf("%v: 16 MiB did not get through in 30 s: %d bytes arrived", mode, got)
		}
		tc.mu.Lock()
		if want := int64(16 << 20); tc.received < want || tc.exit == nil || *tc.exit != 0 {
			t.Errorf("%v: received %d bytes, exit %v; want %d bytes and exit 0", mode, tc.received, tc.exit, want)
		}
		tc.mu.Unlock()
	}
}
