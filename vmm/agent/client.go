package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// Client is a connection to one agent. It is safe for concurrent use; each call
// runs on its own yamux stream.
type Client struct {
	sess *yamux.Session
}

// Dial connects to an agent listening on a unix socket (version 1 distros).
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("dial agent: %w", err)
	}
	c, err := NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// NewClient runs the client side of the protocol over conn, which it then owns:
// Close closes it. This is the entry for transports other than a unix socket
// (virtio-serial, hvsocket).
func NewClient(conn net.Conn) (*Client, error) {
	sess, err := yamux.Client(conn, yamuxConfig())
	if err != nil {
		return nil, fmt.Errorf("agent session: %w", err)
	}
	return &Client{sess: sess}, nil
}

// yamuxConfig is shared by both sides. Yamux's own logging is off: errors reach
// callers as return values.
func yamuxConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	return cfg
}

// Close ends the session and every stream on it. Processes keep running in the
// distro; their outputs are no longer read.
func (c *Client) Close() error {
	return c.sess.Close()
}

// Done is closed when the session is gone: Close was called, the agent exited,
// or the connection broke.
func (c *Client) Done() <-chan struct{} {
	return c.sess.CloseChan()
}

// Hello asks the agent who it is. The server uses it to tell a live agent from
// a stale socket.
func (c *Client) Hello(ctx context.Context) (Info, error) {
	st, _, rep, err := c.roundTrip(ctx, request{Op: opHello})
	if err != nil {
		return Info{}, err
	}
	st.Close()
	return Info{Version: rep.Version, Protocol: rep.Protocol, PID: rep.PID, Hostname: rep.Hostname}, nil
}

// Shutdown asks the agent to kill every process of the distro and exit, and
// waits, bounded by ctx, until the agent has closed the connection.
func (c *Client) Shutdown(ctx context.Context) error {
	st, _, _, err := c.roundTrip(ctx, request{Op: opShutdown})
	if err != nil {
		return err
	}
	st.Close()
	select {
	case <-c.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("agent shutdown: %w", ctx.Err())
	}
}

// Exec starts a process in the distro. ctx bounds the start only; the process
// then runs until it exits, is signalled, or Close is called.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (*Process, error) {
	st, br, rep, err := c.roundTrip(ctx, request{Op: opExec, ExecRequest: req})
	if err != nil {
		return nil, err
	}
	p := &Process{st: st, pid: rep.PID, tty: req.TTY, done: make(chan struct{})}
	p.stdinWin = newWindow(initialWindow)
	p.stdout = newRecvBuffer(initialWindow, func(n int) { p.writeFrame(frameWindowStdout, windowPayload(n)) })
	if req.TTY {
		p.stderr = newRecvBuffer(0, nil)
		p.stderr.closeWithError(io.EOF)
	} else {
		p.stderr = newRecvBuffer(initialWindow, func(n int) { p.writeFrame(frameWindowStderr, windowPayload(n)) })
	}
	p.stdin = &stdinWriter{p: p}
	go p.demux(br)
	return p, nil
}

// roundTrip opens a stream, sends the request header and reads the reply
// header. On success the caller owns the stream.
func (c *Client) roundTrip(ctx context.Context, req request) (*yamux.Stream, *bufio.Reader, reply, error) {
	fail := func(err error) (*yamux.Stream, *bufio.Reader, reply, error) {
		if errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: %v", ErrDisconnected, err)
		}
		return nil, nil, reply{}, fmt.Errorf("agent %s: %w", req.Op, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	st, err := c.sess.OpenStream()
	if err != nil {
		return fail(err)
	}
	// Unblock the reads and writes below when ctx ends. A deadline in the past
	// wakes yamux's pending calls.
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		close(cancelled)
		st.SetDeadline(time.Unix(1, 0))
	})
	wrap := func(err error) error {
		select {
		case <-cancelled:
			return ctx.Err()
		default:
			return err
		}
	}
	if err := writeHeader(st, req); err != nil {
		stop()
		st.Close()
		return fail(wrap(err))
	}
	br := bufio.NewReader(st)
	var rep reply
	err = readHeader(br, &rep)
	if !stop() {
		// ctx ended while we waited; the stream has a dead deadline.
		st.Close()
		return fail(ctx.Err())
	}
	if err != nil {
		st.Close()
		return fail(wrap(err))
	}
	if !rep.OK {
		st.Close()
		re := &RemoteError{Op: req.Op, Code: codeInternal, Message: "request failed"}
		if rep.Error != nil {
			re.Code, re.Message = rep.Error.Code, rep.Error.Message
		}
		return nil, nil, reply{}, re
	}
	return st, br, rep, nil
}

// Process is a process started by Exec. Its methods are safe for concurrent use.
//
// Like os/exec with pipes, a caller must keep reading Stdout and Stderr (or
// Close the process) for the process to make progress once it has written more
// than the flow-control window (256 KiB per stream); reading only one of them
// never stalls the other's delivery into its buffer.
type Process struct {
	st    *yamux.Stream
	pid   int
	tty   bool
	wmu   sync.Mutex // serializes frame writes
	stdin *stdinWriter

	stdinWin       *window
	stdout, stderr *recvBuffer

	done    chan struct{} // closed when demux has returned
	exit    ExitStatus
	exitErr error

	closeOnce sync.Once
}

