package qemu

import "sync"

// ConsoleLimit is how much of the serial console a VM keeps: the last MiB.
const ConsoleLimit = 1 << 20

// stderrLimit is how much of QEMU's own stdout and stderr a VM keeps for its
// errors.
const stderrLimit = 64 << 10

// ring keeps the last limit bytes written to it and wakes waiters on every
// write. It is safe for concurrent use.
type ring struct {
	mu      sync.Mutex
	limit   int
	buf     []byte
	changed chan struct{} // closed and replaced by every Write
}

func newRing(limit int) *ring {
	return &ring{limit: limit, changed: make(chan struct{})}
}

// Write keeps the last limit bytes of everything written; it never fails.
func (r *ring) Write(p []byte) (int, error) {
	n := len(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(p) >= r.limit {
		r.buf = append(r.buf[:0], p[len(p)-r.limit:]...)
	} else {
		if over := len(r.buf) + len(p) - r.limit; over > 0 {
			// Slide rather than grow, so the buffer stays at limit bytes.
			r.buf = r.buf[:copy(r.buf, r.buf[over:])]
		}
		r.buf = append(r.buf, p...)
	}
	close(r.changed)
	r.changed = make(chan struct{})
	return n, nil
}

// snapshot returns a copy of what is kept and a channel closed at the next
// Write.
func (r *ring) snapshot() ([]byte, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...), r.changed
}

// Bytes returns a copy of what is kept.
func (r *ring) Bytes() []byte {
	b, _ := r.snapshot()
	return b
}
