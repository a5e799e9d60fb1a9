package netmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/internal/testutil"

	"github.com/subsys-dev/subsys/netmgr/sockdiag"
)

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

// families are the loopback addresses the tests run on.
var families = []struct {
	name string
	addr netip.Addr
}{{"v4", lo4}, {"v6", lo6}}

// tcpServer listens on addr:0 and runs handle for each connection (closing it
// after); it counts accepted connections. Stopped by t.Cleanup.
type tcpServer struct {
	ln       *net.TCPListener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func newTCPServer(t testing.TB, addr netip.Addr, handle func(c *net.TCPConn)) *tcpServer {
	t.Helper()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *tcpServer) addr() string { return s.ln.Addr().String() }

// echo copies a connection back to itself and half-closes at EOF.
func echo(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
}

func newProxy(t testing.TB, cfg ProxyConfig) *Proxy {
	t.Helper()
	p, err := NewProxy(cfg)
	if err != nil {
		t.Fatalf("NewProxy(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dialTCP(t testing.TB, ap netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor is testutil.WaitFor, for this package's other test files.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, d, what, cond)
}

func TestTCPEcho(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			srv := newTCPServer(t, f.addr, echo)
			p := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(f.addr, 0), Target: srv.addr()})
			if p.Addr().Addr() != f.addr || p.Addr().Port() == 0 {
				t.Fatalf("Addr() = %v, want %v:non-zero", p.Addr(), f.addr)
			}
			c := dialTCP(t, p.Addr())
			msg := bytes.Repeat([]byte("subsys "), 100_000) // 700 KB: several splice rounds
			go func() {
				_, _ = c.Write(msg)
				_ = c.CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo returned %d bytes, want %d", len(got), len(msg))
			}
		})
	}
}

func TestTCPServerSpeaksFirst(t *testing.T) {
	greeting := "220 mysql-ish server ready\r\n"
	srv := newTCPServer(t, lo4, func(c *net.TCPConn) {
		_, _ = io.WriteString(c, greeting)
		_, _ = io.Copy(io.Discard, c)
	})
	p := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: srv.addr()})
	c := dialTCP(t, p.Addr())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(greeting))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read greeting without writing first: %v", err)
	}
	if string(buf) != greeting {
		t.Fatalf("greeting = %q, want %q", buf, greeting)
	}
}

// TestTCPHalfClose: the client shuts its write side; the server sees EOF, then
// answers, and the client reads the whole answer.
func TestTCPHalfClose(t *testing.T) {
	srv := newTCPServer(t, lo4, func(c *net.TCPConn) {
		req, err := io.ReadAll(c) // to EOF: only the client's CloseWrite ends this
		if err != nil {
			return
		}
		_, _ = fmt.Fprintf(c, "got %d bytes: %s", len(req), strings.ToUpper(string(req)))
	})
	p := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: srv.addr()})
	c := dialTCP(t, p.Addr())
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := "got 5 bytes: HELLO"; string(got) != want {
		t.Fatalf("answer = %q, want %q", got, want)
	}
	testutil.WaitFor(t, 2*time.Second, "the connection's release", func() bool { return p.Stats().Connections == 0 })
}

// TestTCPServerHalfClose: the server shuts its write side first and goes on
// reading; the client sees EOF and can still send.
func TestTCPServerHalfClose(t *testing.T) {
	got := make(chan string, 1)
	srv := newTCPServer(t, lo4, func(c *net.TCPConn) {
		_, _ = io.WriteString(c, "bye")
		_ = c.CloseWrite()
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	p := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: srv.addr()})
	c := dialTCP(t, p.Addr())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "bye" {
		t.Fatalf("read = %q, %v; want \"bye\", EOF", b, err)
	}
	if _, err := io.WriteString(c, "after EOF"); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	select {
	case s := <-got:
		if s != "after EOF" {
			t.Fatalf("server read %q, want %q", s, "after EOF")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server never saw the client's data and EOF")
	}
}

func TestTCPCounters(t *testing.T) {
	release := make(chan struct{})
	srv := newTCPServer(t, lo4, func(c *net.TCPConn) {
		buf := make([]byte, 1000)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		_, _ = c.Write(bytes.Repeat([]byte("x"), 3000))
		<-release
	})
	p := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: srv.addr()})
	c := dialTCP(t, p.Addr())
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 3000)); err != nil {
		t.Fatal(err)
	}
	// Live: the connection is open, and the bytes show within countInterval.
	testutil.WaitFor(t, 3*countInterval, "live counters", func() bool {
		s := p.Stats()
		return s.Connections == 1 && s.BytesIn == 1000 && s.BytesOut == 3000
	})
	close(release)
	c.Close()
	testutil.WaitFor(t, 2*time.Second, "the connection's release", func() bool { return p.Stats().Connections == 0 })
	want := Stats{Connections: 0, Total: 1, BytesIn: 1000, BytesOut: 3000}
	if s := p.Stats(); s != want {
		t.Fatalf("Stats() = %+v, want %+v", s, want)
	}
}

