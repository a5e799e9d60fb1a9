package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// Terminal flow control. Every client gets every byte, and memory per terminal
// stays bounded, in one of two ways:
//
//   - By default output is paced by the websocket's own TCP connection: the
//     server's writes block while the client's receive window is full, the server
//     stops reading the session, the agent's window fills, the agent stops reading
//     the pty and the program blocks. This is what a client that knows nothing of
//     acknowledgements (websocat, a script) gets, and it never stalls. One that
//     reads nothing for 30 s is taken for gone (send's write deadline ends the
//     socket); the session lives on to be reattached.
//   - A client that sends an ack frame opts in to acknowledgement pacing, as ttyd
//     does it: it acknowledges the bytes it has consumed (for the dashboard, the
//     bytes xterm.js has rendered), and above highWater unacknowledged bytes the
//     server stops reading the session. Kernel socket buffers can hold megabytes
//     that a browser still has to render; this bounds what is queued in front of
//     a Ctrl-C's prompt to highWater. The dashboard opts in with
//     {"type":"ack","bytes":0} as its first frame, so it is paced from its first
//     byte.
//
// Acknowledgements count the bytes of binary frames since the socket opened,
// whenever the first one comes: a client that opts in late owes acks for what
// it received before.
const (
	// 256 KiB is a fraction of a second of xterm.js rendering even on a slow
	// machine, so Ctrl-C in a flood shows its prompt at once; it is still far more
	// than one round trip of data, so throughput does not suffer.
	highWater       = 256 << 10
	lowWater        = 64 << 10
	terminalPing    = 10 * time.Second
	terminalTimeout = 30 * time.Second // no pong for this long: the socket is dead
)

