package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// termClient is a Go client of the terminal websocket, acknowledging output as a
// browser does (unless ack is off, to play a slow reader).
type termClient struct {
	t    testing.TB
	c    *websocket.Conn
	id   string
	wmu  sync.Mutex
	mu   sync.Mutex
	out  bytes.Buffer
	exit *int
	done chan struct{}
	ack  bool
	// received counts every output byte, kept even when out is reset.
	received int64
}

func (s *server) dialTerminal(distro, query string) (*websocket.Conn, *http.Response, error) {
	u := "ws://" + s.addr + "/api/v1/distros/" + distro + "/terminal?" + query
	return websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + s.token}})
}

func (s *server) openTerminal(distro, query string, ack bool) *termClient {
	s.t.Helper()
	c, resp, err := s.dialTerminal(distro, query)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		s.t.Fatalf("terminal websocket: %v (status %d)", err, status)
	}
	tc := &termClient{t: s.t, c: c, done: make(chan struct{}), ack: ack}
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
				tc.control(map[string]any{"type": "ack", "bytes": pending})
				pending = 0
			}
			continue
		}
		var ctl struct {
			Type string
			Code *int
		}
		json.Unmarshal(msg, &ctl)
		if ctl.Type == "exit" {
			tc.mu.Lock()
			tc.exit = ctl.Code
			tc.mu.Unlock()
		}
		if tc.ack && pending > 0 {
			tc.control(map[string]any{"type": "ack", "bytes": pending})
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

	tc := s.openTerminal("tiny", "cols=100&rows=30", true)
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
	tc.control(map[string]any{"type": "signal", "name": "INT"})
	tc.send("echo still-here\n")
	tc.waitOutput("still-here", 5*time.Second)

	// The session is listed, attached.
	var list []struct {
		ID       string `json:"id"`
		Attached bool   `json:"attached"`
		Exited   bool   `json:"exited"`
	}
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
	again := s.openTerminal("tiny", "session="+tc.id, true)
	again.waitOutput("before-drop", 5*time.Second)
	again.send("echo reattached\n")
	again.waitOutput("reattached", 5*time.Second)

	// Reattach survives a server restart too: sessions live in the agent.
	s.restart()
	third := s.openTerminal("tiny", "session="+tc.id, true)
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
	victim := s.openTerminal("tiny", "", true)
	if st, raw := s.api("DELETE", "/distros/tiny/terminals/"+victim.id, nil, nil); st != 204 {
		t.Errorf("DELETE terminal = %d %s", st, raw)
	}
	select {
	case <-victim.done:
	case <-time.After(5 * time.Second):
		t.Error("killed session's socket stayed open")
	}
	// A command instead of the shell, and its exit code.
	cmd := s.openTerminal("tiny", "command=echo+one-shot%3B+exit+5", true)
	<-cmd.done
	if !strings.Contains(cmd.output(), "one-shot") || cmd.exit == nil || *cmd.exit != 5 {
		t.Errorf("command terminal: output %q exit %v", cmd.output(), cmd.exit)
	}
	// Oversized control frames close the socket.
	big := s.openTerminal("tiny", "", true)
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
	live := s.openTerminal("tiny", "", true)
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

// TestTerminalSlowReader: a client that acknowledges nothing gets at most the
// server's window, and the program producing output is held back rather than
// buffered without limit; acknowledging lets it go on. Ctrl-C stops a flood at once.
func TestTerminalSlowReader(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))
	tc := s.openTerminal("tiny", "command=yes", false)
	time.Sleep(2 * time.Second)
	tc.mu.Lock()
	got := tc.received
	tc.mu.Unlock()
	if got > 4<<20 {
		t.Errorf("a client that acknowledged nothing received %d bytes: no flow control", got)
	}
	if got == 0 {
		t.Fatalf("no output at all")
	}
	tc.ackAll()
	waitFor(t, 10*time.Second, "output to resume after acknowledging", func() bool {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		return tc.received > got
	})

	flood := s.openTerminal("tiny", "", true)
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

// TestTerminalBulk: 16 MiB through the terminal with a client that acknowledges
// as it goes arrive whole and promptly (a lost acknowledgement stalls this for good).
func TestTerminalBulk(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))
	tc := s.openTerminal("tiny", "command=head+-c+16777216+/dev/zero", true)
	select {
	case <-tc.done:
	case <-time.After(30 * time.Second):
		tc.mu.Lock()
		got := tc.received
		tc.mu.Unlock()
		t.Fatalf("16 MiB did not get through in 30 s: %d bytes arrived", got)
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if want := int64(16 << 20); tc.received < want || tc.exit == nil || *tc.exit != 0 {
		t.Errorf("received %d bytes, exit %v; want %d bytes and exit 0", tc.received, tc.exit, want)
	}
}
