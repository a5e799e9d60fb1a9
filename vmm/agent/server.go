package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

const (
	// quietPeriod is how long the outputs of an exited process must stay silent
	// before the agent stops reading them. Without it, a background child that
	// inherited stdout (`sh -c 'sleep 1000 &'`) would hold the exec open forever.
	quietPeriod = 100 * time.Millisecond
	// headerTimeout bounds how long a new stream may take to send its header.
	headerTimeout = 30 * time.Second
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Logger receives the agent's log. Default slog.Default().
	Logger *slog.Logger
	// PasswdFile and GroupFile are where exec looks users up. Default
	// /etc/passwd and /etc/group: the distro's own once the agent has pivoted.
	PasswdFile, GroupFile string
}

// Server is the agent side of the protocol: it answers hello, starts processes
// for exec, keeps terminal sessions and reports shutdown requests. It works on
// Linux only.
//
// Terminal sessions belong to the Server, not to a connection: a client of any
// connection served by the same Server may attach to them. Close ends them.
//
// A process has one reaper for all of its Servers (see RunInit): it collects
// every child of the process, so a program embedding a Server must not wait for
// children of its own.
type Server struct {
	cfg          ServerConfig
	log          *slog.Logger
	shutdown     chan struct{}
	shutdownOnce sync.Once

	// Terminal sessions and the goroutines that serve them.
	sctx     context.Context
	scancel  context.CancelFunc
	swg      sync.WaitGroup
	smu      sync.Mutex
	sessions map[string]*session
	closed   bool

	// vm serves the utility VM's ops (start-distro…); nil but in RunVM.
	vm vmOps
}

// vmOps is what the utility VM's agent adds to a Server.
type vmOps interface {
	// handle serves req if it is one of the VM's ops and reports whether it
	// was.
	handle(ctx context.Context, st *yamux.Stream, br *bufio.Reader, req request) bool
}

// NewServer returns a Server; it starts nothing until Serve or ServeConn.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PasswdFile == "" {
		cfg.PasswdFile = "/etc/passwd"
	}
	if cfg.GroupFile == "" {
		cfg.GroupFile = "/etc/group"
	}
	sctx, scancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: cfg.Logger, shutdown: make(chan struct{}),
		sctx: sctx, scancel: scancel, sessions: make(map[string]*session)}
}

// Close ends every terminal session, killing its program, and waits for the
// goroutines that served them. Connections are ended by their contexts (see
// Serve), not by Close. It always returns nil.
func (s *Server) Close() error {
	s.closeSessions()
	return nil
}

// ShutdownRequested is closed once a client has asked for shutdown. The owner
// of the Server then ends every process and cancels Serve's context; the
// client sees the shutdown finish when the connection closes.
func (s *Server) ShutdownRequested() <-chan struct{} {
	return s.shutdown
}

// Serve accepts connections on ln and serves each as one session. When ctx ends
// it closes ln and every session, waits for its goroutines, and returns nil;
// otherwise it returns the listener's error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer func() {
		// Sessions end with ctx, also when the listener failed.
		cancel()
		wg.Wait()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("agent accept: %w", err)
		}
		wg.Go(func() {
			if err := s.ServeConn(ctx, conn); err != nil {
				s.log.Debug("session ended", "err", err)
			}
		})
	}
}

// ServeConn serves one connection (a socket, a virtio-serial port) until it
// breaks or ctx ends, and closes it.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	sess, err := yamux.Server(conn, yamuxConfig())
	if err != nil {
		conn.Close()
		return fmt.Errorf("agent session: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer sess.Close()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			if sess.IsClosed() {
				return nil
			}
			return fmt.Errorf("agent accept stream: %w", err)
		}
		wg.Go(func() { s.serveStream(ctx, st) })
	}
}