// PID is the process id inside the distro.
func (p *Process) PID() int { return p.pid }

// Stdin is the process's standard input. Close sends end of file; with a TTY it
// types Ctrl-D instead, since the terminal has no other way to say it.
func (p *Process) Stdin() io.WriteCloser { return p.stdin }

// Stdout is the process's standard output, or the terminal's output with a TTY.
func (p *Process) Stdout() io.Reader { return p.stdout }

// Stderr is the process's standard error; with a TTY it is empty.
func (p *Process) Stderr() io.Reader { return p.stderr }

// Resize sets the terminal size of a TTY process.
func (p *Process) Resize(cols, rows uint16) error {
	b, _ := json.Marshal(resizeMsg{Cols: cols, Rows: rows})
	return p.writeFrame(frameResize, b)
}

// Signal sends a signal to the process's process group. name is "INT", "TERM",
// "KILL", … (with or without "SIG") or a number.
func (p *Process) Signal(name string) error {
	msg, err := parseSignal(name)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(msg)
	return p.writeFrame(frameSignal, b)
}

// Wait waits for the process to exit and its output to be delivered, and
// returns how it ended. The error is ErrDisconnected (wrapped) when the
// connection ended first.
func (p *Process) Wait() (ExitStatus, error) {
	<-p.done
	return p.exit, p.exitErr
}

// Close stops talking to the process: it drops unread output and closes the
// stream. A process still running sees end of file on stdin, and a broken pipe
// (or a hangup with a TTY) when it writes; signal it first to stop it for sure.
func (p *Process) Close() error {
	p.closeOnce.Do(func() {
		p.stdout.discard(io.ErrClosedPipe)
		p.stderr.discard(io.ErrClosedPipe)
		p.stdinWin.close(io.ErrClosedPipe)
		p.st.Close()
		// The agent answers our close with its own; until then, stop reading.
		p.st.SetReadDeadline(time.Unix(1, 0))
	})
	<-p.done
	return nil
}

func (p *Process) writeFrame(t frameType, payload []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := writeFrame(p.st, t, payload); err != nil {
		return fmt.Errorf("agent exec: write %v: %w", t, err)
	}
	return nil
}

// demux reads the agent's frames until the stream ends. It never blocks on a
// reader: flow control bounds what the agent sends to what the buffers hold.
func (p *Process) demux(br *bufio.Reader) {
	var (
		err     error
		gotExit bool
		buf     = make([]byte, dataChunk)
		t       frameType
		payload []byte
	)
loop:
	for {
		t, payload, err = readFrame(br, buf)
		if err != nil {
			break
		}
		switch t {
		case frameStdout:
			err = p.stdout.write(payload)
		case frameStderr:
			err = p.stderr.write(payload)
		case frameWindowStdin:
			var n int
			if n, err = parseWindow(payload); err == nil {
				err = p.stdinWin.add(n)
			}
		case frameExit:
			if err = json.Unmarshal(payload, &p.exit); err != nil {
				err = fmt.Errorf("%w: bad exit frame: %v", ErrProtocol, err)
			} else {
				gotExit = true
			}
		default:
			// A newer agent's frame this client does not know: skip it.
		}
		if err != nil {
			break loop
		}
	}
	// A clean end is EOF right after the exit frame. Anything else is a broken
	// protocol or a lost connection, which readers and Wait should see.
	var fail error
	switch {
	case errors.Is(err, io.EOF) && gotExit:
	case errors.Is(err, io.EOF):
		fail = ErrDisconnected
	case errors.Is(err, ErrProtocol):
		fail = err
	default:
		fail = fmt.Errorf("%w: %v", ErrDisconnected, err)
	}
	outErr := io.EOF
	if fail != nil {
		outErr = fail
	}
	if !gotExit {
		p.exitErr = fmt.Errorf("agent exec: %w", fail)
	}
	p.stdout.closeWithError(outErr)
	p.stderr.closeWithError(outErr)
	p.stdinWin.close(io.ErrClosedPipe)
	// Our half of the stream: the agent waits for it to free the stream.
	p.st.Close()
	close(p.done)
}

// stdinWriter sends stdin frames within the agent's window.
type stdinWriter struct {
	p      *Process
	mu     sync.Mutex
	closed bool
}

func (w *stdinWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, io.ErrClosedPipe
	}
	total := 0
	for len(b) > 0 {
		n, err := w.p.stdinWin.wait(min(len(b), dataChunk))
		if err != nil {
			return total, err
		}
		if err := w.p.writeFrame(frameStdin, b[:n]); err != nil {
			return total, err
		}
		w.p.stdinWin.consume(n)
		total += n
		b = b[n:]
	}
	return total, nil
}

func (w *stdinWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.p.writeFrame(frameStdinEOF, nil)
}
