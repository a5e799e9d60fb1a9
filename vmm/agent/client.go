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
	"sync/atomic"
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
	cfg.MaxStreamWindowSize = 2 << 20
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
	return Info{Version: rep.Version, Protocol: rep.Protocol, PID: rep.PID, Hostname: rep.Hostname, Kernel: rep.Kernel}, nil
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
	p := newProcess(opExec, st, rep.PID, req.TTY)
	go p.demux(br)
	return p, nil
}

// newProcess is the client side of an exec or attach-session stream whose
// reply header has been read; the caller starts demux.
func newProcess(op string, st net.Conn, pid int, tty bool) *Process {
	p := &Process{op: op, st: st, pid: pid, tty: tty, done: make(chan struct{})}
	p.stdinWin = newWindow(initialWindow)
	p.stdout = newRecvBuffer(initialWindow, func(n int) { p.writeFrame(frameWindowStdout, windowPayload(n)) })
	if tty {
		p.stderr = newRecvBuffer(0, nil)
		p.stderr.closeWithError(io.EOF)
	} else {
		p.stderr = newRecvBuffer(initialWindow, func(n int) { p.writeFrame(frameWindowStderr, windowPayload(n)) })
	}
	p.stdin = &stdinWriter{p: p}
	return p
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
	op    string // exec, or attach-session for an Attachment
	st    net.Conn
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
		return fmt.Errorf("agent %s: write %v: %w", p.op, t, err)
	}
	return nil
}

// demux reads the agent's frames until the stream ends. It never blocks on a
// reader: flow control bounds what the agent sends to what the buffers hold.
func (p *Process) demux(br *bufio.Reader) {
	var (
		err      error
		gotExit  bool
		detached bool
		buf      = make([]byte, dataChunk)
		t        frameType
		payload  []byte
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
		case frameDetached:
			detached = true
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
	case detached:
		fail = ErrDetached
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
		p.exitErr = fmt.Errorf("agent %s: %w", p.op, fail)
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

// OpenSession starts a program on a pseudo-terminal in a new terminal session
// and returns its description. The session lives in the agent: it outlives this
// Client and its connection, until its program exits and DetachTimeout passes
// with no one attached, or KillSession. ctx bounds the start only.
func (c *Client) OpenSession(ctx context.Context, req SessionRequest) (SessionInfo, error) {
	infos, err := c.sessionInfos(ctx, request{Op: opOpenSession, ExecRequest: req.ExecRequest,
		Scrollback: req.Scrollback, DetachTimeout: req.DetachTimeout})
	if err != nil {
		return SessionInfo{}, err
	}
	if len(infos) != 1 {
		return SessionInfo{}, fmt.Errorf("agent %s: %w: %d session frames, want 1", opOpenSession, ErrProtocol, len(infos))
	}
	return infos[0], nil
}

// Sessions lists the agent's terminal sessions, oldest first.
func (c *Client) Sessions(ctx context.Context) ([]SessionInfo, error) {
	return c.sessionInfos(ctx, request{Op: opListSessions})
}

// sessionInfos sends req and collects the session frames that answer it.
func (c *Client) sessionInfos(ctx context.Context, req request) ([]SessionInfo, error) {
	st, br, _, err := c.roundTrip(ctx, req)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var infos []SessionInfo
	buf := make([]byte, dataChunk)
	for {
		t, payload, err := readFrame(br, buf)
		if errors.Is(err, io.EOF) {
			return infos, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			} else if !errors.Is(err, ErrProtocol) {
				err = fmt.Errorf("%w: %v", ErrDisconnected, err)
			}
			return nil, fmt.Errorf("agent %s: %w", req.Op, err)
		}
		if t != frameSession {
			continue // a newer agent's frame
		}
		info, err := decodeSessionInfo(payload)
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", req.Op, err)
		}
		infos = append(infos, info)
	}
}

// AttachSession attaches to the terminal session id: its Output first replays
// the scrollback, then follows the program live. A session has at most one
// attachment; attaching takes it over from the previous one, whose Wait then
// returns ErrDetached. The error is ErrSessionNotFound (wrapped) for an unknown
// id. ctx bounds the attach only.
func (c *Client) AttachSession(ctx context.Context, id string) (*Attachment, error) {
	st, br, rep, err := c.roundTrip(ctx, request{Op: opAttachSession, ID: id})
	if err != nil {
		return nil, err
	}
	p := newProcess(opAttachSession, st, rep.PID, true)
	go p.demux(br)
	return &Attachment{p: p}, nil
}

// KillSession ends the terminal session id: SIGHUP to its program's process
// group, SIGKILL 2 s later if it is still there. The session is removed at
// once; KillSession returns when the program is gone (or ctx ends). The error
// is ErrSessionNotFound (wrapped) for an unknown id.
func (c *Client) KillSession(ctx context.Context, id string) error {
	st, _, _, err := c.roundTrip(ctx, request{Op: opKillSession, ID: id})
	if err != nil {
		return err
	}
	st.Close()
	return nil
}

// Attachment is a client's connection to a terminal session. Its methods are
// safe for concurrent use.
//
// Output is flow-controlled end to end: a caller that stops reading it stops
// the program once the window (256 KiB) and the terminal's buffer are full.
type Attachment struct {
	p      *Process
	closed atomic.Bool
}

// Output is the terminal's output: the scrollback replay, then live output.
// After the program's exit it ends with io.EOF; when the attachment ends
// otherwise it returns that error (ErrDetached, ErrDisconnected).
func (a *Attachment) Output() io.Reader { return a.p.Stdout() }

// Input is typed into the terminal.
func (a *Attachment) Input() io.Writer { return inputWriter{a.p.stdin} }

// Resize sets the terminal's size; the program gets SIGWINCH.
func (a *Attachment) Resize(cols, rows uint16) error { return a.p.Resize(cols, rows) }

// Signal sends a signal to the terminal's foreground process group, as typing
// Ctrl-C does for "INT". name is "INT", "TERM", "KILL", … (with or without
// "SIG") or a number.
func (a *Attachment) Signal(name string) error { return a.p.Signal(name) }

// PID is the session's program's process id inside the distro.
func (a *Attachment) PID() int { return a.p.PID() }

// Wait returns how the program ended, once all of its output has been
// delivered to Output. It returns ErrDetached (wrapped) when this attachment
// was closed or taken over while the program runs, and ErrDisconnected
// (wrapped) when the connection to the agent broke.
func (a *Attachment) Wait() (ExitStatus, error) {
	st, err := a.p.Wait()
	if err != nil && a.closed.Load() && !errors.Is(err, ErrDetached) {
		err = fmt.Errorf("agent %s: %w", opAttachSession, ErrDetached)
	}
	return st, err
}

// Close detaches: the session and its program keep running, and output goes
// to the scrollback until the next attach. Unread output is dropped.
func (a *Attachment) Close() error {
	a.closed.Store(true)
	return a.p.Close()
}

// inputWriter hides stdinWriter's Close: a terminal session has no end of
// input, only the Ctrl-D a client may type.
type inputWriter struct{ w *stdinWriter }

func (w inputWriter) Write(b []byte) (int, error) { return w.w.Write(b) }
