package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm/agent"
)

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
		return string(b), api.EncodingUTF8
	}
	return base64.StdEncoding.EncodeToString(b), api.EncodingBase64
}

func (s *Server) handleExec(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var req api.ExecRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if len(req.Argv) == 0 {
		return badRequest("argv must name a command", nil)
	}
	if req.OutputEncoding != "" && req.OutputEncoding != api.EncodingBase64 && req.OutputEncoding != api.EncodingUTF8 {
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
	force := req.OutputEncoding == api.EncodingBase64
	reply := api.ExecResult{ExitCode: res.st.Code, Signal: res.st.Signal, Truncated: out.truncated || errb.truncated, TimedOut: timedOut}
	reply.Stdout, reply.StdoutEncoding = encodeOutput(out.buf.Bytes(), force)
	reply.Stderr, reply.StderrEncoding = encodeOutput(errb.buf.Bytes(), force)
	writeJSON(w, http.StatusOK, reply)
	return nil
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
		c.sendJSON(api.Control{Type: api.ControlError, Error: &api.Error{Code: code, Message: msg}})
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	kind, first, err := c.ReadMessage()
	if err != nil {
		return nil
	}
	c.SetReadDeadline(time.Time{})
	var start api.ExecStart
	if kind != websocket.TextMessage || len(first) > api.MaxControlFrame || json.Unmarshal(first, &start) != nil {
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
	c.sendJSON(api.Control{Type: api.ControlStarted})

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
	go pump(api.ChannelStdout, p.Stdout())
	go pump(api.ChannelStderr, p.Stderr())

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
				if len(msg) > 0 && msg[0] == api.ChannelStdin {
					if _, err := stdin.Write(msg[1:]); err != nil {
						s.log.Debug("stdin write failed", "err", err)
					}
				}
				continue
			}
			ctl, err := api.ParseControl(msg)
			if err != nil {
				s.log.Info("bad control frame", "err", err)
				continue
			}
			switch ctl.Type {
			case api.ControlEOF:
				stdin.Close()
			case api.ControlResize:
				p.Resize(ctl.Cols, ctl.Rows)
			case api.ControlSignal:
				p.Signal(ctl.Name)
			case api.ControlAck:
				// Output here is paced by TCP alone: nothing to acknowledge.
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
			exit := api.Control{Type: api.ControlExit, Signal: res.st.Signal}
			if res.st.Code != 0 {
				// exec's exit frame has always left a code of 0 out.
				exit.Code = &res.st.Code
			}
			c.sendJSON(exit)
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