func TestTCPAllowList(t *testing.T) {
	srv := newTCPServer(t, lo4, echo)
	tests := []struct {
		name  string
		allow []netip.Prefix
		ok    bool
	}{
		{"any", nil, true},
		{"loopback", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, true},
		{"host", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}, true},
		{"other", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.accepted.Load()
			p := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: srv.addr(), Allow: tt.allow})
			err := pingThrough(p.Addr())
			if tt.ok != (err == nil) {
				t.Fatalf("allow %v: read err = %v, want ok %v", tt.allow, err, tt.ok)
			}
			if tt.ok {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("refused client was left open, not closed at once")
			}
			if s := p.Stats(); s.Refused != 1 || s.Total != 0 {
				t.Fatalf("Stats() = %+v, want Refused 1, Total 0", s)
			}
			if n := srv.accepted.Load() - before; n != 0 {
				t.Fatalf("target saw %d connections from a refused client, want 0", n)
			}
		})
	}
}

// pingThrough sends "ping" to an echo server through ap and reads it back. On
// loopback, a client that is reset at once may see the reset as a failed dial.
func pingThrough(ap netip.AddrPort) error {
	c, err := net.DialTimeout("tcp", ap.String(), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("ping"))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	return err
}

func TestTCPIdleTimeout(t *testing.T) {
	srv := newTCPServer(t, lo4, echo)
	p := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: srv.addr(), IdleTimeout: 300 * time.Millisecond})
	c := dialTCP(t, p.Addr())
	// Busy for longer than the timeout: it must stay open.
	buf := make([]byte, 1)
	for range 8 {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("busy connection closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the pause between bursts is what the idle timer must not count
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection: read err = %v, want EOF", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Fatalf("idle connection closed after %v, want about 300ms", d)
	}
}

// TestTCPCloseCutsLive: Close stops the listener and cuts a live, busy
// connection within 1 s.
func TestTCPCloseCutsLive(t *testing.T) {
	srv := newTCPServer(t, lo4, echo)
	p, err := NewProxy(ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: srv.addr()})
	if err != nil {
		t.Fatal(err)
	}
	c := dialTCP(t, p.Addr())
	idle := dialTCP(t, p.Addr())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	// Keep c busy in both directions while Close runs.
	stopWriting := make(chan struct{})
	go func() {
		b := make([]byte, 32<<10)
		for {
			select {
			case <-stopWriting:
				return
			default:
			}
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}()
	defer close(stopWriting)
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, conn := range []*net.TCPConn{c, idle} {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := io.Copy(io.Discard, conn)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("connection still open 2 s after Close")
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close cut live connections after %v, want < 1s", d)
	}
	if _, err := net.DialTimeout("tcp", p.Addr().String(), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after Close: %v, want connection refused (the listener closed)", err)
	}
	if s := p.Stats(); s.Connections != 0 {
		t.Fatalf("Stats().Connections = %d after Close, want 0", s.Connections)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTCPTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: dead})
	if err := pingThrough(p.Addr()); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("through a proxy to a closed port: err = %v, want reset or EOF", err)
	}
	testutil.WaitFor(t, 2*time.Second, "the dial failure to be counted", func() bool {
		s := p.Stats()
		return s.Failed == 1 && s.Connections == 0
	})
}

