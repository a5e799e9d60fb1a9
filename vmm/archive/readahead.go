package archive

import (
	"io"
	"sync"
)

// readahead reads from a slow reader (a decompressor) in its own goroutine into
// a few large buffers, so that decoding overlaps the file-system work of the
// consumer. Close stops the goroutine and waits for it.
type readahead struct {
	full chan []byte   // filled buffers, in order
	free chan []byte   // buffers the consumer has finished with
	done chan struct{} // closed by Close
	wg   sync.WaitGroup
	err  error  // the source's final error; read only after full is closed
	cur  []byte // unread part of the buffer being consumed
	held []byte // the buffer cur points into, to hand back to free
	once sync.Once
}

func newReadahead(src io.Reader, n, size int) *readahead {
	ra := &readahead{
		full: make(chan []byte, n),
		free: make(chan []byte, n),
		done: make(chan struct{}),
	}
	for range n {
		ra.free <- make([]byte, size)
	}
	ra.wg.Add(1)
	go ra.fill(src)
	return ra
}

func (ra *readahead) fill(src io.Reader) {
	defer ra.wg.Done()
	defer close(ra.full)
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.done:
			return
		}
		n, err := io.ReadFull(src, buf[:cap(buf)])
		if n > 0 {
			select {
			case ra.full <- buf[:n]:
			case <-ra.done:
				return
			}
		}
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				// ReadFull's way of saying the source ended mid-buffer.
				err = io.EOF
			}
			ra.err = err
			return
		}
	}
}

func (ra *readahead) Read(p []byte) (int, error) {
	if len(ra.cur) == 0 {
		if ra.held != nil {
			ra.free <- ra.held
			ra.held = nil
		}
		buf, ok := <-ra.full
		if !ok {
			return 0, ra.err
		}
		ra.held, ra.cur = buf, buf
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the reading goroutine and waits until it has returned. It may
// block until the source's current Read returns.
func (ra *readahead) Close() {
	ra.once.Do(func() {
		close(ra.done)
		ra.wg.Wait()
	})
}
