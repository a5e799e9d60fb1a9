package agent

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	w := newWindow(10)
	if n, err := w.wait(4); n != 4 || err != nil {
		t.Fatalf("wait(4) = %d, %v, want 4", n, err)
	}
	w.consume(10)
	got := make(chan int, 1)
	go func() {
		n, _ := w.wait(100)
		got <- n
	}()
	select {
	case n := <-got:
		t.Fatalf("wait on an empty window returned %d", n)
	case <-time.After(20 * time.Millisecond):
	}
	if err := w.add(7); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 7 {
		t.Errorf("wait after add(7) = %d, want 7", n)
	}
	if err := w.add(maxWindow); !errors.Is(err, ErrProtocol) {
		t.Errorf("add past maxWindow = %v, want ErrProtocol", err)
	}
	w.consume(7)
	go w.close(io.ErrClosedPipe)
	if _, err := w.wait(1); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("wait after close = %v, want ErrClosedPipe", err)
	}
}

func TestRecvBuffer(t *testing.T) {
	var mu sync.Mutex
	granted := 0
	b := newRecvBuffer(8, func(n int) { mu.Lock(); granted += n; mu.Unlock() })
	if err := b.write([]byte("abcdef")); err != nil {
		t.Fatal(err)
	}
	if err := b.write([]byte("xyz")); !errors.Is(err, ErrProtocol) {
		t.Fatalf("write past limit = %v, want ErrProtocol", err)
	}
	p := make([]byte, 4)
	if n, _ := b.Read(p); string(p[:n]) != "abcd" {
		t.Errorf("Read = %q, want abcd", p[:n])
	}
	mu.Lock()
	if granted != 4 {
		t.Errorf("granted = %d after reading 4 of a window of 8, want 4 (a quarter reached)", granted)
	}
	mu.Unlock()
	b.closeWithError(nil)
	if n, err := b.Read(p); string(p[:n]) != "ef" || err != nil {
		t.Errorf("Read after close = %q, %v, want buffered data first", p[:n], err)
	}
	if _, err := b.Read(p); err != io.EOF {
		t.Errorf("Read at end = %v, want EOF", err)
	}
}

func TestRecvBufferDiscard(t *testing.T) {
	granted := 0
	b := newRecvBuffer(8, func(n int) { granted += n })
	b.write([]byte("abc"))
	b.discard(io.ErrClosedPipe)
	if granted != 3 {
		t.Errorf("discard granted %d, want the 3 buffered bytes back", granted)
	}
	b.write([]byte("defgh"))
	if granted != 8 {
		t.Errorf("write after discard granted %d in all, want 8", granted)
	}
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Read after discard = %v, want ErrClosedPipe", err)
	}
}

// A reader that takes the data one byte at a time must never leave the sender
// without credit.
func TestRecvBufferNoStall(t *testing.T) {
	const limit, total = 64, 10000
	w := newWindow(limit)
	b := newRecvBuffer(limit, func(n int) { w.add(n) })
	go func() {
		sent := 0
		for sent < total {
			n, err := w.wait(min(7, total-sent))
			if err != nil {
				return
			}
			if err := b.write(make([]byte, n)); err != nil {
				t.Error(err)
				return
			}
			w.consume(n)
			sent += n
		}
		b.closeWithError(nil)
	}()
	got := 0
	p := make([]byte, 1)
	for {
		n, err := b.Read(p)
		got += n
		if err != nil {
			break
		}
	}
	if got != total {
		t.Errorf("read %d bytes, want %d", got, total)
	}
}
