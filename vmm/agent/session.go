package agent

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// Terminal sessions live in the Server, not in a connection: a session's two
// goroutines, pump and supervise, belong to the Server and end with Close. An
// attachment is a stream of some connection that the session's pump writes
// output to; the stream's own goroutines belong to the connection.

const (
	// inputPoll is how often a write to a terminal that does not read its
	// input checks whether its attachment has ended.
	inputPoll = 100 * time.Millisecond
	// finalFrameTimeout bounds the write of an attachment's last frame.
	finalFrameTimeout = 5 * time.Second
	// floodFrame is how much output at once makes a flood (more than a
	// screenful). In a flood a frame waits up to floodWait to fill with more
	// output: a pty holds only some 64 KiB, and every frame costs wakeups
	// and writes all the way to the browser. Outside a flood, output (a
	// keystroke's echo) goes out at once.
	floodFrame = 32 << 10
	floodWait  = 2 * time.Millisecond
)

var errDetached = errors.New("attachment ended")

// session is a program on a terminal, its scrollback and its attachment.
type session struct {
	id            string
	log           *slog.Logger
	p             process
	tty           *os.File // the terminal's master side, p's stdin and stdout
	argv          []string
	user          string
	createdAt     time.Time
	detachTimeout time.Duration

	changed  chan struct{} // wakes supervise: attachment or removal changed
	killReq  chan struct{} // closed by kill
	killOnce sync.Once
	procDone chan struct{} // closed by supervise once status holds the exit
	stopped  chan struct{} // closed by supervise: the pump must end now
	pumpDone chan struct{} // closed by pump
	gone     chan struct{} // closed by supervise when all is released
	// readable is closed (by letRead) when the pump may start reading the
	// terminal: see pump.
	readable chan struct{}
	readOnce sync.Once

	inMu sync.Mutex // serializes input from overlapping attachments

	mu         sync.Mutex
	ring       *ring // written by pump only, until exited
	att        *sessionAttachment
	detachedAt time.Time
	cols, rows uint16
	kicks      int  // bumped whenever pump should look at the state again
	stopping   bool // pump must end
	removed    bool // no longer in the Server's table: no new attachments
	procExited bool // status holds the exit; output may still be draining
	status     ExitStatus
	exited     bool // all output read: the session's end as clients see it
}

// handleOpenSession starts the program and the session's goroutines, then
// answers with the session's description.
func (s *Server) handleOpenSession(st *yamux.Stream, req request) {
	sreq := SessionRequest{ExecRequest: req.ExecRequest, Scrollback: req.Scrollback, DetachTimeout: req.DetachTimeout}
	sess, err := s.openSession(sreq)
	if err != nil {
		s.log.Info("open session failed", "argv", req.Argv, "user", req.User, "err", err)
		s.replyError(st, opOpenSession, err)
		return
	}
	sess.log.Info("session opened", "argv", sess.argv, "user", sess.user, "pid", sess.p.pid())
	if err := writeHeader(st, reply{OK: true, PID: sess.p.pid()}); err != nil {
		return
	}
	b, _ := json.Marshal(sess.info())
	writeFrame(st, frameSession, b)
}

