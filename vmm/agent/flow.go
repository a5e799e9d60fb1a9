package agent

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// window is the send side of one flow-controlled channel: how many bytes the
// peer has said it can take. One goroutine sends on a channel at a time, so
// wait and consume need not be atomic together.
type window struct {
	mu     sync.Mutex
	cond   sync.Cond
	avail  int
	err    error // set by close: no more sending
	closed bool
}

func newWindow(n int) *window {
	w := &window{avail: n}
	w.cond.L = &w.mu
	return w
}

// wait blocks until the window has room or is closed, and returns how much of
// max may be sent now. It does not take the credit; consume does.
func (w *window) wait(max int) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.avail == 0 && !w.closed {
		w.cond.Wait()
	}
	if w.closed {
		return 0, w.err
	}
	return min(w.avail, max), nil
}

// consume takes n bytes of credit after they were sent.
func (w *window) consume(n int) {
	w.mu.Lock()
	w.avail -= n
	w.mu.Unlock()
}

// add is a grant from the peer.
func (w *window) add(n int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.avail+n > maxWindow {
		return fmt.Errorf("%w: window grows past %d bytes", ErrProtocol, maxWindow)
	}
	w.avail += n
	w.cond.Broadcast()
	return nil
}

// close wakes the sender; wait then returns err. Only the first close counts.
func (w *window) close(err error) {
	w.mu.Lock()
	if !w.closed {
		w.closed, w.err = true, err
	}
	w.cond.Broadcast()
	w.mu.Unlock()
}

// recvBuffer is the receive side of one flow-controlled channel. The sender
// never has more than limit bytes unacknowledged, so a write that would pass
// limit is a protocol violation, and memory stays bounded without ever blocking
// the goroutine that demultiplexes frames.
type recvBuffer struct {
	mu      sync.Mutex
	cond    sync.Cond
	buf     bytes.Buffer
	limit   int
	err     error // returned by Read once buf is drained
	pending int   // bytes read since the last grant
	dropped bool  // the reader went away: drop data, grant at once
	grant   func(n int)
}

// newRecvBuffer returns a buffer of limit bytes; grant tells the sender about
// bytes the reader took. grant is called without the lock held.
func newRecvBuffer(limit int, grant func(n int)) *recvBuffer {
	b := &recvBuffer{limit: limit, grant: grant}
	b.cond.L = &b.mu
	return b
}

// write adds data from the peer.
func (b *recvBuffer) write(p []byte) error {
	b.mu.Lock()
	if b.dropped {
		// Nobody reads any more: drop, but keep the sender going.
		b.mu.Unlock()
		if len(p) > 0 && b.grant != nil {
			b.grant(len(p))
		}
		return nil
	}
	defer b.mu.Unlock()
	if b.buf.Len()+len(p) > b.limit {
		return fmt.Errorf("%w: peer sent past its window (%d+%d > %d)", ErrProtocol, b.buf.Len(), len(p), b.limit)
	}
	b.buf.Write(p)
	b.cond.Broadcast()
	return nil
}

// Read implements io.Reader.
func (b *recvBuffer) Read(p []byte) (int, error) {
	b.mu.Lock()
	for b.buf.Len() == 0 && b.err == nil {
		b.cond.Wait()
	}
	if b.buf.Len() == 0 {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	n, _ := b.buf.Read(p)
	b.pending += n
	// Grant in batches of a quarter window to keep window frames rare. This
	// cannot stall the sender: it stops only with limit bytes outstanding, and
	// reading them crosses the threshold.
	g := 0
	if b.pending >= b.limit/4 {
		g, b.pending = b.pending, 0
	}
	b.mu.Unlock()
	if g > 0 && b.grant != nil {
		b.grant(g)
	}
	return n, nil
}

// closeWithError ends the stream: Read returns err (io.EOF for a clean end)
// once buffered data is read.
func (b *recvBuffer) closeWithError(err error) {
	if err == nil {
		err = io.EOF
	}
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

// discard drops buffered data and everything that still arrives, for a reader
// that went away. Credit keeps flowing so the sender does not stall.
func (b *recvBuffer) discard(err error) {
	b.mu.Lock()
	g := b.pending + b.buf.Len()
	b.pending = 0
	b.buf.Reset()
	b.dropped = true
	if b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
	if g > 0 && b.grant != nil {
		b.grant(g)
	}
}