func (s *Server) serveStream(ctx context.Context, st *yamux.Stream) {
	defer st.Close()
	br := bufio.NewReader(st)
	var req request
	st.SetReadDeadline(time.Now().Add(headerTimeout))
	if err := readHeader(br, &req); err != nil {
		s.log.Debug("bad request header", "err", err)
		if errors.Is(err, ErrProtocol) {
			s.replyError(st, "", err)
		}
		return
	}
	st.SetReadDeadline(time.Time{})
	switch req.Op {
	case opHello:
		host, _ := os.Hostname()
		writeHeader(st, reply{OK: true, Version: Version, Protocol: ProtocolVersion, PID: os.Getpid(), Hostname: host, Kernel: kernelRelease()})
	case opShutdown:
		s.log.Info("shutdown requested")
		writeHeader(st, reply{OK: true})
		s.shutdownOnce.Do(func() { close(s.shutdown) })
	case opExec:
		s.handleExec(ctx, st, br, req.ExecRequest)
	case opOpenSession:
		s.handleOpenSession(st, req)
	case opAttachSession:
		s.handleAttachSession(ctx, st, br, req.ID)
	case opListSessions:
		s.handleListSessions(st)
	case opKillSession:
		s.handleKillSession(ctx, st, req.ID)
	case opFileStat, opFileList, opFileRead, opFileWrite, opFileMkdir, opFileRename, opFileRemove, opFileArchive:
		s.handleFile(ctx, st, br, req)
	default:
		// The utility VM's agent has ops of its own (vm_linux.go).
		if s.vm != nil && s.vm.handle(ctx, st, br, req) {
			return
		}
		s.replyError(st, req.Op, fmt.Errorf("%w: op %q", errors.ErrUnsupported, req.Op))
	}
}

func (s *Server) replyError(w io.Writer, op string, err error) {
	writeHeader(w, reply{Error: &wireError{Code: errorCode(err), Message: err.Error()}})
}

// process is a started process as the exec stream sees it; exec_linux.go
// implements it.
type process interface {
	pid() int
	// stdin is where stdin data goes (a pipe, or the terminal).
	stdin() io.Writer
	// closeStdin says end of file: it closes the pipe, or types Ctrl-D on a
	// terminal.
	closeStdin()
	// outputs are the read ends: stdout (the terminal with a TTY) and stderr
	// (nil with a TTY). They are pollable, so deadlines work.
	outputs() (stdout, stderr *os.File)
	resize(cols, rows uint16) error
	// signal sends to the process's process group.
	signal(m signalMsg) error
	// signalForeground sends to the terminal's foreground process group (a
	// shell's running command), or to the process group without a TTY.
	signalForeground(m signalMsg) error
	// command is the argv as started and the user's name (or uid).
	command() (argv []string, user string)
	// exited delivers the exit status once.
	exited() <-chan ExitStatus
	// close releases the agent's ends; the process keeps running.
	close()
}

func (s *Server) handleExec(ctx context.Context, st *yamux.Stream, br *bufio.Reader, req ExecRequest) {
	p, err := s.startProcess(req)
	if err != nil {
		s.log.Info("exec failed", "argv", req.Argv, "user", req.User, "err", err)
		s.replyError(st, opExec, err)
		return
	}
	log := s.log.With("pid", p.pid())
	log.Info("exec", "argv", req.Argv, "user", req.User, "tty", req.TTY)
	if err := writeHeader(st, reply{OK: true, PID: p.pid()}); err != nil {
		p.close()
		return
	}
	x := &execStream{log: log, st: st, br: br, p: p,
		outWin: newWindow(initialWindow), errWin: newWindow(initialWindow)}
	x.stdinBuf = newRecvBuffer(initialWindow, func(n int) { x.writeFrame(frameWindowStdin, windowPayload(n)) })
	x.run(ctx)
}

// execStream moves one process's bytes between it and the client.
type execStream struct {
	log      *slog.Logger
	st       *yamux.Stream
	br       *bufio.Reader
	p        process
	wmu      sync.Mutex
	outWin   *window // credit for stdout frames
	errWin   *window // credit for stderr frames
	stdinBuf *recvBuffer
	exited   atomic.Bool
}

var errClientGone = errors.New("client went away")