func (s *Server) openSession(req SessionRequest) (*session, error) {
	switch {
	case req.Scrollback < 0 || req.Scrollback > maxScrollback:
		return nil, fmt.Errorf("%w: scrollback of %d bytes, want 0 to %d", ErrBadRequest, req.Scrollback, maxScrollback)
	case req.Scrollback == 0:
		req.Scrollback = defaultScrollback
	}
	switch {
	case req.DetachTimeout < 0:
		return nil, fmt.Errorf("%w: negative detach timeout", ErrBadRequest)
	case req.DetachTimeout == 0:
		req.DetachTimeout = defaultDetachTimeout
	}
	if req.Cols == 0 || req.Rows == 0 {
		req.Cols, req.Rows = 80, 24
	}
	req.TTY = true
	if err := s.sessionRoom(); err != nil {
		return nil, err
	}
	p, err := s.startProcess(req.ExecRequest)
	if err != nil {
		return nil, err
	}
	tty, _ := p.outputs()
	argv, user := p.command()
	now := time.Now()
	sess := &session{
		id: newSessionID(), p: p, tty: tty, argv: argv, user: user,
		createdAt: now, detachTimeout: req.DetachTimeout,
		changed:  make(chan struct{}, 1),
		killReq:  make(chan struct{}),
		procDone: make(chan struct{}),
		stopped:  make(chan struct{}),
		pumpDone: make(chan struct{}),
		gone:     make(chan struct{}),
		readable: make(chan struct{}),
		ring:     newRing(req.Scrollback),
		cols:     req.Cols, rows: req.Rows,
		detachedAt: now,
	}
	sess.log = s.log.With("session", sess.id)

	s.smu.Lock()
	defer s.smu.Unlock()
	if s.closed || len(s.sessions) >= maxSessions {
		// Nothing will serve the program's terminal: end it.
		p.signal(signalMsg{Name: "KILL"})
		p.close()
		if s.closed {
			return nil, errors.New("agent is shutting down")
		}
		return nil, fmt.Errorf("%w: %d sessions open, the most one agent keeps", ErrBadRequest, maxSessions)
	}
	s.sessions[sess.id] = sess
	s.swg.Go(sess.pump)
	s.swg.Go(func() { sess.supervise(s.sctx, s) })
	return sess, nil
}

// sessionRoom fails early, before a program is started, when no session can
// be added.
func (s *Server) sessionRoom() error {
	s.smu.Lock()
	defer s.smu.Unlock()
	switch {
	case s.closed:
		return errors.New("agent is shutting down")
	case len(s.sessions) >= maxSessions:
		return fmt.Errorf("%w: %d sessions open, the most one agent keeps", ErrBadRequest, maxSessions)
	}
	return nil
}

func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// lookupSession returns the session id, or ErrSessionNotFound.
func (s *Server) lookupSession(id string) (*session, error) {
	s.smu.Lock()
	defer s.smu.Unlock()
	if sess := s.sessions[id]; sess != nil {
		return sess, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrSessionNotFound, id)
}

// removeSession takes sess out of the table and refuses it new attachments.
func (s *Server) removeSession(sess *session) {
	s.smu.Lock()
	if s.sessions[sess.id] == sess {
		delete(s.sessions, sess.id)
	}
	s.smu.Unlock()
	sess.mu.Lock()
	sess.removed = true
	sess.mu.Unlock()
	// No attachment can come any more: nothing is gained by holding the
	// output back, and reading lets the program see its end.
	sess.letRead()
}

