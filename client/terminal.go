package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/subsys-dev/subsys/api"
)

// ErrAttachedElsewhere is what Terminal.Read returns when another client
// attached to the session: the session lives on there.
var ErrAttachedElsewhere = errors.New("the terminal session was attached elsewhere")

// TerminalOptions say which terminal session to open or attach to.
type TerminalOptions struct {
	// Session reattaches to this session (its recent output is replayed
	// first); empty opens a new one.
	Session string
	// Cols and Rows are the terminal's size; 0 means 80 × 24 for a new
	// session and the size it has for a reattached one.
	Cols, Rows uint16
	// User, Cwd and Command are for a new session: the user (default: the
	// distro's default user), the working directory, and a command run with
	// /bin/sh -c instead of the user's login shell.
	User, Cwd, Command string
	// Ack opts in to acknowledgement pacing, as the dashboard does: Read
	// acknowledges what it returns, and the server keeps at most 256 KiB
	// unacknowledged. Without it output is paced by TCP alone.
	Ack bool
}

// Terminal is a terminal session of a distro attached over its websocket
// (GET …/terminal): Read returns what the program writes, Write types. The
// session lives in the distro's agent and outlives the Terminal: Close
// detaches, and TerminalOptions.Session attaches again.
type Terminal struct {
	// ID names the session, for TerminalOptions.Session and KillTerminal.
	ID string

	ws      *wsConn
	ack     bool
	rmu     sync.Mutex
	pending []byte
	exit    *int
}

// Terminal opens a new terminal session in a distro (starting it if stopped)
// or reattaches to one. ctx bounds the connecting; the terminal then lives
// until Close. A session that is gone is an *api.Error with code
// api.CodeSessionNotFound.
func (c *Client) Terminal(ctx context.Context, distro string, opt TerminalOptions) (*Terminal, error) {
	q := url.Values{}
	for k, v := range map[string]string{"session": opt.Session, "user": opt.User, "cwd": opt.Cwd, "command": opt.Command} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if opt.Cols != 0 {
		q.Set("cols", strconv.Itoa(int(opt.Cols)))
	}
	if opt.Rows != 0 {
		q.Set("rows", strconv.Itoa(int(opt.Rows)))
	}
	conn, err := c.dialWS(ctx, distroPath(distro)+"/terminal", q)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	t := &Terminal{ws: &wsConn{Conn: conn}, ack: opt.Ack}
	if opt.Ack {
		// The first ack, of nothing, opts in before any output is counted.
		if err := t.ws.control(api.Control{Type: api.ControlAck}); err != nil {
			conn.Close()
			return nil, err
		}
	}
	// The server's first frame names the session.
	kind, msg, err := conn.ReadMessage()
	var ctl api.Control
	if err == nil && (kind != websocket.TextMessage || json.Unmarshal(msg, &ctl) != nil || ctl.Type != api.ControlSession) {
		err = fmt.Errorf("unexpected first frame %.100q", msg)
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("terminal of %s: %w", distro, err)
	}
	t.ID = ctl.ID
	return t, nil
}

// Read reads the program's output. After the program exits it returns
// io.EOF, and ExitCode says how it ended; ErrAttachedElsewhere when another
// client took the session over.
func (t *Terminal) Read(p []byte) (int, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	for len(t.pending) == 0 {
		kind, msg, err := t.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			switch {
			case errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure && ce.Text == "attached elsewhere":
				return 0, ErrAttachedElsewhere
			case errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure, t.exit != nil:
				return 0, io.EOF
			}
			return 0, fmt.Errorf("terminal %s: %w", t.ID, err)
		}
		if kind == websocket.BinaryMessage {
			t.pending = msg
			continue
		}
		var ctl api.Control
		if json.Unmarshal(msg, &ctl) == nil && ctl.Type == api.ControlExit {
			code := ctl.ExitCode()
			t.exit = &code
		}
	}
	n := copy(p, t.pending)
	t.pending = t.pending[n:]
	if t.ack {
		// An acknowledgement that cannot be sent is not this read's failure:
		// the bytes are here, and a socket that is closing (the program has
		// exited, the server is going away) says so, with the exit code, at
		// the next read.
		_ = t.Ack(int64(n))
	}
	return n, nil
}

// ExitCode returns the program's exit code once Read has seen it exit.
func (t *Terminal) ExitCode() (int, bool) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	if t.exit == nil {
		return 0, false
	}
	return *t.exit, true
}

func (t *Terminal) control(c api.Control) error {
	if err := t.ws.control(c); err != nil {
		return fmt.Errorf("terminal %s: %w", t.ID, err)
	}
	return nil
}

// Write types b into the terminal.
func (t *Terminal) Write(b []byte) (int, error) {
	if err := t.ws.send(websocket.BinaryMessage, b); err != nil {
		return 0, fmt.Errorf("terminal %s: %w", t.ID, err)
	}
	return len(b), nil
}

// Resize tells the program its terminal is now cols × rows.
func (t *Terminal) Resize(cols, rows uint16) error {
	return t.control(api.Control{Type: api.ControlResize, Cols: cols, Rows: rows})
}

// Signal sends the program a signal by name, without "SIG": "INT", "HUP".
func (t *Terminal) Signal(name string) error {
	return t.control(api.Control{Type: api.ControlSignal, Name: name})
}

// Ack acknowledges n more bytes of output as consumed. Read does it by
// itself with TerminalOptions.Ack; a client that renders output later (as
// the dashboard does) calls it when it has.
func (t *Terminal) Ack(n int64) error {
	return t.control(api.Control{Type: api.ControlAck, Bytes: n})
}

// Close detaches from the session; the program keeps running in it for the
// session timeout.
func (t *Terminal) Close() error {
	if err := t.ws.close(); err != nil {
		return fmt.Errorf("terminal %s: %w", t.ID, err)
	}
	return nil
}

// Terminals lists a distro's terminal sessions (none when it is stopped).
func (c *Client) Terminals(ctx context.Context, distro string) ([]api.TerminalSession, error) {
	return get[[]api.TerminalSession](ctx, c, distroPath(distro)+"/terminals", nil)
}

// KillTerminal ends a terminal session and its program.
func (c *Client) KillTerminal(ctx context.Context, distro, id string) error {
	return c.call(ctx, http.MethodDelete, distroPath(distro)+"/terminals/"+url.PathEscape(id), nil, nil, nil)
}
