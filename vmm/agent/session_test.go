package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// ringContents is everything the ring holds, oldest first.
func ringContents(r *ring) []byte {
	b := make([]byte, r.len())
	return b[:r.readAt(b, 0)]
}

func TestRing(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"empty", 4, nil, ""},
		{"fits", 8, []string{"abc", "de"}, "abcde"},
		{"exactly full", 4, []string{"ab", "cd"}, "abcd"},
		{"wraps", 4, []string{"abc", "def"}, "cdef"},
		{"wraps twice", 4, []string{"abc", "def", "gh", "i"}, "fghi"},
		{"one write too big", 4, []string{"a", "0123456789"}, "6789"},
		{"after a too big one", 4, []string{"0123456789", "ab"}, "89ab"},
		{"bytes", 1, []string{"abc", "d"}, "d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(tt.max)
			total := 0
			for _, w := range tt.writes {
				r.write([]byte(w))
				total += len(w)
			}
			if got := string(ringContents(r)); got != tt.want {
				t.Errorf("ring(%d) after %q = %q, want %q", tt.max, tt.writes, got, tt.want)
			}
			if r.total != int64(total) || cap(r.buf) > tt.max {
				t.Errorf("total %d, cap %d; want %d, at most %d", r.total, cap(r.buf), total, tt.max)
			}
		})
	}
}

func TestRingReadAt(t *testing.T) {
	r := newRing(8)
	r.write([]byte("0123456789ab")) // holds 456789ab
	r.write([]byte("cd"))           // holds 6789abcd, wrapped
	for off, want := range []string{"6789abcd", "789abcd", "89abcd"} {
		b := make([]byte, 16)
		if got := string(b[:r.readAt(b, off)]); got != want {
			t.Errorf("readAt(%d) = %q, want %q", off, got, want)
		}
	}
	b := make([]byte, 3)
	if n := r.readAt(b, 4); string(b[:n]) != "abc" {
		t.Errorf("readAt(3 bytes at 4) = %q, want abc", b[:n])
	}
	if n := r.readAt(b, 8); n != 0 {
		t.Errorf("readAt past the end = %d bytes", n)
	}
}

// A quiet session does not cost its whole scrollback.
func TestRingGrowsLazily(t *testing.T) {
	r := newRing(1 << 20)
	r.write([]byte("prompt$ "))
	if c := cap(r.buf); c > 4096 {
		t.Errorf("cap after 8 bytes = %d, want small", c)
	}
	r.write(make([]byte, 3<<20))
	if c := cap(r.buf); c != 1<<20 {
		t.Errorf("cap after a flood = %d, want exactly the max", c)
	}
}

func FuzzRing(f *testing.F) {
	f.Add(uint8(4), []byte("abcdefghij"), []byte{3, 3, 3, 1})
	f.Add(uint8(1), []byte("xyz"), []byte{0, 5})
	f.Add(uint8(200), bytes.Repeat([]byte("0123456789"), 50), []byte{100, 250, 1})
	f.Fuzz(func(t *testing.T, max uint8, data, sizes []byte) {
		if max == 0 {
			return
		}
		r := newRing(int(max))
		var all []byte
		for _, s := range sizes {
			n := min(int(s), len(data))
			r.write(data[:n])
			all = append(all, data[:n]...)
			data = data[n:]
			if r.len() > int(max) || cap(r.buf) > int(max) {
				t.Fatalf("ring of %d holds %d in %d", max, r.len(), cap(r.buf))
			}
			want := all[max0(len(all)-int(max)):]
			if got := ringContents(r); !bytes.Equal(got, want) {
				t.Fatalf("ring = %q, want %q", got, want)
			}
		}
		if r.total != int64(len(all)) {
			t.Fatalf("total = %d, want %d", r.total, len(all))
		}
	})
}

func max0(n int) int { return max(n, 0) }

func TestDecodeSessionInfo(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	good := SessionInfo{ID: "0123456789abcdef", Argv: []string{"-bash"}, User: "alice", PID: 42, Cols: 80, Rows: 24,
		CreatedAt: created, DetachedAt: created.Add(time.Second), Exited: true, ExitCode: 130, Signal: "INT"}
	b, _ := json.Marshal(good)
	got, err := decodeSessionInfo(b)
	if err != nil || got.ID != good.ID || got.Argv[0] != "-bash" || !got.CreatedAt.Equal(created) || got.ExitCode != 130 {
		t.Errorf("decodeSessionInfo(%s) = %+v, %v", b, got, err)
	}
	attached, _ := json.Marshal(SessionInfo{ID: "a", Attached: true, CreatedAt: created})
	if strings.Contains(string(attached), "detached_at") {
		t.Errorf("a zero DetachedAt is sent: %s", attached)
	}
	for _, in := range []string{
		``, `null`, `[]`, `{}`, `{"id":""}`, `{"id":"../etc"}`, `{"id":"a b"}`, `{"id":"` + strings.Repeat("a", maxSessionID+1) + `"}`,
		`{"id":"ok","pid":"1"}`, `{"id":"ok","cols":70000}`,
	} {
		if _, err := decodeSessionInfo([]byte(in)); !errors.Is(err, ErrProtocol) {
			t.Errorf("decodeSessionInfo(%.30q) = %v, want ErrProtocol", in, err)
		}
	}
}

