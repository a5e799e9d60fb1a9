package agent

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDatagramConn: datagrams keep their bounds across a stream, the empty
// one included; a reader with a small buffer gets the head, and the next
// Read the next datagram.
func TestDatagramConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w, r := &DatagramConn{Conn: a}, &DatagramConn{Conn: b}
	msgs := []string{"one", "", strings.Repeat("x", 1000), "tail"}
	go func() {
		for _, m := range msgs {
			if _, err := w.Write([]byte(m)); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 2000)
	for i, m := range msgs {
		small := buf
		if i == 2 {
			small = buf[:10]
		}
		n, err := r.Read(small)
		want := m
		if len(want) > len(small) {
			want = want[:len(small)]
		}
		if err != nil || string(small[:n]) != want {
			t.Fatalf("datagram %d = %q, %v; want %q", i, small[:n], err, want)
		}
	}
	if _, err := w.Write(make([]byte, maxDatagram+1)); err == nil {
		t.Error("a datagram larger than 65535 bytes was sent")
	}
}

// FuzzDatagramConnRead: what the VM sends a host DatagramConn never makes it
// panic or return more than the buffer; a frame cut short is an error.
func FuzzDatagramConnRead(f *testing.F) {
	f.Add([]byte{0, 3, 'a', 'b', 'c', 0, 0}, 2)
	f.Add([]byte{0xff, 0xff, 1}, 100)
	f.Fuzz(func(t *testing.T, stream []byte, size int) {
		if size < 0 || size > 1<<17 {
			return
		}
		r := &DatagramConn{Conn: readOnlyConn{bytes.NewReader(stream)}}
		buf := make([]byte, size)
		for range 64 {
			n, err := r.Read(buf)
			if n > len(buf) {
				t.Fatalf("Read returned %d bytes into %d", n, len(buf))
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("Read: %v", err)
				}
				return
			}
		}
	})
}

type readOnlyConn struct{ r io.Reader }

func (c readOnlyConn) Read(p []byte) (int, error)     { return c.r.Read(p) }
func (readOnlyConn) Write(p []byte) (int, error)      { return len(p), nil }
func (readOnlyConn) Close() error                     { return nil }
func (readOnlyConn) LocalAddr() net.Addr              { return nil }
func (readOnlyConn) RemoteAddr() net.Addr             { return nil }
func (readOnlyConn) SetDeadline(time.Time) error      { return nil }
func (readOnlyConn) SetReadDeadline(time.Time) error  { return nil }
func (readOnlyConn) SetWriteDeadline(time.Time) error { return nil }
