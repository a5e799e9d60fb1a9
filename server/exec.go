package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"

	"github.com/subsys-dev/subsys/vmm/agent"
)

// ExecRequest is the body of POST /distros/{name}/exec.
type ExecRequest struct {
	Argv []string `json:"argv"`
	User string   `json:"user,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
	Env  []string `json:"env,omitempty"`
	// Stdin is base64; it is written to the process and then closed.
	Stdin string `json:"stdin,omitempty"`
	// TimeoutS kills the process after that many seconds (0: no limit).
	TimeoutS float64 `json:"timeout_s,omitempty"`
	// OutputEncoding "base64" forces base64 output; by default output is sent as a
	// string when it is valid UTF-8 and as base64 otherwise.
	OutputEncoding string `json:"output_encoding,omitempty"`
}

// ExecResult is the reply of POST /distros/{name}/exec.
type ExecResult struct {
	ExitCode int    `json:"exit_code"`
	Signal   string `json:"signal,omitempty"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	// StdoutEncoding and StderrEncoding say how Stdout and Stderr are encoded:
	// "utf-8" or "base64" (binary output, or when asked for).
	StdoutEncoding string `json:"stdout_encoding"`
	StderrEncoding string `json:"stderr_encoding"`
	// Truncated is true when either stream went over the cap and was cut.
	Truncated bool `json:"truncated"`
	TimedOut  bool `json:"timed_out,omitempty"`
}

