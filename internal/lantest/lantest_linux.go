package lantest

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// Host is a LAN test host.
type Host struct {
	// NS is the network namespace's name (ip netns).
	NS string
	// Host4 and Host6 are this host's addresses on the veth; Peer4 and Peer6
	// the test host's.
	Host4, Peer4, Host6, Peer6 netip.Addr
	// HostIf is this host's end of the veth pair.
	HostIf string
}

var seq atomic.Int32

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// New creates the namespace and the veth pair in a /24 of 10.213.0.0/16 and a
// /64 of fd5b:5b5::/32 that no route uses yet; t.Cleanup removes them.
func New(t testing.TB) *Host {
	t.Helper()
	testenv.RequireRoot(t, "a LAN test host is a network namespace and a veth pair")
	testenv.RequireCommand(t, "ip", "iproute2")
	id := (os.Getpid()*7 + int(seq.Add(1))) % 100000
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
		testenv.SkipOrFail(t, "no free 10.213.x.0/24 for the LAN test host")
	}
	h := &Host{
		NS:     fmt.Sprintf("subsys-lan-%d", id),
		Host4:  netip.MustParseAddr(fmt.Sprintf("10.213.%d.1", sub)),
		Peer4:  netip.MustParseAddr(fmt.Sprintf("10.213.%d.2", sub)),
		Host6:  netip.MustParseAddr(fmt.Sprintf("fd5b:5b5:%x::1", sub)),
		Peer6:  netip.MustParseAddr(fmt.Sprintf("fd5b:5b5:%x::2", sub)),
		HostIf: fmt.Sprintf("sslh%d", id),
	}
	peerIf := fmt.Sprintf("ssln%d", id)
	run(t, "ip", "netns", "add", h.NS)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", h.HostIf).Run()
		_ = exec.Command("ip", "netns", "del", h.NS).Run()
	})
	run(t, "ip", "link", "add", h.HostIf, "type", "veth", "peer", "name", peerIf)
	run(t, "ip", "link", "set", peerIf, "netns", h.NS)
	run(t, "ip", "addr", "add", h.Host4.String()+"/24", "dev", h.HostIf)
	run(t, "ip", "-6", "addr", "add", h.Host6.String()+"/64", "dev", h.HostIf, "nodad")
	run(t, "ip", "link", "set", h.HostIf, "up")
	run(t, "ip", "-n", h.NS, "addr", "add", h.Peer4.String()+"/24", "dev", peerIf)
	run(t, "ip", "-n", h.NS, "-6", "addr", "add", h.Peer6.String()+"/64", "dev", peerIf, "nodad")
	run(t, "ip", "-n", h.NS, "link", "set", peerIf, "up")
	run(t, "ip", "-n", h.NS, "link", "set", "lo", "up")
	return h
}

// In runs fn on an OS thread that has joined the namespace: sockets fn creates
// belong to the LAN test host and keep working after fn returns.
func (h *Host) In(t testing.TB, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + h.NS)
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

// Dial connects from the LAN test host ("tcp" or "udp"), giving up after timeout.
func (h *Host) Dial(t testing.TB, network string, ap netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	h.In(t, func() {
		d := net.Dialer{Timeout: timeout}
		c, err = d.Dial(network, ap.String())
	})
	return c, err
}

// Ping sends "ping" to an echo server at ap from the LAN test host and reads it
// back within timeout.
func (h *Host) Ping(t testing.TB, network string, ap netip.AddrPort, timeout time.Duration) error {
	t.Helper()
	c, err := h.Dial(t, network, ap, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
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
