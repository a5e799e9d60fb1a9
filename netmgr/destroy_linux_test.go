package netmgr

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/netmgr/sockdiag"
)

// findConn returns the connection of the caller's namespace from local port
// port to remote, waiting up to a second for the kernel to list it.
func findConn(t *testing.T, port uint16, remote netip.AddrPort) Socket {
	t.Helper()
	var found Socket
	waitFor(t, time.Second, "connection from "+remote.String()+" in Connections", func() bool {
		conns, err := Connections(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(conns, func(s Socket) bool { return s.Local.Port() == port && s.Remote == remote })
		if i < 0 {
			return false
		}
		found = conns[i]
		return true
	})
	return found
}

// TestDestroySockets: a connection from the LAN test host to a server on the
// host shows in Connections with its addresses and cookie; DestroySockets
// aborts it — the client's next read fails within 1 s and the server's fails
// with ECONNABORTED — over IPv4, IPv6, and IPv4 to a dual-stack listener
// (an IPv6 socket with IPv4-mapped addresses). A second destroy, and one
// with a stale cookie, destroy nothing and are no error.
func TestDestroySockets(t *testing.T) {
	h := newLANHost(t)
	tests := []struct {
		name   string
		listen netip.Addr // server bind address
		dial   netip.Addr // the host's address the LAN test host dials
		peer   netip.Addr // the LAN test host's address as the server sees it
	}{
		{"IPv4", netip.IPv4Unspecified(), h.host4, h.peer4},
		{"IPv6", h.host6, h.host6, h.peer6},
		{"IPv4 to dual-stack", netip.IPv6Unspecified(), h.host4, h.peer4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverErr := make(chan error, 8)
			srv := newTCPServer(t, tt.listen, func(c *net.TCPConn) {
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						serverErr <- err
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						serverErr <- err
						return
					}
				}
			})
			port := srv.ln.Addr().(*net.TCPAddr).AddrPort().Port()
			target := netip.AddrPortFrom(tt.dial, port)

			connect := func() (net.Conn, Socket) {
				t.Helper()
				c, err := h.dial(t, "tcp", target)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if _, err := c.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				from := netip.AddrPortFrom(tt.peer, c.LocalAddr().(*net.TCPAddr).AddrPort().Port())
				s := findConn(t, port, from)
				if s.Proto != TCP || s.State != sockdiag.StateEstablished || s.Cookie == 0 || s.Local.Addr() != tt.dial.Unmap() {
					t.Fatalf("Connections entry %+v: want an established TCP socket on %s with a cookie", s, tt.dial)
				}
				return c, s
			}

			// A stale cookie names no socket: nothing is destroyed.
			c1, s1 := connect()
			stale := s1
			stale.Cookie++
			if n, err := DestroySockets(t.Context(), []Socket{stale}); n != 0 || err != nil {
				t.Fatalf("DestroySockets with a stale cookie = %d, %v; want 0, nil", n, err)
			}
			if _, err := c1.Write([]byte("y")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c1, make([]byte, 1)); err != nil {
				t.Fatalf("connection after a destroy with a stale cookie: %v", err)
			}

			// The real cookie: destroyed; the client sees a reset at once.
			start := time.Now()
			if n, err := DestroySockets(t.Context(), []Socket{s1}); n != 1 || err != nil {
				t.Fatalf("DestroySockets = %d, %v; want 1, nil", n, err)
			}
			_ = c1.SetReadDeadline(time.Now().Add(time.Second))
			_, err := c1.Read(make([]byte, 1))
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("client read after DestroySockets: %v, want a reset", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("client saw the destroy after %v, want < 1s", d)
			}
			select {
			case err := <-serverErr:
				if !errors.Is(err, syscall.ECONNABORTED) {
					t.Errorf("server read after DestroySockets: %v, want ECONNABORTED", err)
				}
			case <-time.After(time.Second):
				t.Error("server read still blocked 1s after DestroySockets")
			}

			// Gone already: no error, nothing counted.
			if n, err := DestroySockets(t.Context(), []Socket{s1}); n != 0 || err != nil {
				t.Fatalf("second DestroySockets = %d, %v; want 0, nil", n, err)
			}
			conns, err := Connections(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(conns, func(s Socket) bool { return s.Cookie == s1.Cookie }) {
				t.Fatal("destroyed socket still in Connections")
			}
		})
	}
}

// TestDestroySocketsMany: several connections in one call, with one of them
// already closed; both ends of a loopback connection are listed.
func TestDestroySocketsMany(t *testing.T) {
	requireRoot(t)
	srv := newTCPServer(t, lo4, echo)
	port := srv.ln.Addr().(*net.TCPAddr).AddrPort().Port()
	var socks []Socket
	var clients []*net.TCPConn
	for range 3 {
		c := dialTCP(t, srv.ln.Addr().(*net.TCPAddr).AddrPort())
		clients = append(clients, c)
		socks = append(socks, findConn(t, port, c.LocalAddr().(*net.TCPAddr).AddrPort()))
		// The client's own end is a connection too.
		findConn(t, c.LocalAddr().(*net.TCPAddr).AddrPort().Port(), netip.AddrPortFrom(lo4, port))
	}
	clients[0].Close()
	waitFor(t, time.Second, "closed connection to leave the live states", func() bool {
		conns, err := Connections(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return !slices.ContainsFunc(conns, func(s Socket) bool { return s.Cookie == socks[0].Cookie })
	})
	n, err := DestroySockets(t.Context(), socks)
	if n != 2 || err != nil {
		t.Fatalf("DestroySockets = %d, %v; want 2, nil", n, err)
	}
	for _, c := range clients[1:] {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("client read after DestroySockets: %v, want a reset", err)
		}
	}
	if n, err := DestroySockets(t.Context(), nil); n != 0 || err != nil {
		t.Fatalf("DestroySockets(nil) = %d, %v", n, err)
	}
}
