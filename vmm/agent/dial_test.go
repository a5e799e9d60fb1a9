package agent

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestDialConnAnswer: a dialConn's first Read takes the VM's answer off the
// stream before the data; a refusal is every Read's error and wraps
// ECONNREFUSED; an answer cut by the caller's read deadline is finished by
// the next Read, nothing lost.
func TestDialConnAnswer(t *testing.T) {
	tests := []struct {
		name    string
		chunks  []string // what the VM sends, a read timeout between chunks
		want    string   // the data Read returns after the answer
		refused bool
	}{
		{"ok then data", []string{`{"ok":true}` + "\nhello"}, "hello", false},
		{"refused", []string{`{"ok":false,"error":{"code":"internal","message":"dial tcp 127.0.0.1:9: connection refused"}}` + "\n"}, "", true},
		{"answer cut by a timeout", []string{`{"ok":`, "true}\nafter the pause"}, "after the pause", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, vm := net.Pipe()
			defer host.Close()
			defer vm.Close()
			c := &dialConn{Conn: host, br: bufio.NewReader(host)}
			timedOut := make(chan struct{})
			go func() {
				for i, chunk := range tt.chunks {
					if i > 0 {
						<-timedOut // the next chunk only once the host's Read gave up
					}
					vm.Write([]byte(chunk))
				}
			}()
			buf := make([]byte, 100)
			var got []byte
			timeouts := 0
			for i := 0; i < 20 && (tt.refused || len(got) < len(tt.want)); i++ {
				host.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				n, err := c.Read(buf)
				got = append(got, buf[:n]...)
				var ne net.Error
				switch {
				case err == nil:
				case errors.As(err, &ne) && ne.Timeout():
					if timeouts++; timeouts == 1 {
						close(timedOut)
					}
					continue
				case tt.refused:
					if !errors.Is(err, syscall.ECONNREFUSED) {
						t.Fatalf("refusal = %v, want ECONNREFUSED", err)
					}
					if _, err2 := c.Read(buf); !errors.Is(err2, syscall.ECONNREFUSED) {
						t.Fatalf("second Read after a refusal = %v", err2)
					}
					return
				default:
					t.Fatalf("Read: %v", err)
				}
			}
			if tt.refused {
				t.Fatal("a refused dial read no error")
			}
			if string(got) != tt.want {
				t.Fatalf("data = %q, want %q", got, tt.want)
			}
			if len(tt.chunks) > 1 && timeouts == 0 {
				t.Fatal("no Read timed out part way through the answer")
			}
		})
	}
}

// FuzzDialConnRead: whatever the VM answers a dial, Read never panics nor
// returns more than the buffer.
func FuzzDialConnRead(f *testing.F) {
	f.Add([]byte("{\"ok\":true}\ndata"), 4)
	f.Add([]byte("{\"error\":{\"message\":\"x\"}}\n"), 10)
	f.Add(bytes.Repeat([]byte("{"), 70000), 10)
	f.Fuzz(func(t *testing.T, stream []byte, size int) {
		if size < 0 || size > 1<<17 {
			return
		}
		conn := readOnlyConn{bytes.NewReader(stream)}
		c := &dialConn{Conn: conn, br: bufio.NewReader(conn)}
		buf := make([]byte, size)
		for range 64 {
			n, err := c.Read(buf)
			if n > len(buf) {
				t.Fatalf("Read returned %d bytes into %d", n, len(buf))
			}
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrProtocol) || errors.Is(err, syscall.ECONNREFUSED) {
					return
				}
				t.Fatalf("Read: %v", err)
			}
		}
	})
}
