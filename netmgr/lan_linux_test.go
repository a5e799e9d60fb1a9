package netmgr

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/lantest"
	"github.com/subsys-dev/subsys/internal/testenv"
)

// requireRoot skips t (fails it under SUBSYS_TEST_STRICT=1) unless it runs
// as root with ip(8): the LAN tests create a network namespace and a veth
// pair.
func requireRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "the LAN tests create a network namespace and a veth pair")
	testenv.RequireCommand(t, "ip", "iproute2")
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// lanHost is the LAN test host of internal/lantest with the short names these
// tests use.
type lanHost struct {
	*lantest.Host
	host4, peer4, host6, peer6 netip.Addr
	hostIf                     string
}

// newLANHost creates the LAN test host; t.Cleanup removes it.
func newLANHost(t *testing.T) *lanHost {
	t.Helper()
	requireRoot(t)
	h := lantest.New(t)
	return &lanHost{Host: h, host4: h.Host4, peer4: h.Peer4, host6: h.Host6, peer6: h.Peer6, hostIf: h.HostIf}
}

// The LAN tests take isTimeout (proxy.go) for a dial or read that ran out of
// time: what a probe whose packets a firewall dropped ends with. A refused or
// reset connection is an answer, not a drop, and a negative check that took
// any error for a drop would also pass while its listener was not up yet.

// in runs fn in the LAN test host's network namespace.
func (h *lanHost) in(t *testing.T, fn func()) { h.In(t, fn) }

// dial connects from the LAN test host.
func (h *lanHost) dial(t *testing.T, network string, ap netip.AddrPort) (net.Conn, error) {
	t.Helper()
	return h.Dial(t, network, ap, 2*time.Second)
}

// ping sends a line to an echo server at ap from the LAN test host and reads it
// back.
func (h *lanHost) ping(t *testing.T, network string, ap netip.AddrPort) error {
	t.Helper()
	return h.Ping(t, network, ap, 2*time.Second)
}

// TestLAN: a service bound to 127.0.0.1 is out of the LAN test host's reach
// until a proxy on the host's LAN address (what the lan toggle opens) forwards
// to it; then it is reachable over IPv4 and IPv6, TCP and UDP; an allow-list that
// excludes the host refuses it; closing the proxy cuts an open connection within
// 1 s and makes the port unreachable again.
func TestLAN(t *testing.T) {
	h := newLANHost(t)
	srv := newTCPServer(t, lo4, echo)
	port := srv.ln.Addr().(*net.TCPAddr).AddrPort().Port()
	usrv := udpEcho(t, lo4, "")
	uport := usrv.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	lan4, lan6 := netip.AddrPortFrom(h.host4, port), netip.AddrPortFrom(h.host6, port)

	// The service listens on loopback only: nothing on the LAN address, so
	// a LAN client is refused there (an answer, which also shows the LAN
	// test host reaches this host).
	if err := pingThrough(netip.AddrPortFrom(lo4, port)); err != nil {
		t.Fatalf("service on loopback: %v", err)
	}
	if err := h.ping(t, "tcp", lan4); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("loopback-only service from the LAN before any proxy: %v, want connection refused", err)
	}

	// LAN on: one proxy per family on the LAN addresses, same port.
	p4 := newProxy(t, ProxyConfig{Listen: lan4, Target: srv.addr()})
	p6 := newProxy(t, ProxyConfig{Listen: lan6, Target: srv.addr()})
	for _, ap := range []netip.AddrPort{lan4, lan6} {
		if err := h.ping(t, "tcp", ap); err != nil {
			t.Fatalf("through the proxy on %s from the LAN: %v", ap, err)
		}
	}
	// UDP through a rule on both families.
	for _, a := range []netip.Addr{h.host4, h.host6} {
		up := newProxy(t, ProxyConfig{Proto: UDP, Listen: netip.AddrPortFrom(a, uport), Target: usrv.LocalAddr().String()})
		if err := h.ping(t, "udp", up.Addr()); err != nil {
			t.Fatalf("UDP echo through %s from the LAN: %v", up.Addr(), err)
		}
	}

	// An allow-list that leaves the LAN test host out refuses it; one that
	// names it lets it in.
	other := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(h.host4, 0), Target: srv.addr(), Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err := h.ping(t, "tcp", other.Addr()); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("allow-list without the LAN host: %v, want the connection reset", err)
	}
	if s := other.Stats(); s.Refused != 1 {
		t.Fatalf("refused = %d, want 1", s.Refused)
	}
	mine := newProxy(t, ProxyConfig{Listen: netip.AddrPortFrom(h.host6, 0), Target: srv.addr(), Allow: []netip.Prefix{netip.PrefixFrom(h.peer6, 128)}})
	if err := h.ping(t, "tcp", mine.Addr()); err != nil {
		t.Fatalf("allow-list naming the LAN host refused it: %v", err)
	}

	// LAN off: an open connection is cut within 1 s, new ones fail.
	c, err := h.dial(t, "tcp", lan4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p4.Close()
	p6.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("open LAN connection after the proxy closed: read err %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("LAN connection cut after %v, want < 1s", d)
	}
	for _, ap := range []netip.AddrPort{lan4, lan6} {
		if err := h.ping(t, "tcp", ap); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s from the LAN after the proxy closed: %v, want connection refused", ap, err)
		}
	}
}