func (x *execStream) run(ctx context.Context) {
	stdout, stderr := x.p.outputs()
	outs := []*os.File{stdout}
	if stderr != nil {
		outs = append(outs, stderr)
	}
	pumpDone := make(chan struct{}, len(outs))
	go x.pumpOutput(stdout, frameStdout, x.outWin, pumpDone)
	if stderr != nil {
		go x.pumpOutput(stderr, frameStderr, x.errWin, pumpDone)
	}
	stdinDone := make(chan struct{})
	go x.pumpStdin(stdinDone)
	gone := make(chan error, 1)
	go func() { gone <- x.readFrames() }()

	pumps := len(outs)
	waitPumps := func() {
		for ; pumps > 0; pumps-- {
			<-pumpDone
		}
	}
	clientGone := false
	select {
	case status := <-x.p.exited():
		// Keep forwarding what the process left in the pipes, and what its
		// background children still write, until the outputs go quiet.
		x.exited.Store(true)
		for _, f := range outs {
			f.SetReadDeadline(time.Now().Add(quietPeriod))
		}
	drain:
		for pumps > 0 {
			select {
			case <-pumpDone:
				pumps--
			case err := <-gone:
				x.log.Debug("client went away while draining", "err", err)
				clientGone = true
				break drain
			case <-ctx.Done():
				break drain
			}
		}
		if pumps == 0 {
			b, _ := json.Marshal(status)
			x.writeFrame(frameExit, b)
			x.log.Info("exited", "code", status.Code, "signal", status.Signal)
		}
	case err := <-gone:
		x.log.Info("client went away; process keeps running without its streams", "err", err)
		clientGone = true
	case <-ctx.Done():
	}

	// Tear down: stop every pump, then the frame reader. Nothing more needs
	// to reach the client; a write stuck on a client that stopped reading
	// fails at once instead of holding the teardown.
	x.st.SetWriteDeadline(time.Unix(1, 0))
	x.outWin.close(errClientGone)
	x.errWin.close(errClientGone)
	x.stdinBuf.discard(errClientGone)
	x.p.close()
	waitPumps()
	<-stdinDone
	if !clientGone {
		x.st.SetReadDeadline(time.Unix(1, 0))
		<-gone
	}
}

// pumpOutput sends one output as frames, within the client's window.
func (x *execStream) pumpOutput(f *os.File, t frameType, win *window, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	buf := make([]byte, dataChunk)
	for {
		n, err := win.wait(len(buf))
		if err != nil {
			return
		}
		if x.exited.Load() {
			// Measured from now, not from the exit, so data that waited for
			// window credit is not mistaken for silence.
			f.SetReadDeadline(time.Now().Add(quietPeriod))
		}
		m, rerr := f.Read(buf[:n])
		if m > 0 {
			win.consume(m)
			if err := x.writeFrame(t, buf[:m]); err != nil {
				return
			}
		}
		if rerr != nil {
			// io.EOF for a pipe, EIO for a terminal nobody holds, a deadline
			// for quiet outputs, or os.ErrClosed at teardown.
			return
		}
	}
}

// pumpStdin copies the client's stdin to the process. Writes to a process that
// stopped reading fail or block; either way the client keeps its window, since
// the buffer grants credit as the pump takes data.
func (x *execStream) pumpStdin(done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, dataChunk)
	broken := false
	for {
		n, err := x.stdinBuf.Read(buf)
		if n > 0 && !broken {
			if _, werr := x.p.stdin().Write(buf[:n]); werr != nil {
				broken = true
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				x.p.closeStdin()
			}
			return
		}
	}
}

// readFrames handles the client's frames. It never blocks on the process, so
// window grants always get through.
func (x *execStream) readFrames() error {
	buf := make([]byte, dataChunk)
	for {
		t, payload, err := readFrame(x.br, buf)
		if err != nil {
			return err
		}
		switch t {
		case frameStdin:
			err = x.stdinBuf.write(payload)
		case frameStdinEOF:
			x.stdinBuf.closeWithError(io.EOF)
		case frameResize:
			var m resizeMsg
			if err = json.Unmarshal(payload, &m); err == nil {
				if rerr := x.p.resize(m.Cols, m.Rows); rerr != nil {
					x.log.Debug("resize", "err", rerr)
				}
			}
		case frameSignal:
			var m signalMsg
			if err = json.Unmarshal(payload, &m); err == nil {
				if serr := x.p.signal(m); serr != nil {
					x.log.Info("signal", "name", m.Name, "number", m.Number, "err", serr)
				}
			}
		case frameWindowStdout, frameWindowStderr:
			var n int
			if n, err = parseWindow(payload); err == nil {
				if t == frameWindowStdout {
					err = x.outWin.add(n)
				} else {
					err = x.errWin.add(n)
				}
			}
		default:
			x.log.Debug("ignoring unknown frame", "type", t)
		}
		if err != nil {
			return fmt.Errorf("%v frame: %w", t, err)
		}
	}
}

func (x *execStream) writeFrame(t frameType, payload []byte) error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	return writeFrame(x.st, t, payload)
}