// cappedBuffer keeps the first max bytes written and counts the rest, so that a
// chatty process is drained (never blocked) without growing memory.
type cappedBuffer struct {
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room < len(p) {
		c.truncated = true
		c.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.buf.Write(p)
}

func encodeOutput(b []byte, force bool) (string, string) {
	if !force && utf8.Valid(b) {
		return string(b), "utf-8"
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

func (s *Server) handleExec(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var req ExecRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if len(req.Argv) == 0 {
		return badRequest("argv must name a command", nil)
	}
	if req.OutputEncoding != "" && req.OutputEncoding != "base64" && req.OutputEncoding != "utf-8" {
		return badRequest("output_encoding must be utf-8 or base64", nil)
	}
	stdin, err := base64.StdEncoding.DecodeString(req.Stdin)
	if err != nil {
		return badRequest("stdin must be base64", err)
	}
	if req.TimeoutS < 0 {
		return badRequest("timeout_s must not be negative", nil)
	}
	ctx := r.Context()
	p, err := s.cfg.Manager.Exec(ctx, chi.URLParam(r, "name"), agent.ExecRequest{Argv: req.Argv, Env: req.Env, Cwd: req.Cwd, User: req.User})
	if err != nil {
		return err
	}
	defer p.Close()
	out := &cappedBuffer{max: s.cfg.MaxOutputBytes}
	errb := &cappedBuffer{max: s.cfg.MaxOutputBytes}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); io.Copy(out, p.Stdout()) }()
	go func() { defer wg.Done(); io.Copy(errb, p.Stderr()) }()
	go func() {
		defer wg.Done()
		in := p.Stdin()
		in.Write(stdin)
		in.Close()
	}()
	var timeout <-chan time.Time
	if req.TimeoutS > 0 {
		t := time.NewTimer(time.Duration(req.TimeoutS * float64(time.Second)))
		defer t.Stop()
		timeout = t.C
	}
	type result struct {
		st  agent.ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() { st, err := p.Wait(); done <- result{st, err} }()
	var res result
	timedOut := false
	select {
	case res = <-done:
	case <-timeout:
		timedOut = true
		p.Signal("KILL")
		res = <-done
	case <-ctx.Done():
		// The client went away: do not leave the command running on its behalf.
		p.Signal("KILL")
		<-done
		wg.Wait()
		return ctx.Err()
	}
	wg.Wait()
	if res.err != nil {
		return res.err
	}
	force := req.OutputEncoding == "base64"
	reply := ExecResult{ExitCode: res.st.Code, Signal: res.st.Signal, Truncated: out.truncated || errb.truncated, TimedOut: timedOut}
	reply.Stdout, reply.StdoutEncoding = encodeOutput(out.buf.Bytes(), force)
	reply.Stderr, reply.StderrEncoding = encodeOutput(errb.buf.Bytes(), force)
	writeJSON(w, http.StatusOK, reply)
	return nil
}

// Stream channel bytes: the first byte of every binary websocket frame.
const (
	ChannelStdin  = 0
	ChannelStdout = 1
	ChannelStderr = 2
)

// maxControlFrame bounds text (JSON control) frames; larger ones are refused.
const maxControlFrame = 64 << 10

// StreamStart is the first text frame a client sends on /exec/ws.
type StreamStart struct {
	Argv  []string `json:"argv"`
	User  string   `json:"user,omitempty"`
	Cwd   string   `json:"cwd,omitempty"`
	Env   []string `json:"env,omitempty"`
	TTY   bool     `json:"tty,omitempty"`
	Login bool     `json:"login,omitempty"`
	Cols  uint16   `json:"cols,omitempty"`
	Rows  uint16   `json:"rows,omitempty"`
}

// Control is a JSON text frame on /exec/ws, in either direction.
type Control struct {
	Type   string `json:"type"` // client: eof, resize, signal; server: started, exit, error
	Cols   uint16 `json:"cols,omitempty"`
	Rows   uint16 `json:"rows,omitempty"`
	Name   string `json:"name,omitempty"`
	Code   int    `json:"code,omitempty"`
	Signal string `json:"signal,omitempty"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// ParseControl decodes one client control frame, refusing oversized or unknown ones.
func ParseControl(b []byte) (Control, error) {
	var c Control
	if len(b) > maxControlFrame {
		return c, errors.New("control frame too large")
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, err
	}
	switch c.Type {
	case "eof", "resize", "signal":
		return c, nil
	}
	return c, errors.New("unknown control frame type " + c.Type)
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  32 << 10,
	WriteBufferSize: 32 << 10,
	// CheckOrigin stays gorilla's same-origin default; checkOrigin middleware has
	// already applied the allow-list.
}

// wsConn serialises writes: gorilla allows one concurrent writer.
type wsConn struct {
	*websocket.Conn
	mu sync.Mutex
}

func (c *wsConn) send(kind int, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return c.WriteMessage(kind, data)
}

func (c *wsConn) sendJSON(v any) error {
	b, _ := json.Marshal(v)
	return c.send(websocket.TextMessage, b)
}

// handleExecStream runs a command with stdin, stdout, stderr, signals, resizes and
// the exit code carried over a websocket: the CLI's `run` and `shell` use it.
func (s *Server) handleExecStream(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	name := chi.URLParam(r, "name")
	if _, err := s.cfg.Manager.Get(r.Context(), name); err != nil {
		return err
	}
	raw, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // Upgrade has replied
	}
	c := &wsConn{Conn: raw}
	defer c.Close()
	c.SetReadLimit(1 << 20)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	fail := func(err error) {
		_, code, msg := classify(err)
		ctl := Control{Type: "error"}
		ctl.Error = &struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}{code, msg}
		c.sendJSON(ctl)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	kind, first, err := c.ReadMessage()
	if err != nil {
		return nil
	}
	c.SetReadDeadline(time.Time{})
	var start StreamStart
	if kind != websocket.TextMessage || len(first) > maxControlFrame || json.Unmarshal(first, &start) != nil {
		fail(badRequest("the first frame must be a JSON start request", nil))
		return nil
	}
	if len(start.Argv) == 0 && !start.Login {
		start.Login = true
	}
	p, err := s.cfg.Manager.Exec(ctx, name, agent.ExecRequest{Argv: start.Argv, Env: start.Env, Cwd: start.Cwd, User: start.User,
		Login: start.Login, TTY: start.TTY, Cols: start.Cols, Rows: start.Rows})
	if err != nil {
		fail(err)
		return nil
	}
	defer p.Close()
	c.sendJSON(Control{Type: "started"})

	var pumps sync.WaitGroup
	pump := func(ch byte, src io.Reader) {
		defer pumps.Done()
		buf := make([]byte, 32<<10)
		buf[0] = ch
		for {
			n, err := src.Read(buf[1:])
			if n > 0 {
				if c.send(websocket.BinaryMessage, buf[:n+1]) != nil {
					cancel()
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	pumps.Add(2)
	go pump(ChannelStdout, p.Stdout())
	go pump(ChannelStderr, p.Stderr())

	// Reader: stdin and control frames from the client. It ends when the socket
	// closes; that is the client leaving, so the process is killed.
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		stdin := p.Stdin()
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				cancel()
				return
			}
			if kind == websocket.BinaryMessage {
				if len(msg) > 0 && msg[0] == ChannelStdin {
					if _, err := stdin.Write(msg[1:]); err != nil {
						s.log.Debug("stdin write failed", "err", err)
					}
				}
				continue
			}
			ctl, err := ParseControl(msg)
			if err != nil {
				s.log.Info("bad control frame", "err", err)
				continue
			}
			switch ctl.Type {
			case "eof":
				stdin.Close()
			case "resize":
				p.Resize(ctl.Cols, ctl.Rows)
			case "signal":
				p.Signal(ctl.Name)
			}
		}
	}()

	type result struct {
		st  agent.ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() { st, err := p.Wait(); done <- result{st, err} }()
	select {
	case res := <-done:
		pumps.Wait()
		if res.err != nil {
			fail(res.err)
		} else {
			c.sendJSON(Control{Type: "exit", Code: res.st.Code, Signal: res.st.Signal})
		}
		c.mu.Lock()
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.mu.Unlock()
	case <-ctx.Done():
		p.Signal("KILL")
		<-done
		p.Close()
		pumps.Wait()
	}
	c.Close()
	<-readerDone
	return nil
}