// TestTCPResetPassesThrough: a target that resets its connection makes the
// client see a reset, not a clean EOF.
func TestTCPResetPassesThrough(t *testing.T) {
	srv := newTCPServer(t, lo4, func(c *net.TCPConn) {
		_, _ = c.Read(make([]byte, 1))
		_ = c.SetLinger(0)
	})
	p := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: srv.addr()})
	c := dialTCP(t, p.Addr())
	_, _ = c.Write([]byte("x"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if !isReset(err) {
		t.Fatalf("read after the target reset: err = %v, want connection reset", err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestTCPDial: a Dial function replaces Target (the version 2 path); copies
// between non-TCP conns work too.
func TestTCPDial(t *testing.T) {
	p := newProxy(t, ProxyConfig{
		Listen: netip.AddrPortFrom(lo4, 0),
		Dial: func(ctx context.Context) (net.Conn, error) {
			a, b := net.Pipe()
			go func() {
				defer b.Close()
				_, _ = io.WriteString(b, "hello from the guest")
			}()
			return a, nil
		},
	})
	c := dialTCP(t, p.Addr())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello from the guest" {
		t.Fatalf("read = %q, %v", got, err)
	}
}

// timeoutSeen is a conn whose first read timeout closes seen.
type timeoutSeen struct {
	net.Conn
	once sync.Once
	seen chan struct{}
}

func (c *timeoutSeen) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.once.Do(func() { close(c.seen) })
	}
	return n, err
}

// TestTCPDialOutlivesCountInterval: a connection through Dial to a yamux
// stream (a version 2 port: the agent's dial) lives on after the read
// deadline the proxy arms to count bytes expires, as one to a TCP target
// does. yamux's timeout is not os.ErrDeadlineExceeded; taking it for a
// failure cut every version 2 connection after a second.
func TestTCPDialOutlivesCountInterval(t *testing.T) {
	hostEnd, guestEnd := net.Pipe()
	client, err := yamux.Client(hostEnd, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err := yamux.Server(guestEnd, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	go func() { // the guest's echo server
		for {
			st, err := server.Accept()
			if err != nil {
				return
			}
			go func() { defer st.Close(); _, _ = io.Copy(st, st) }()
		}
	}()
	var dialed atomic.Pointer[timeoutSeen]
	p := newProxy(t, ProxyConfig{
		Listen: netip.AddrPortFrom(lo4, 0),
		// The count interval is half of it: a second.
		IdleTimeout: 2 * time.Second,
		Dial: func(ctx context.Context) (net.Conn, error) {
			st, err := client.Open()
			if err != nil {
				return nil, err
			}
			c := &timeoutSeen{Conn: st, seen: make(chan struct{})}
			dialed.Store(c)
			return c, nil
		},
	})
	c := dialTCP(t, p.Addr())
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	echo := func(msg string) error {
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if string(got) != msg {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
		return nil
	}
	if err := echo("before"); err != nil {
		t.Fatalf("first echo: %v", err)
	}
	select {
	case <-dialed.Load().seen:
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy's read deadline on the stream never expired")
	}
	if err := echo("after the count interval"); err != nil {
		t.Fatalf("echo after the proxy's read deadline expired: %v", err)
	}
}

func TestPortInUse(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		testenv.SkipOrFail(t, "no /proc:", err)
	}
	for _, proto := range []string{TCP, UDP} {
		for _, f := range families {
			t.Run(proto+"/"+f.name, func(t *testing.T) {
				var held netip.AddrPort
				if proto == TCP {
					ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(f.addr, 0)))
					if err != nil {
						t.Fatal(err)
					}
					defer ln.Close()
					held = ln.Addr().(*net.TCPAddr).AddrPort()
				} else {
					pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.addr, 0)))
					if err != nil {
						t.Fatal(err)
					}
					defer pc.Close()
					held = pc.LocalAddr().(*net.UDPAddr).AddrPort()
				}
				p, err := NewProxy(ProxyConfig{Proto: proto, Listen: held, Target: "127.0.0.1:9"})
				if err == nil {
					p.Close()
					t.Fatalf("NewProxy on a taken %s port succeeded", proto)
				}
				if !errors.Is(err, ErrPortInUse) {
					t.Fatalf("err = %v, want ErrPortInUse", err)
				}
				var pe *PortInUseError
				if !errors.As(err, &pe) {
					t.Fatalf("err is %T, want *PortInUseError", err)
				}
				if pe.PID != os.Getpid() || pe.Process != sockdiag.ParseComm(comm) {
					t.Fatalf("holder = %d (%s), want %d (%s); err %v", pe.PID, pe.Process, os.Getpid(), sockdiag.ParseComm(comm), err)
				}
				if !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
					t.Fatalf("error %q does not name the holder's pid", err)
				}
			})
		}
	}
	// A wildcard holder blocks a specific address of its family.
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	_, err = NewProxy(ProxyConfig{Listen: netip.AddrPortFrom(lo4, port), Target: "127.0.0.1:9"})
	var pe *PortInUseError
	if !errors.As(err, &pe) || pe.PID != os.Getpid() || pe.Holder == nil || !pe.Holder.Address.IsUnspecified() {
		t.Fatalf("bind 127.0.0.1:%d under a 0.0.0.0 listener: err = %v, want PortInUseError naming it", port, err)
	}
}