func FuzzDecodeSessionInfo(f *testing.F) {
	f.Add([]byte(`{"id":"0123456789abcdef","argv":["sh"],"user":"root","pid":7,"cols":80,"rows":24,"attached":true,"created_at":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"id":"x","exited":true,"exit_code":137,"signal":"KILL","detached_at":"2026-01-02T03:04:05.123456789+02:00"}`))
	f.Add([]byte(`{"id":"a/b"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		info, err := decodeSessionInfo(in)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		if !validSessionID(info.ID) {
			t.Fatalf("accepted id %q", info.ID)
		}
		// What was accepted survives a round trip.
		b, err := json.Marshal(info)
		if err != nil {
			return // a time outside what JSON can carry
		}
		again, err := decodeSessionInfo(b)
		if err != nil || again.ID != info.ID || again.PID != info.PID || len(again.Argv) != len(info.Argv) {
			t.Fatalf("round trip: %+v -> %+v, %v", info, again, err)
		}
	})
}

// nopConn is a stream that takes every write and has nothing to read: the
// demux under test reads from its own buffer.
type nopConn struct{ net.Conn }

func (nopConn) Write(p []byte) (int, error)      { return len(p), nil }
func (nopConn) Close() error                     { return nil }
func (nopConn) SetReadDeadline(time.Time) error  { return nil }
func (nopConn) SetWriteDeadline(time.Time) error { return nil }

func frames(fs ...[]byte) []byte { return bytes.Join(fs, nil) }

func TestAttachmentDemux(t *testing.T) {
	exit, _ := json.Marshal(ExitStatus{Code: 3})
	tests := []struct {
		name   string
		in     []byte
		out    string
		status ExitStatus
		err    error
	}{
		{"exit", frames(frameBytes(frameStdout, 2, "hi"), frameBytes(frameExit, uint32(len(exit)), string(exit))), "hi", ExitStatus{Code: 3}, nil},
		{"taken over", frames(frameBytes(frameStdout, 2, "hi"), frameBytes(frameDetached, 0, "")), "hi", ExitStatus{}, ErrDetached},
		{"cut", frameBytes(frameStdout, 2, "hi"), "hi", ExitStatus{}, ErrDisconnected},
		{"bad exit", frameBytes(frameExit, 1, "{"), "", ExitStatus{}, ErrProtocol},
		{"unknown frames skipped", frames(frameBytes(0x7f, 1, "x"), frameBytes(frameDetached, 0, "")), "", ExitStatus{}, ErrDetached},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Attachment{p: newProcess(opAttachSession, nopConn{}, 1, true)}
			a.p.demux(bufio.NewReader(bytes.NewReader(tt.in)))
			st, err := a.Wait()
			if !errors.Is(err, tt.err) || st != tt.status {
				t.Errorf("Wait = %+v, %v, want %+v, %v", st, err, tt.status, tt.err)
			}
			out, _ := io.ReadAll(a.Output())
			if string(out) != tt.out {
				t.Errorf("Output = %q, want %q", out, tt.out)
			}
		})
	}
}

// FuzzAttachmentDemux feeds agent frames to the client side of an
// attachment: whatever arrives, it ends, stays within its window, and says
// how.
func FuzzAttachmentDemux(f *testing.F) {
	exit, _ := json.Marshal(ExitStatus{Code: 129, Signal: "HUP"})
	f.Add(frames(frameBytes(frameStdout, 5, "hello"), frameBytes(frameExit, uint32(len(exit)), string(exit))))
	f.Add(frames(frameBytes(frameWindowStdin, 4, "\x00\x00\x10\x00"), frameBytes(frameDetached, 0, "")))
	f.Add(frames(frameBytes(frameSession, 2, "{}"), frameBytes(frameStdout, maxFrameSize+1, "")))
	f.Fuzz(func(t *testing.T, in []byte) {
		a := &Attachment{p: newProcess(opAttachSession, nopConn{}, 1, true)}
		a.p.demux(bufio.NewReader(bytes.NewReader(in)))
		_, err := a.Wait()
		if err != nil && !errors.Is(err, ErrDetached) && !errors.Is(err, ErrDisconnected) && !errors.Is(err, ErrProtocol) {
			t.Fatalf("Wait = %v, want a sentinel", err)
		}
		out, _ := io.ReadAll(a.Output())
		if len(out) > initialWindow {
			t.Fatalf("Output buffered %d bytes, past the window", len(out))
		}
		if _, err := a.Input().Write([]byte("x")); err == nil {
			t.Fatal("Input works after the stream ended")
		}
	})
}
