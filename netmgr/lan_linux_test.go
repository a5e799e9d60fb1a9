package netmgr

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireRoot skips t unless it runs as root with ip(8): the LAN tests create
// a network namespace and a veth pair.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and a veth pair")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) from iproute2:", err)
	}
}

// lanHost is a LAN test host: a network namespace joined to the host by a veth
// pair, with an IPv4 and an IPv6 address on each side.
type lanHost struct {
	ns                 string
	host4, peer4       netip.Addr // host side, namespace side
	host6, peer6       netip.Addr
	hostIf, peerIfName string
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newLANHost creates the namespace and the veth pair; t.Cleanup removes them.
func newLANHost(t *testing.T) *lanHost {
	t.Helper()
	requireRoot(t)
	id := os.Getpid() % 100000
	// A /24 in 10.213.0.0/16 that no route uses yet.
	routes, _ := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	sub := -1
	for i := range 250 {
		n := (id + i) % 250
		if !strings.Contains(string(routes), fmt.Sprintf("10.213.%d.", n)) {
			sub = n
			break
		}
	}
	if sub < 0 {
		t.Skip("no free 10.213.x.0/24 for the LAN test host")
	}
	h := &lanHost{
		ns:         fmt.Sprintf("subsys-lan-%d", id),
		host4:      netip.MustParseAddr(fmt.Sprintf("10.213.%d.1", sub)),
		peer4:      netip.MustParseAddr(fmt.Sprintf("10.213.%d.2", sub)),
		host6:      netip.MustParseAddr(fmt.Sprintf("fd5b:5b5:%x::1", sub)),
		peer6:      netip.MustParseAddr(fmt.Sprintf("fd5b:5b5:%x::2", sub)),
		hostIf:     fmt.Sprintf("sslh%d", id),
		peerIfName: fmt.Sprintf("ssln%d", id),
	}
	run(t, "ip", "netns", "add", h.ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", h.hostIf).Run()
		_ = exec.Command("ip", "netns", "del", h.ns).Run()
	})
	run(t, "ip", "link", "add", h.hostIf, "type", "veth", "peer", "name", h.peerIfName)
	run(t, "ip", "link", "set", h.peerIfName, "netns", h.ns)
	run(t, "ip", "addr", "add", h.host4.String()+"/24", "dev", h.hostIf)
	run(t, "ip", "-6", "addr", "add", h.host6.String()+"/64", "dev", h.hostIf, "nodad")
	run(t, "ip", "link", "set", h.hostIf, "up")
	run(t, "ip", "-n", h.ns, "addr", "add", h.peer4.String()+"/24", "dev", h.peerIfName)
	run(t, "ip", "-n", h.ns, "-6", "addr", "add", h.peer6.String()+"/64", "dev", h.peerIfName, "nodad")
	run(t, "ip", "-n", h.ns, "link", "set", h.peerIfName, "up")
	run(t, "ip", "-n", h.ns, "link", "set", "lo", "up")
	return h
}

// in runs fn on an OS thread that has joined the namespace: sockets fn creates
// belong to the LAN test host and keep working after fn returns.
func (h *lanHost) in(t *testing.T, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + h.ns)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal("setns:", err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine instead of
			// running other goroutines in the wrong namespace.
			t.Fatal("setns back:", err)
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

// dial connects from the LAN test host.
func (h *lanHost) dial(t *testing.T, network string, ap netip.AddrPort) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	h.in(t, func() {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err = d.Dial(network, ap.String())
	})
	return c, err
}

// ping sends a line to an echo server at ap from the LAN test host and reads it
// back.
func (h *lanHost) ping(t *testing.T, network string, ap netip.AddrPort) error {
	t.Helper()
	c, err := h.dial(t, network, ap)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
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

	// The service listens on loopback only.
	if err := h.ping(t, "tcp", lan4); err == nil {
		t.Fatal("loopback-only service reachable from the LAN before any proxy")
	}
	if err := pingThrough(netip.AddrPortFrom(lo4, port)); err != nil {
		t.Fatalf("service on loopback: %v", err)
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
	if err := h.ping(t, "tcp", other.Addr()); err == nil {
		t.Fatal("allow-list without the LAN host let it in")
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
		if err := h.ping(t, "tcp", ap); err == nil {
			t.Fatalf("%s reachable from the LAN after the proxy closed", ap)
		}
	}
}
