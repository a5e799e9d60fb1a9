package netmgr

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/netmgr/sockdiag"
)

// find returns the listener on proto ap, or nil.
func find(ls []Listener, proto string, ap netip.AddrPort) *Listener {
	for i := range ls {
		if ls[i].Proto == proto && ls[i].Address == ap.Addr() && ls[i].Port == ap.Port() {
			return &ls[i]
		}
	}
	return nil
}

func TestDiscover(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	self := sockdiag.ParseComm(comm)

	// Listeners of every kind …
	type open struct {
		proto string
		ap    netip.AddrPort
	}
	var want []open
	for _, network := range []string{"tcp4", "tcp6"} {
		addr := "127.0.0.1:0"
		if network == "tcp6" {
			addr = "[::1]:0"
		}
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		want = append(want, open{TCP, ln.Addr().(*net.TCPAddr).AddrPort()})
	}
	for _, network := range []string{"udp4", "udp6"} {
		addr := "127.0.0.1:0"
		if network == "udp6" {
			addr = "[::1]:0"
		}
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		want = append(want, open{UDP, pc.LocalAddr().(*net.UDPAddr).AddrPort()})
	}
	wild, err := net.Listen("tcp", ":0") // [::] dual-stack
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	want = append(want, open{TCP, netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(wild.Addr().(*net.TCPAddr).Port))})

	// … and sockets that do not listen: a connected UDP socket and both ends
	// of an established TCP connection.
	cu, err := net.Dial("udp", want[2].ap.String())
	if err != nil {
		t.Fatal(err)
	}
	defer cu.Close()
	ct, err := net.Dial("tcp", want[0].ap.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	notWant := []open{
		{UDP, cu.LocalAddr().(*net.UDPAddr).AddrPort()},
		{TCP, ct.LocalAddr().(*net.TCPAddr).AddrPort()},
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ls, err := Discover(ctx, DiscoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		l := find(ls, w.proto, w.ap)
		if l == nil {
			t.Errorf("Discover did not find %s %s among %d listeners", w.proto, w.ap, len(ls))
			continue
		}
		if l.PID != os.Getpid() || l.Process != self || l.UID != uint32(os.Getuid()) || l.Inode == 0 {
			t.Errorf("%s %s: pid %d (%s) uid %d inode %d, want pid %d (%s) uid %d", w.proto, w.ap, l.PID, l.Process, l.UID, l.Inode, os.Getpid(), self, os.Getuid())
		}
	}
	for _, n := range notWant {
		if l := find(ls, n.proto, n.ap); l != nil {
			t.Errorf("Discover listed a connected socket: %+v", *l)
		}
	}

	// The filter by PID namespace keeps ours with our namespace, and drops
	// them with another.
	ns, err := PIDNamespace(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	mine, err := Discover(ctx, DiscoverOptions{PIDNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if find(mine, w.proto, w.ap) == nil {
			t.Errorf("Discover(PIDNamespace %s) lost %s %s", ns, w.proto, w.ap)
		}
	}
	for _, l := range mine {
		if l.PID == 0 {
			t.Errorf("Discover(PIDNamespace) kept an unattributed socket %+v", l)
		}
	}
	other, err := Discover(ctx, DiscoverOptions{PIDNamespace: "pid:[1]"})
	if err != nil {
		t.Fatal(err)
	}
	if len(other) != 0 {
		t.Errorf("Discover(PIDNamespace pid:[1]) = %d listeners, want 0", len(other))
	}

	// A closed listener is gone from the next scan.
	wild.Close()
	after, err := Discover(ctx, DiscoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, removed := DiffListeners(ls, after)
	if find(removed, TCP, want[4].ap) == nil || find(after, TCP, want[4].ap) != nil {
		t.Errorf("after closing %s: removed %+v, want it among them", want[4].ap, removed)
	}
}

func BenchmarkDiscover(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		if _, err := Discover(ctx, DiscoverOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkListeningSockets(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		if _, err := ListeningSockets(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
