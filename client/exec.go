package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/gorilla/websocket"

	"github.com/subsys-dev/subsys/api"
)

// Exec runs a command in a distro (starting it if stopped) and returns its
// exit code and output, each stream capped by the server (16 MiB); the
// output is decoded by ExecResult.StdoutBytes and StderrBytes. Cancelling ctx
// kills the command.
func (c *Client) Exec(ctx context.Context, distro string, req api.ExecRequest) (api.ExecResult, error) {
	var res api.ExecResult
	err := c.call(ctx, http.MethodPost, distroPath(distro)+"/exec", nil, req, &res)
	return res, err
}

// ExitStatus is how a streamed command ended.
type ExitStatus struct {
	// Code is the exit code; 128+n when signal n ended it, as a shell reports it.
	Code int
	// Signal names the signal that ended it ("KILL"), if one did.
	Signal string
}

// Process is a command running in a distro with its standard streams carried
// over the exec websocket (GET …/exec/ws), as `subsys run` uses it. Write
// sends input; Wait delivers output and returns the exit. Its methods may be
// called from several goroutines; Wait from one.
type Process struct {
	ws *wsConn
}

// ExecStream starts start.Argv (empty: the user's login shell) in a distro,
// with a terminal of its own when start.TTY, and returns once the server says
// it runs. ctx bounds the connecting and starting; after that the process
// runs until it exits, or Close ends it (killing the command), so a caller
// that forwards Ctrl-C with Signal keeps the stream while the command handles
// it. A command that cannot start is an *api.Error.
func (c *Client) ExecStream(ctx context.Context, distro string, start api.ExecStart) (*Process, error) {
	conn, err := c.dialWS(ctx, distroPath(distro)+"/exec/ws", nil)
	if err != nil {
		return nil, err
	}
	p := &Process{ws: &wsConn{Conn: conn}}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	b, err := json.Marshal(start)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("encode the command: %w", err)
	}
	if err := p.ws.send(websocket.TextMessage, b); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send the command: %w", err)
	}
	// Wait for "started" (or an error) before the caller touches anything.
	for {
		kind, msg, err := conn.ReadMessage()
		if err != nil {
			conn.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("connection closed: %w", err)
		}
		if kind != websocket.TextMessage {
			continue
		}
		var ctl api.Control
		json.Unmarshal(msg, &ctl)
		switch {
		case ctl.Type == api.ControlError && ctl.Error != nil:
			conn.Close()
			return nil, ctl.Error
		case ctl.Type == api.ControlStarted:
			return p, nil
		}
	}
}

// Write sends b to the command's standard input.
func (p *Process) Write(b []byte) (int, error) {
	frame := make([]byte, 1+len(b))
	frame[0] = api.ChannelStdin
	copy(frame[1:], b)
	if err := p.ws.send(websocket.BinaryMessage, frame); err != nil {
		return 0, fmt.Errorf("stdin: %w", err)
	}
	return len(b), nil
}

// CloseStdin closes the command's standard input (it reads end of file).
func (p *Process) CloseStdin() error { return p.ws.control(api.Control{Type: api.ControlEOF}) }

// Resize tells the command's terminal it is now cols × rows (SIGWINCH).
func (p *Process) Resize(cols, rows uint16) error {
	return p.ws.control(api.Control{Type: api.ControlResize, Cols: cols, Rows: rows})
}

// Signal sends the command a signal by name, without "SIG": "INT", "TERM".
func (p *Process) Signal(name string) error {
	return p.ws.control(api.Control{Type: api.ControlSignal, Name: name})
}

// Wait writes the command's output to stdout and stderr (nil discards) as it
// comes, until the command exits, and returns how it ended. Output flows only
// while Wait runs, so call it soon after ExecStream: a caller that sets up a
// terminal first gets no output before it is ready. A command that failed in
// the distro is an *api.Error; a broken connection another error.
func (p *Process) Wait(stdout, stderr io.Writer) (ExitStatus, error) {
	for {
		kind, msg, err := p.ws.ReadMessage()
		if err != nil {
			return ExitStatus{}, fmt.Errorf("connection lost: %w", err)
		}
		if kind == websocket.BinaryMessage {
			if len(msg) == 0 {
				continue
			}
			var w io.Writer
			switch msg[0] {
			case api.ChannelStdout:
				w = stdout
			case api.ChannelStderr:
				w = stderr
			}
			if w != nil {
				w.Write(msg[1:])
			}
			continue
		}
		var ctl api.Control
		if json.Unmarshal(msg, &ctl) != nil {
			continue
		}
		switch ctl.Type {
		case api.ControlExit:
			return ExitStatus{Code: ctl.ExitCode(), Signal: ctl.Signal}, nil
		case api.ControlError:
			if ctl.Error != nil {
				return ExitStatus{}, ctl.Error
			}
		}
	}
}

// Close ends the stream; a command still running is killed.
func (p *Process) Close() error {
	if err := p.ws.close(); err != nil {
		return fmt.Errorf("exec stream: %w", err)
	}
	return nil
}
