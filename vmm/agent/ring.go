package agent

// ring keeps the last max bytes written to it: a terminal session's
// scrollback. Its buffer grows as output arrives and never past max, so a
// quiet session costs little and a flood costs max. It is not safe for
// concurrent use.
type ring struct {
	buf   []byte // len(buf) <= max; once len(buf) == max, the oldest byte is at head
	head  int
	max   int
	total int64 // bytes ever written
}

func newRing(max int) *ring {
	return &ring{max: max}
}

// write appends p, dropping the oldest bytes past max.
func (r *ring) write(p []byte) {
	r.total += int64(len(p))
	if len(p) >= r.max {
		p = p[len(p)-r.max:]
		r.grow(r.max)
		r.buf = r.buf[:r.max]
		copy(r.buf, p)
		r.head = 0
		return
	}
	if len(r.buf) < r.max {
		n := min(r.max-len(r.buf), len(p))
		r.grow(len(r.buf) + n)
		r.buf = append(r.buf, p[:n]...)
		p = p[n:]
	}
	for len(p) > 0 {
		n := copy(r.buf[r.head:], p)
		p = p[n:]
		r.head = (r.head + n) % r.max
	}
}

// grow makes room for n bytes, doubling but never past max.
func (r *ring) grow(n int) {
	if n <= cap(r.buf) {
		return
	}
	c := min(max(2*cap(r.buf), n, 4096), r.max)
	buf := make([]byte, len(r.buf), c)
	copy(buf, r.buf)
	r.buf = buf
}

// len is how many bytes the ring holds.
func (r *ring) len() int { return len(r.buf) }

// readAt copies into p the held bytes from off on, off 0 being the oldest, and
// returns how many it copied.
func (r *ring) readAt(p []byte, off int) int {
	if off < 0 || off >= len(r.buf) {
		return 0
	}
	n := 0
	for n < len(p) && off < len(r.buf) {
		i := (r.head + off) % len(r.buf)
		end := len(r.buf)
		if i < r.head {
			end = r.head
		}
		c := copy(p[n:], r.buf[i:end])
		n += c
		off += c
	}
	return n
}