// --- UDP ---

// udpEcho serves echo on addr:0 and prefixes replies with prefix.
func udpEcho(t testing.TB, addr netip.Addr, prefix string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDPAddrPort(append([]byte(prefix), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc
}

func dialUDP(t testing.TB, ap netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends msg on c and returns the reply.
func roundTrip(t testing.TB, c *net.UDPConn, msg string) (string, error) {
	t.Helper()
	buf := make([]byte, maxDatagram)
	for range 3 { // UDP: try again on loss
		if _, err := c.Write([]byte(msg)); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return "", err
		}
	}
	return "", os.ErrDeadlineExceeded
}

func TestUDPEcho(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			srv := udpEcho(t, f.addr, "echo:")
			p := newProxy(t, ProxyConfig{Proto: UDP, Listen: netip.AddrPortFrom(f.addr, 0), Target: srv.LocalAddr().String()})
			// Several clients at once: each gets its own replies.
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for i := range 8 {
				wg.Go(func() {
					c := dialUDP(t, p.Addr())
					for j := range 20 {
						msg := fmt.Sprintf("client %d message %d", i, j)
						got, err := roundTrip(t, c, msg)
						if err != nil {
							errs <- fmt.Errorf("client %d: %w", i, err)
							return
						}
						if got != "echo:"+msg {
							errs <- fmt.Errorf("client %d got %q, want %q", i, got, "echo:"+msg)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			s := p.Stats()
			if s.Connections != 8 || s.Total != 8 {
				t.Fatalf("Stats() = %+v, want 8 live flows", s)
			}
			if s.BytesOut <= s.BytesIn {
				t.Fatalf("Stats() = %+v: replies carry a prefix, so BytesOut > BytesIn", s)
			}
		})
	}
}

// TestUDPDial: a UDP proxy with Dial opens each client's flow through it
// (version 2's way into the VM), one datagram per Write and Read.
func TestUDPDial(t *testing.T) {
	srv := udpEcho(t, lo4, "dialed:")
	var dials atomic.Int64
	p := newProxy(t, ProxyConfig{Proto: UDP, Listen: netip.AddrPortFrom(lo4, 0),
		Dial: func(ctx context.Context) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "udp", srv.LocalAddr().String())
		}})
	for i := range 2 {
		c := dialUDP(t, p.Addr())
		for j := range 3 {
			msg := fmt.Sprintf("client %d message %d", i, j)
			if got, err := roundTrip(t, c, msg); err != nil || got != "dialed:"+msg {
				t.Fatalf("round trip = %q, %v; want %q", got, err, "dialed:"+msg)
			}
		}
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("Dial called %d times, want once per client (2)", n)
	}
}

func TestUDPCountersAndLargeDatagram(t *testing.T) {
	srv := udpEcho(t, lo4, "")
	p := newProxy(t, ProxyConfig{Proto: UDP, Listen: netip.AddrPortFrom(lo4, 0), Target: srv.LocalAddr().String()})
	c := dialUDP(t, p.Addr())
	msg := strings.Repeat("u", 60_000)
	got, err := roundTrip(t, c, msg)
	if err != nil || got != msg {
		t.Fatalf("60 KB datagram: got %d bytes, err %v", len(got), err)
	}
	// The datagram is counted once its send to the target returns, which
	// can be after the echo has already come back: wait for the count.
	want := Stats{Connections: 1, Total: 1, BytesIn: 60_000, BytesOut: 60_000}
	testutil.WaitFor(t, 2*time.Second, fmt.Sprintf("Stats() = %+v", want), func() bool { return p.Stats() == want })
}

func TestUDPAllowList(t *testing.T) {
	srv := udpEcho(t, lo4, "")
	p := newProxy(t, ProxyConfig{Proto: UDP, Listen: netip.AddrPortFrom(lo4, 0), Target: srv.LocalAddr().String(),
		Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	c := dialUDP(t, p.Addr())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("refused client got a reply or error: %v", err)
	}
	if s := p.Stats(); s.Refused != 1 || s.Total != 0 || s.BytesIn != 0 {
		t.Fatalf("Stats() = %+v, want one refused datagram and no flow", s)
	}
}

func TestUDPIdleExpiry(t *testing.T) {
	srv := udpEcho(t, lo4, "")
	p := newProxy(t, ProxyConfig{Proto: UDP, Listen: netip.AddrPortFrom(lo4, 0), Target: srv.LocalAddr().String(), IdleTimeout: 300 * time.Millisecond})
	c := dialUDP(t, p.Addr())
	if _, err := roundTrip(t, c, "a"); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Connections != 1 {
		t.Fatalf("Connections = %d, want 1", s.Connections)
	}
	testutil.WaitFor(t, 2*time.Second, "the idle flow to expire", func() bool { return p.Stats().Connections == 0 })
	// The same client starts a new flow.
	if got, err := roundTrip(t, c, "b"); err != nil || got != "b" {
		t.Fatalf("after expiry: %q, %v", got, err)
	}
	if s := p.Stats(); s.Connections != 1 || s.Total != 2 {
		t.Fatalf("Stats() = %+v, want a second flow", s)
	}
}

// TestUDPWildcardReplySource: a proxy on 0.0.0.0 or :: answers from the address
// the client sent to (127.0.0.2 here), so a connected client socket accepts it.
func TestUDPWildcardReplySource(t *testing.T) {
	srv := udpEcho(t, lo4, "")
	tests := []struct {
		listen string
		to     []string
	}{
		{"0.0.0.0:0", []string{"127.0.0.1", "127.0.0.2"}},
		{"[::]:0", []string{"::1"}},
	}
	for _, tt := range tests {
		p := newProxy(t, ProxyConfig{Proto: UDP, Listen: netip.MustParseAddrPort(tt.listen), Target: srv.LocalAddr().String()})
		if !p.oob {
			t.Errorf("proxy on %s does not ask for each datagram's local address", tt.listen)
		}
		for _, to := range tt.to {
			c := dialUDP(t, netip.AddrPortFrom(netip.MustParseAddr(to), p.Addr().Port()))
			if got, err := roundTrip(t, c, "to "+to); err != nil || got != "to "+to {
				t.Fatalf("%s via %s: %q, %v", tt.listen, to, got, err)
			}
		}
	}
}

func TestUDPCloseStopsFlows(t *testing.T) {
	srv := udpEcho(t, lo6, "")
	p, err := NewProxy(ProxyConfig{Proto: UDP, Listen: netip.AddrPortFrom(lo6, 0), Target: srv.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	c := dialUDP(t, p.Addr())
	if _, err := roundTrip(t, c, "a"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	if s := p.Stats(); s.Connections != 0 {
		t.Fatalf("Connections = %d after Close", s.Connections)
	}
	_, _ = c.Write([]byte("b"))
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Read(make([]byte, 4)); err == nil {
		t.Fatal("reply after Close")
	}
}

func TestNewProxyInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  ProxyConfig
	}{
		{"proto", ProxyConfig{Proto: "sctp", Listen: netip.AddrPortFrom(lo4, 0), Target: "127.0.0.1:1"}},
		{"no listen", ProxyConfig{Target: "127.0.0.1:1"}},
		{"no target", ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0)}},
		{"prefix", ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: "127.0.0.1:1", Allow: []netip.Prefix{{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewProxy(tt.cfg)
			if err == nil {
				p.Close()
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("NewProxy(%+v) = %v, want ErrInvalid", tt.cfg, err)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	p := &Proxy{cfg: ProxyConfig{Allow: []netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("fd00::/8"),
	}}}
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"10.2.0.1", false},
		{"::ffff:10.1.2.3", true}, // mapped: matched as IPv4
		{"fd00::1", true},
		{"fe80::1%eth0", false},
		{"fd12::1%eth0", true}, // zone ignored
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		if got := p.allowed(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("allowed(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}