func (s *Server) handleListSessions(st *yamux.Stream) {
	s.smu.Lock()
	all := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.smu.Unlock()
	infos := make([]SessionInfo, len(all))
	for i, sess := range all {
		infos[i] = sess.info()
	}
	slices.SortFunc(infos, func(a, b SessionInfo) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	if err := writeHeader(st, reply{OK: true}); err != nil {
		return
	}
	for _, info := range infos {
		b, _ := json.Marshal(info)
		if err := writeFrame(st, frameSession, b); err != nil {
			return
		}
	}
}

// handleKillSession removes the session, starts killing its program, and
// answers once the program is gone (bounded, for a program stuck in the
// kernel).
func (s *Server) handleKillSession(ctx context.Context, st *yamux.Stream, id string) {
	sess, err := s.lookupSession(id)
	if err != nil {
		s.replyError(st, opKillSession, err)
		return
	}
	s.removeSession(sess)
	sess.log.Info("killing session")
	sess.kill()
	t := time.NewTimer(killGrace + time.Second)
	defer t.Stop()
	select {
	case <-sess.gone:
	case <-t.C:
	case <-ctx.Done():
		return
	}
	writeHeader(st, reply{OK: true})
}

// kill asks supervise to end the program; the caller has removed the session.
func (sess *session) kill() {
	sess.killOnce.Do(func() { close(sess.killReq) })
}

func (sess *session) info() SessionInfo {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	info := SessionInfo{
		ID: sess.id, Argv: sess.argv, User: sess.user, PID: sess.p.pid(),
		Cols: sess.cols, Rows: sess.rows,
		Attached: sess.att != nil, CreatedAt: sess.createdAt, DetachedAt: sess.detachedAt,
		Exited: sess.exited,
	}
	if sess.exited {
		info.ExitCode, info.Signal = sess.status.Code, sess.status.Signal
	}
	return info
}

// letRead lets the pump start reading the terminal. Only the first call
// counts.
func (sess *session) letRead() {
	sess.readOnce.Do(func() { close(sess.readable) })
}

// notify wakes supervise to look at the attachment again.
func (sess *session) notify() {
	select {
	case sess.changed <- struct{}{}:
	default:
	}
}

// kick wakes the pump from a read of the terminal, so it looks at the state
// again. The caller changes the state first.
func (sess *session) kick() {
	sess.mu.Lock()
	sess.kicks++
	sess.mu.Unlock()
	sess.tty.SetReadDeadline(time.Now())
}

// supervise owns the session's life: it records the program's exit, kills
// the program on KillSession or after DetachTimeout with no attachment, stops
// the pump, and releases the terminal at the end. On Server shutdown it kills
// the program and ends without waiting for the exit.
func (sess *session) supervise(ctx context.Context, srv *Server) {
	defer close(sess.gone)
	defer sess.p.close()
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	defer idle.Stop()
	var killC, drainC <-chan time.Time
	exitC := sess.p.exited()
	pumpDone := sess.pumpDone
	done := ctx.Done()
	killReq := sess.killReq
	removed, stopping := false, false
	beginKill := func() {
		removed, killReq = true, nil
		if exitC != nil {
			sess.p.signal(signalMsg{Name: "HUP"})
			killC = time.After(killGrace)
		}
	}
	stop := func() {
		if stopping {
			return
		}
		stopping = true
		sess.mu.Lock()
		sess.stopping = true
		att := sess.att
		sess.mu.Unlock()
		close(sess.stopped)
		if att != nil {
			// This wakes the pump if it waits for att's window.
			if exitC == nil {
				b, _ := json.Marshal(sess.status)
				att.end(frameExit, b)
			} else {
				att.end(0, nil)
			}
		}
		sess.kick()
	}
	for {
		if pumpDone == nil && (stopping || removed && exitC == nil) {
			return
		}
		// Count the idle time while no one is attached.
		idle.Stop()
		sess.mu.Lock()
		detached, since := sess.att == nil, sess.detachedAt
		sess.mu.Unlock()
		if detached && !removed {
			idle.Reset(sess.detachTimeout - time.Since(since))
		}
		select {
		case st := <-exitC:
			exitC = nil
			sess.mu.Lock()
			sess.procExited, sess.status = true, st
			sess.mu.Unlock()
			close(sess.procDone)
			// What the program left in the terminal is bounded by the
			// kernel's pty buffer (some 64 KiB), well within a scrollback, so
			// the ring can keep it for a later attach, and reading it lets the
			// session's exit show without one. (A background child that goes
			// on writing is read into the ring as a detached session is.)
			sess.letRead()
			sess.kick()
			if removed {
				// Leftover output of a killed session gets a moment, not
				// forever: a background child may keep writing.
				drainC = time.After(killGrace)
			}
		case <-pumpDone:
			pumpDone = nil
		case <-sess.changed:
		case <-idle.C:
			sess.mu.Lock()
			expired := sess.att == nil && time.Since(sess.detachedAt) >= sess.detachTimeout
			sess.mu.Unlock()
			if expired {
				sess.log.Info("session detach timeout; killing it", "timeout", sess.detachTimeout)
				srv.removeSession(sess)
				beginKill()
				if exitC == nil {
					drainC = time.After(killGrace)
				}
			}
		case <-killReq:
			beginKill()
			if exitC == nil {
				drainC = time.After(killGrace)
			}
		case <-killC:
			killC = nil
			sess.p.signal(signalMsg{Name: "KILL"})
		case <-drainC:
			drainC = nil
			stop()
		case <-done:
			done = nil
			if exitC != nil {
				sess.p.signal(signalMsg{Name: "KILL"})
			}
			stop()
		}
	}
}

// pump reads the terminal for the whole session. It starts at the first
// attachment: the server opens a session and attaches right after, and
// output read in between would only reach the ring, whose bound would drop
// all but the tail of a program that writes a lot at once (cat of a big
// file). Until then the program blocks on a full terminal. (It also starts
// when no attachment can come, or the program has exited: see letRead.)
// With an attachment it reads only as much as the attachment's window
// allows, so a client that stops reading stops the program; without one (once
// the first has gone) it reads freely into the ring. At the program's exit it
// reads what is left, then ends the attachment with the exit status.
func (sess *session) pump() {
	defer close(sess.pumpDone)
	select {
	case <-sess.readable:
	case <-sess.stopped:
		return
	}
	// Output is read straight into a frame, after room for its header, so
	// it goes out without a copy.
	frame := newOutputFrame()
	buf := frame[frameHeaderSize:]
	var served *sessionAttachment // the attachment that has had its replay
	flood := false                // the last frame was a flood's
	for {
		sess.mu.Lock()
		att, exited, stopping, kicks := sess.att, sess.procExited, sess.stopping, sess.kicks
		sess.mu.Unlock()
		if stopping {
			return
		}
		if att != nil && att != served {
			served = att
			if err := sess.replay(att, frame); err != nil {
				continue // att ended
			}
		}
		n := len(buf)
		if att != nil {
			var err error
			if n, err = att.outWin.wait(len(buf)); err != nil {
				continue // att ended
			}
		}
		if exited {
			// Measured from now, not from the exit, so output that waited
			// for window credit is not mistaken for silence.
			sess.tty.SetReadDeadline(time.Now().Add(quietPeriod))
		}
		m, err := sess.tty.Read(buf[:n])
		if m > 0 && err == nil {
			// A pty hands out at most a few KiB per read; take what else is
			// already there without waiting, so a flood travels in full frames
			// (fewer frames, syscalls and wakeups) while a keystroke's echo still
			// goes out at once. In a flood, wait for more: when the pump comes
			// back from sending a frame the program has often refilled only a
			// little of the terminal, and sending that at once would chop the
			// flood into small frames.
			m += readAvailable(sess.tty, buf[m:n])
			if (flood || m >= floodFrame) && m < n && !exited {
				m += sess.fillFrame(buf[m:n])
			}
			flood = m >= floodFrame
		}
		if m > 0 {
			sess.mu.Lock()
			sess.ring.write(buf[:m])
			current := sess.att == att
			sess.mu.Unlock()
			if att != nil && current {
				att.outWin.consume(m)
				att.writeOutput(frame[:frameHeaderSize+m])
			}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			sess.mu.Lock()
			kicked := sess.kicks != kicks
			sess.mu.Unlock()
			if kicked || !exited {
				sess.tty.SetReadDeadline(time.Time{})
				continue
			}
		}
		if err != nil {
			// Quiet after the exit; EIO once nothing holds the terminal; or
			// the terminal was closed.
			break
		}
	}
	select {
	case <-sess.procDone:
	case <-sess.stopped:
		return
	}
	sess.finish(served, frame)
}

// fillFrame reads more of a flood into p as the program refills the
// terminal, for at most floodWait, and returns how much it read. Its deadline
// is the one kick uses: a kick during the wait ends it, one just before it is
// seen at most floodWait late, and either way the pump sends this frame and
// then looks at the state again. An error ends the wait too; the pump's next
// read reports it.
func (sess *session) fillFrame(p []byte) int {
	sess.tty.SetReadDeadline(time.Now().Add(floodWait))
	total := 0
	for total < len(p) {
		k, err := sess.tty.Read(p[total:])
		if k > 0 && err == nil {
			k += readAvailable(sess.tty, p[total+k:])
		}
		total += k
		if err != nil {
			break
		}
	}
	sess.tty.SetReadDeadline(time.Time{})
	return total
}

// finish makes the session exited and ends its attachment, if any, with the
// exit status. From here the ring no longer changes. frame is as for replay.
func (sess *session) finish(served *sessionAttachment, frame []byte) {
	sess.mu.Lock()
	sess.exited = true
	att, status := sess.att, sess.status
	sess.mu.Unlock()
	sess.log.Info("session program exited", "code", status.Code, "signal", status.Signal)
	if att == nil {
		return
	}
	if att != served {
		if err := sess.replay(att, frame); err != nil {
			return
		}
	}
	b, _ := json.Marshal(status)
	att.end(frameExit, b)
}

// newOutputFrame returns a buffer for an output frame (see writeOutput). The
// whole frame, header included, is dataChunk bytes at most: two then fit the
// yamux stream's window (256 KiB), so the pump can have one frame in flight
// while it sends the next, where a slightly bigger one would be split and its
// last bytes would wait for the window to reopen.
func newOutputFrame() []byte {
	return make([]byte, dataChunk)
}

// replay sends the scrollback to att within its window, in frames built in
// frame (see writeOutput). Only the ring's writer may call it: the pump, or
// anyone once the session has exited.
func (sess *session) replay(att *sessionAttachment, frame []byte) error {
	buf := frame[frameHeaderSize:]
	sess.mu.Lock()
	total := sess.ring.len()
	sess.mu.Unlock()
	for off := 0; off < total; {
		n, err := att.outWin.wait(min(len(buf), total-off))
		if err != nil {
			return err
		}
		sess.mu.Lock()
		n = sess.ring.readAt(buf[:n], off)
		sess.mu.Unlock()
		att.outWin.consume(n)
		if err := att.writeOutput(frame[:frameHeaderSize+n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// attach makes att the session's attachment, ending the previous one. It
// reports whether the program has exited (the caller then replays and ends
// att itself), and false when the session was removed meanwhile.
func (sess *session) attach(att *sessionAttachment) (exited, ok bool) {
	sess.mu.Lock()
	if sess.removed {
		sess.mu.Unlock()
		return false, false
	}
	old := sess.att
	sess.att, sess.detachedAt = att, time.Time{}
	exited = sess.exited
	sess.mu.Unlock()
	sess.letRead() // after att is in place, so the pump's first read is for it
	sess.notify()
	if old != nil {
		sess.log.Info("session taken over by a new attachment")
		old.end(frameDetached, nil)
	}
	sess.kick()
	return exited, true
}

// detach ends att; if it is the session's attachment the session is detached
// from now.
func (sess *session) detach(att *sessionAttachment) {
	sess.mu.Lock()
	if sess.att == att {
		sess.att, sess.detachedAt = nil, time.Now()
	}
	sess.mu.Unlock()
	sess.notify()
	att.end(0, nil)
}

func (sess *session) resize(cols, rows uint16) error {
	if err := sess.p.resize(cols, rows); err != nil {
		return err
	}
	sess.mu.Lock()
	sess.cols, sess.rows = cols, rows
	sess.mu.Unlock()
	return nil
}

// writeInput types p into the terminal. A program that does not read its
// input blocks the write; it gives up once att has ended.
func (sess *session) writeInput(att *sessionAttachment, p []byte) error {
	sess.inMu.Lock()
	defer sess.inMu.Unlock()
	for len(p) > 0 {
		if att.isEnded() {
			return errDetached
		}
		sess.tty.SetWriteDeadline(time.Now().Add(inputPoll))
		n, err := sess.tty.Write(p)
		p = p[n:]
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
	return nil
}

// sessionAttachment is the agent's side of an attach-session stream.
type sessionAttachment struct {
	st       *yamux.Stream
	br       *bufio.Reader
	outWin   *window // credit for output frames
	stdinBuf *recvBuffer

	wmu   sync.Mutex // serializes frame writes
	ended bool       // no more frames: the last one was written, or none will be
	done  chan struct{}
}

func newSessionAttachment(st *yamux.Stream, br *bufio.Reader) *sessionAttachment {
	a := &sessionAttachment{st: st, br: br, outWin: newWindow(initialWindow), done: make(chan struct{})}
	a.stdinBuf = newRecvBuffer(initialWindow, func(n int) { a.writeFrame(frameWindowStdin, windowPayload(n)) })
	return a
}

func (a *sessionAttachment) writeFrame(t frameType, payload []byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if a.ended {
		return errDetached
	}
	return writeFrame(a.st, t, payload)
}

// writeOutput sends output that was read straight into frame, after
// frameHeaderSize bytes left for the header, as one stdout frame.
func (a *sessionAttachment) writeOutput(frame []byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if a.ended {
		return errDetached
	}
	return writeFrameBuf(a.st, frameStdout, frame)
}

func (a *sessionAttachment) isEnded() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// end ends the attachment, after a last frame of type t unless t is 0. Only
// the first end counts.
func (a *sessionAttachment) end(t frameType, payload []byte) {
	// Wake whoever waits for credit or is stuck writing to a client that
	// stopped reading, then take the write lock.
	a.outWin.close(errDetached)
	a.st.SetWriteDeadline(time.Now().Add(finalFrameTimeout))
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if a.ended {
		return
	}
	a.ended = true
	if t != 0 {
		writeFrame(a.st, t, payload)
	}
	close(a.done)
}

// handleAttachSession serves one attachment until it ends: the program
// exits, another attachment takes over, the client detaches or goes away.
func (s *Server) handleAttachSession(ctx context.Context, st *yamux.Stream, br *bufio.Reader, id string) {
	sess, err := s.lookupSession(id)
	if err != nil {
		s.replyError(st, opAttachSession, err)
		return
	}
	a := newSessionAttachment(st, br)
	// Nothing may reach the stream before the reply header: hold the write
	// lock until it is written.
	a.wmu.Lock()
	exited, ok := sess.attach(a)
	if !ok {
		a.ended = true
		close(a.done)
		a.wmu.Unlock()
		s.replyError(st, opAttachSession, fmt.Errorf("%w: %q", ErrSessionNotFound, id))
		return
	}
	err = writeHeader(st, reply{OK: true, PID: sess.p.pid()})
	a.wmu.Unlock()
	if err != nil {
		sess.detach(a)
		return
	}
	sess.log.Info("session attached")

	gone := make(chan error, 1)
	go func() { gone <- a.readFrames(sess) }()
	stdinDone := make(chan struct{})
	go a.pumpStdin(sess, stdinDone)
	replayDone := make(chan struct{})
	if exited {
		// The pump is gone and the ring final: replay and report here.
		go func() {
			defer close(replayDone)
			if sess.replay(a, newOutputFrame()) == nil {
				sess.mu.Lock()
				status := sess.status
				sess.mu.Unlock()
				b, _ := json.Marshal(status)
				a.end(frameExit, b)
			}
		}()
	} else {
		close(replayDone)
	}

	clientGone := false
	select {
	case <-a.done:
	case err := <-gone:
		sess.log.Debug("attached client went away", "err", err)
		clientGone = true
	case <-ctx.Done():
	}
	sess.detach(a)
	sess.log.Info("session detached")
	// Nothing more reaches the client.
	st.SetWriteDeadline(time.Unix(1, 0))
	a.stdinBuf.discard(errClientGone)
	<-replayDone
	<-stdinDone
	if !clientGone {
		st.SetReadDeadline(time.Unix(1, 0))
		<-gone
	}
}

// pumpStdin types the client's input into the terminal.
func (a *sessionAttachment) pumpStdin(sess *session, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, dataChunk)
	broken := false
	for {
		n, err := a.stdinBuf.Read(buf)
		if n > 0 && !broken {
			if werr := sess.writeInput(a, buf[:n]); werr != nil {
				broken = true
			}
		}
		if err != nil {
			return
		}
	}
}

// readFrames handles the client's frames. Like execStream.readFrames it never
// blocks on the program.
func (a *sessionAttachment) readFrames(sess *session) error {
	buf := make([]byte, dataChunk)
	for {
		t, payload, err := readFrame(a.br, buf)
		if err != nil {
			return err
		}
		switch t {
		case frameStdin:
			err = a.stdinBuf.write(payload)
		case frameResize:
			var m resizeMsg
			if err = json.Unmarshal(payload, &m); err == nil && !a.isEnded() {
				if rerr := sess.resize(m.Cols, m.Rows); rerr != nil {
					sess.log.Debug("resize", "err", rerr)
				}
			}
		case frameSignal:
			var m signalMsg
			if err = json.Unmarshal(payload, &m); err == nil && !a.isEnded() {
				if serr := sess.p.signalForeground(m); serr != nil {
					sess.log.Info("signal", "name", m.Name, "number", m.Number, "err", serr)
				}
			}
		case frameWindowStdout:
			var n int
			if n, err = parseWindow(payload); err == nil {
				err = a.outWin.add(n)
			}
		default:
			// stdin-eof: a terminal has no end of input. Unknown: a newer
			// client's.
		}
		if err != nil {
			return fmt.Errorf("%v frame: %w", t, err)
		}
	}
}

// closeSessions kills every session's program and waits for the sessions'
// goroutines.
func (s *Server) closeSessions() {
	s.smu.Lock()
	s.closed = true
	s.smu.Unlock()
	s.scancel()
	s.swg.Wait()
	s.smu.Lock()
	clear(s.sessions)
	s.smu.Unlock()
}