func (s *Server) handleListTerminals(w http.ResponseWriter, r *http.Request) error {
	c, err := s.cfg.Manager.RunningAgent(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	out := []api.TerminalSession{}
	if c != nil {
		list, err := c.Sessions(r.Context())
		if err != nil {
			return err
		}
		for _, si := range list {
			out = append(out, apiSession(si))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleKillTerminal(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	c, err := s.cfg.Manager.RunningAgent(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	if c == nil {
		return &httpError{Status: http.StatusNotFound, Code: api.CodeNotFound, Msg: "the distro is not running, so it has no terminal sessions"}
	}
	if err := c.KillSession(r.Context(), chi.URLParam(r, "id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func queryUint16(r *http.Request, key string, def uint16) (uint16, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return 0, badRequest(key+" must be a number from 1 to 65535", nil)
	}
	return uint16(n), nil
}

// handleTerminal attaches a websocket to a terminal session in the agent: a new
// one, or with ?session=ID an existing one, whose recent output is replayed first.
func (s *Server) handleTerminal(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	q := r.URL.Query()
	cols, err := queryUint16(r, "cols", 80)
	if err != nil {
		return err
	}
	rows, err := queryUint16(r, "rows", 24)
	if err != nil {
		return err
	}
	id := q.Get("session")
	var c *agent.Client
	if id != "" {
		// Reattaching never starts a distro: a stopped one has no sessions.
		c, err = s.cfg.Manager.RunningAgent(r.Context(), chi.URLParam(r, "name"))
		if err == nil && c == nil {
			return &httpError{Status: http.StatusNotFound, Code: api.CodeSessionNotFound, Msg: "no terminal session " + strconv.Quote(id) + ": the distro is not running"}
		}
	} else {
		c, err = s.cfg.Manager.Agent(r.Context(), chi.URLParam(r, "name"))
	}
	if err != nil {
		return err
	}
	if id == "" {
		settings, err := s.cfg.Manager.Settings(r.Context())
		if err != nil {
			return err
		}
		req := agent.SessionRequest{ExecRequest: agent.ExecRequest{User: q.Get("user"), Cwd: q.Get("cwd"), TTY: true, Cols: cols, Rows: rows, Login: true},
			Scrollback: settings.ScrollbackBytes, DetachTimeout: time.Duration(settings.SessionTimeoutS) * time.Second}
		if req.User == "" {
			d, err := s.cfg.Manager.Get(r.Context(), chi.URLParam(r, "name"))
			if err != nil {
				return err
			}
			req.User = d.DefaultUser
		}
		if cmd := q.Get("command"); cmd != "" {
			req.Argv, req.Login = []string{"/bin/sh", "-c", cmd}, false
		}
		info, err := c.OpenSession(r.Context(), req)
		if err != nil {
			return err
		}
		id = info.ID
	}
	att, err := c.AttachSession(r.Context(), id)
	if errors.Is(err, agent.ErrSessionNotFound) {
		return &httpError{Status: http.StatusNotFound, Code: api.CodeSessionNotFound, Msg: "no terminal session " + strconv.Quote(id) + " (it ended or timed out)", Err: err}
	}
	if err != nil {
		return err
	}
	defer att.Close()
	if q.Get("session") != "" && (q.Get("cols") != "" || q.Get("rows") != "") {
		att.Resize(cols, rows)
	}
	raw, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil
	}
	conn := &wsConn{Conn: raw}
	defer conn.Close()
	s.serveTerminal(r.Context(), conn, id, att)
	return nil
}

// flow counts bytes sent and not yet acknowledged by the client, and holds the
// sender back once the client has opted in to acknowledgements and is more than
// highWater behind.
type flow struct {
	mu      sync.Mutex
	cond    *sync.Cond
	unacked int64
	acking  bool // the client has sent an ack frame: acks pace the output
	closed  bool
}

func (f *flow) sent(n int) {
	f.mu.Lock()
	f.unacked += int64(n)
	f.mu.Unlock()
}

// ack records an acknowledgement; the first one opts the client in.
func (f *flow) ack(n int64) {
	f.mu.Lock()
	f.acking = true
	f.unacked = max(f.unacked-n, 0)
	if f.unacked <= lowWater {
		f.cond.Broadcast()
	}
	f.mu.Unlock()
}

// wait blocks while an acknowledging client is more than highWater behind;
// false when closed. A client that never acknowledges is never held here: the
// blocking websocket write paces it instead.
func (f *flow) wait() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.acking && f.unacked >= highWater {
		for f.unacked > lowWater && !f.closed {
			f.cond.Wait()
		}
	}
	return !f.closed
}

func (f *flow) close() {
	f.mu.Lock()
	f.closed = true
	f.cond.Broadcast()
	f.mu.Unlock()
}

func (s *Server) serveTerminal(ctx context.Context, conn *wsConn, id string, att *agent.Attachment) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fl := &flow{}
	fl.cond = sync.NewCond(&fl.mu)
	defer fl.close()
	conn.SetReadLimit(1 << 20)
	if err := conn.sendJSON(api.Control{Type: api.ControlSession, ID: id}); err != nil {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()

	// Keepalive: a ping every 10 s; no pong for 30 s ends the socket.
	conn.SetReadDeadline(time.Now().Add(terminalTimeout))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(terminalTimeout)) })
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(terminalPing)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				conn.mu.Lock()
				err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second))
				conn.mu.Unlock()
				if err != nil {
					cancel()
					return
				}
			}
		}
	}()

	// Client → session.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		for {
			kind, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			conn.SetReadDeadline(time.Now().Add(terminalTimeout))
			if kind == websocket.BinaryMessage {
				if _, err := att.Input().Write(msg); err != nil {
					return
				}
				continue
			}
			ctl, err := api.ParseControl(msg)
			if err == nil && ctl.Type == api.ControlEOF {
				// A terminal's input ends with the program (^D is a
				// keystroke): eof has no meaning here and is refused.
				err = errors.New("eof is not a terminal control frame")
			}
			if err != nil {
				s.log.Info("terminal control refused", "session", id, "err", err)
				conn.mu.Lock()
				conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "bad control frame"), time.Now().Add(time.Second))
				conn.mu.Unlock()
				return
			}
			switch ctl.Type {
			case api.ControlResize:
				att.Resize(ctl.Cols, ctl.Rows)
			case api.ControlSignal:
				att.Signal(ctl.Name)
			case api.ControlAck:
				fl.ack(ctl.Bytes)
			}
		}
	}()

	// Session → client, paced by acknowledgements when the client sends them and
	// by the blocking write (TCP backpressure) always.
	outDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(outDone)
		buf := make([]byte, 128<<10)
		out := att.Output()
		for fl.wait() {
			n, err := out.Read(buf)
			if n > 0 {
				// Count before sending: the browser's ack can arrive before
				// send returns, and an ack for bytes not yet counted would be
				// lost (clamped at zero), stalling the flow for good.
				fl.sent(n)
				if conn.send(websocket.BinaryMessage, buf[:n]) != nil {
					cancel()
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		<-ctx.Done()
		fl.close()
		att.Close() // unblocks Output and Wait; the session itself lives on
	}()

	st, err := att.Wait()
	if err == nil {
		<-outDone
		code := st.Code
		conn.sendJSON(api.Control{Type: api.ControlExit, Code: &code})
		conn.mu.Lock()
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "exited"), time.Now().Add(time.Second))
		conn.mu.Unlock()
	} else if errors.Is(err, agent.ErrDetached) && ctx.Err() == nil {
		conn.mu.Lock()
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "attached elsewhere"), time.Now().Add(time.Second))
		conn.mu.Unlock()
	}
	cancel()
	conn.Close()
}
