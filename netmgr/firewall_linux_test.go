package netmgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/subsys-dev/subsys/internal/lantest"
	"github.com/subsys-dev/subsys/internal/testenv"
	"golang.org/x/sys/unix"
)

// openTestFirewall opens a Firewall on a table of this test process's own
// ("subsys-test-PID"), so that it cannot disturb a real server's table or
// another test binary's; t.Cleanup closes it. It skips when nf_tables cannot
// be used.
func openTestFirewall(t *testing.T) *Firewall {
	t.Helper()
	requireRoot(t)
	f, err := openFirewall(t.Context(), slog.New(slog.NewTextHandler(t.Output(), nil)), testTable())
	if errors.Is(err, ErrFirewallUnavailable) {
		testenv.SkipOrFail(t, "needs nf_tables:", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

func testTable() string { return fmt.Sprintf("subsys-test-%d", os.Getpid()) }

// shortTimeout bounds a connection attempt that the firewall may drop: a
// dropped SYN or datagram never gets an answer, and on a veth a real one
// comes back in well under a millisecond.
const shortTimeout = 300 * time.Millisecond

// echoOnce sends a message to the TCP or UDP echo server at ap and reads it
// back, giving up after shortTimeout (UDP: twice).
func echoOnce(network string, ap netip.AddrPort) error {
	c, err := net.DialTimeout(network, ap.String(), shortTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	tries := 1
	if strings.HasPrefix(network, "udp") {
		tries = 2
	}
	buf := make([]byte, 4)
	for range tries {
		_ = c.SetDeadline(time.Now().Add(shortTimeout))
		if _, err = c.Write([]byte("ping")); err != nil {
			return err
		}
		if _, err = io.ReadFull(c, buf); err == nil {
			if string(buf) != "ping" {
				return fmt.Errorf("echo %q", buf)
			}
			return nil
		}
	}
	return err
}

// reach runs echoOnce from the LAN test host.
func (h *lanHost) reach(t *testing.T, network string, ap netip.AddrPort) error {
	t.Helper()
	var err error
	h.in(t, func() { err = echoOnce(network, ap) })
	return err
}

// firewallFixture is a LAN test host and, on the host, a dual-stack TCP echo
// server and a dual-stack UDP echo server on wildcard addresses — what a
// version 1 distro's service bound to 0.0.0.0 or [::] looks like — and a
// second IPv4 address on the host's side of the veth, for Dest.
type firewallFixture struct {
	h            *lanHost
	f            *Firewall
	tport, uport uint16
	host4b       netip.Addr
	tcp4, tcp4b  netip.AddrPort
	tcp6         netip.AddrPort
	udp4, udp6   netip.AddrPort
	localTargets []netip.AddrPort // loopback and the host's own LAN addresses
}

func newFirewallFixture(t *testing.T) *firewallFixture {
	t.Helper()
	h := newLANHost(t)
	x := &firewallFixture{h: h, f: openTestFirewall(t)}
	srv := newTCPServer(t, netip.IPv6Unspecified(), echo)
	x.tport = srv.ln.Addr().(*net.TCPAddr).AddrPort().Port()
	us := udpEcho(t, netip.IPv6Unspecified(), "")
	x.uport = us.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	b := h.host4.As4()
	b[3] = 3
	x.host4b = netip.AddrFrom4(b)
	run(t, "ip", "addr", "add", x.host4b.String()+"/24", "dev", h.hostIf)
	x.tcp4 = netip.AddrPortFrom(h.host4, x.tport)
	x.tcp4b = netip.AddrPortFrom(x.host4b, x.tport)
	x.tcp6 = netip.AddrPortFrom(h.host6, x.tport)
	x.udp4 = netip.AddrPortFrom(h.host4, x.uport)
	x.udp6 = netip.AddrPortFrom(h.host6, x.uport)
	for _, a := range []netip.Addr{lo4, lo6, h.host4, h.host6} {
		x.localTargets = append(x.localTargets, netip.AddrPortFrom(a, x.tport))
	}
	return x
}

// lanTargets are what the LAN test host tries, by name.
func (x *firewallFixture) lanTargets() []struct {
	name, network string
	ap            netip.AddrPort
} {
	return []struct {
		name, network string
		ap            netip.AddrPort
	}{
		{"tcp4", "tcp", x.tcp4}, {"tcp4b", "tcp", x.tcp4b}, {"tcp6", "tcp", x.tcp6},
		{"udp4", "udp", x.udp4}, {"udp6", "udp", x.udp6},
	}
}

// both returns rule r for the fixture's TCP port and for its UDP port.
func (x *firewallFixture) both(r FirewallRule) []FirewallRule {
	t, u := r, r
	t.Proto, t.Port = TCP, x.tport
	u.Proto, u.Port = UDP, x.uport
	return []FirewallRule{t, u}
}

// TestFirewallReach: from the LAN test host, a port is reachable with no
// rule, unreachable with Drop, and behind Allow and Dest exactly as the
// FirewallRule documentation says, over IPv4 and IPv6, TCP and UDP; from the
// host itself — loopback, or its own LAN address, which goes over lo — it
// stays reachable whatever the rules.
func TestFirewallReach(t *testing.T) {
	x := newFirewallFixture(t)
	h := x.h
	pfx := netip.MustParsePrefix
	tests := []struct {
		name  string
		rule  FirewallRule // for both ports; the zero rule: no rules at all
		reach string       // the LAN targets that answer; the others must not
	}{
		{"no rule", FirewallRule{}, "tcp4 tcp4b tcp6 udp4 udp6"},
		{"drop", FirewallRule{Drop: true}, ""},
		{"drop IPv4 only", FirewallRule{Drop: true, Family: 4}, "tcp6 udp6"},
		{"drop IPv6 only", FirewallRule{Drop: true, Family: 6}, "tcp4 tcp4b udp4"},
		{"allow excludes the peer", FirewallRule{Allow: []netip.Prefix{pfx("192.0.2.0/24"), pfx("2001:db8::/32")}}, ""},
		{"allow includes the peer", FirewallRule{Allow: []netip.Prefix{netip.PrefixFrom(h.peer4, 32), pfx(h.peer6.String() + "/64")}}, "tcp4 tcp4b tcp6 udp4 udp6"},
		{"allow IPv4 only: IPv6 dropped", FirewallRule{Allow: []netip.Prefix{pfx("10.213.0.0/16")}}, "tcp4 tcp4b udp4"},
		{"allow IPv6 only: IPv4 dropped", FirewallRule{Allow: []netip.Prefix{pfx("fd5b::/16")}}, "tcp6 udp6"},
		{"allow everything", FirewallRule{Allow: []netip.Prefix{pfx("0.0.0.0/0"), pfx("::/0")}}, "tcp4 tcp4b tcp6 udp4 udp6"},
		{"allow IPv4-mapped", FirewallRule{Allow: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom16(h.peer4.As16()), 128)}}, "tcp4 tcp4b udp4"},
		{"allow for IPv4, IPv6 untouched", FirewallRule{Family: 4, Allow: []netip.Prefix{pfx("192.0.2.1/32")}}, "tcp6 udp6"},
		{"dest", FirewallRule{Dest: h.host4}, "tcp4 udp4"},
		{"dest and allow", FirewallRule{Dest: h.host4, Allow: []netip.Prefix{pfx("192.0.2.0/24")}}, ""},
		{"dest of IPv6 rule", FirewallRule{Family: 6, Dest: h.host6}, "tcp4 tcp4b tcp6 udp4 udp6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := x.both(tt.rule)
			if tt.name == "no rule" {
				rules = nil
			}
			if err := x.f.Apply(t.Context(), rules); err != nil {
				t.Fatal(err)
			}
			// The targets are tried at once: each that must not answer
			// costs a timeout.
			want := strings.Fields(tt.reach)
			targets := x.lanTargets()
			errs := make([]error, len(targets))
			var wg sync.WaitGroup
			for i, tg := range targets {
				wg.Go(func() { errs[i] = h.reach(t, tg.network, tg.ap) })
			}
			wg.Wait()
			for i, tg := range targets {
				if slices.Contains(want, tg.name) && errs[i] != nil {
					t.Errorf("%s %s from the LAN: %v, want an answer", tg.network, tg.ap, errs[i])
				}
				// Every target listens (the "no rule" case reaches them
				// all), so only a timeout shows a drop: a refusal would be
				// an answer.
				if !slices.Contains(want, tg.name) && !isTimeout(errs[i]) {
					t.Errorf("%s %s from the LAN: %v, want a timeout (dropped)", tg.network, tg.ap, errs[i])
				}
			}
			for _, ap := range x.localTargets {
				if err := echoOnce("tcp", ap); err != nil {
					t.Errorf("tcp %s from the host: %v", ap, err)
				}
				if err := echoOnce("udp", netip.AddrPortFrom(ap.Addr(), x.uport)); err != nil {
					t.Errorf("udp %s from the host: %v", ap.Addr(), err)
				}
			}
		})
	}
}

// TestFirewallCounters: the counters grow with traffic in both directions,
// survive an Apply that changes the port's rule, leave out what the firewall
// drops and, with LoopbackOnlyCount, what came from the LAN; they go when
// their port leaves the rules. Apply of the same rules sends nothing, and
// Close removes the table.
func TestFirewallCounters(t *testing.T) {
	x := newFirewallFixture(t)
	f, h := x.f, x.h
	ctx := t.Context()
	tk, uk := PortKey{TCP, x.tport}, PortKey{UDP, x.uport}
	read := func() map[PortKey]PortCounter {
		t.Helper()
		c, err := f.Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// counters waits for the last exchange's closing packets (FIN, ACK),
	// which may trail its last read, to be counted: until two reads 50 ms
	// apart agree (nothing tells when the kernel has sent the last of them).
	counters := func() map[PortKey]PortCounter {
		t.Helper()
		c := read()
		for range 20 {
			time.Sleep(50 * time.Millisecond)
			next := read()
			if maps.Equal(next, c) {
				return c
			}
			c = next
		}
		t.Fatal("counters do not settle")
		return nil
	}
	apply := func(rules ...FirewallRule) {
		t.Helper()
		if err := f.Apply(ctx, rules); err != nil {
			t.Fatal(err)
		}
	}
	mustReach := func(network string, ap netip.AddrPort) {
		t.Helper()
		if err := h.reach(t, network, ap); err != nil {
			t.Fatalf("%s %s from the LAN: %v", network, ap, err)
		}
	}

	allowPeer := FirewallRule{Proto: TCP, Port: x.tport, Allow: []netip.Prefix{netip.PrefixFrom(h.peer4, 32)}}
	udpOpen := FirewallRule{Proto: UDP, Port: x.uport}
	apply(allowPeer, udpOpen)
	if c := counters(); len(c) != 2 || c[tk] != (PortCounter{}) || c[uk] != (PortCounter{}) {
		t.Fatalf("counters of new rules = %+v, want two zero ones", c)
	}
	mustReach("tcp", x.tcp4)
	mustReach("udp", x.udp6)
	c1 := counters()
	// A TCP exchange is at least SYN, ACK, data, FIN each way (the IPv4
	// header alone is 20 bytes); the UDP ping is one 48-byte IPv6 packet
	// each way.
	if c := c1[tk]; c.BytesIn < 4*40 || c.BytesOut < 3*40 {
		t.Errorf("tcp counter after one LAN exchange = %+v", c)
	}
	if c := c1[uk]; c.BytesIn < 48 || c.BytesOut < 48 {
		t.Errorf("udp counter after one LAN exchange = %+v, want ≥ 48 bytes each way", c)
	}

	// The same rules again: nothing sent, counters unchanged.
	before := f.batches
	apply(udpOpen, allowPeer)
	if f.batches != before {
		t.Errorf("Apply of the same rules sent %d batches, want 0", f.batches-before)
	}

	// LAN off for the TCP port: its counter survives the new rules, does not
	// count the dropped SYNs, and counts loopback traffic.
	apply(FirewallRule{Proto: TCP, Port: x.tport, Drop: true}, udpOpen)
	if err := h.reach(t, "tcp", x.tcp4); !isTimeout(err) {
		t.Fatalf("dropped port from the LAN: %v, want a timeout", err)
	}
	c2 := counters()
	if c2[tk] != c1[tk] || c2[uk] != c1[uk] {
		t.Fatalf("counters after a new Apply and dropped LAN packets = %+v, want %+v", c2, c1)
	}
	if err := echoOnce("tcp", netip.AddrPortFrom(lo4, x.tport)); err != nil {
		t.Fatal(err)
	}
	c3 := counters()
	if c3[tk].BytesIn <= c2[tk].BytesIn || c3[tk].BytesOut <= c2[tk].BytesOut {
		t.Fatalf("tcp counter after loopback traffic = %+v, want more than %+v", c3[tk], c2[tk])
	}

	// LoopbackOnlyCount: LAN traffic passes but is not counted.
	apply(FirewallRule{Proto: TCP, Port: x.tport, LoopbackOnlyCount: true}, udpOpen)
	mustReach("tcp", x.tcp6)
	if c := counters(); c[tk] != c3[tk] {
		t.Fatalf("loopback-only counter after LAN traffic = %+v, want %+v", c[tk], c3[tk])
	}
	if err := echoOnce("tcp", netip.AddrPortFrom(h.host6, x.tport)); err != nil { // over lo
		t.Fatal(err)
	}
	if c := counters(); c[tk].BytesIn <= c3[tk].BytesIn {
		t.Fatalf("loopback-only counter after loopback traffic = %+v, want more than %+v", c[tk], c3[tk])
	}

	// The TCP port leaves the rules: its counter goes; back, it starts over.
	apply(udpOpen)
	if c := counters(); len(c) != 1 || c[uk] != c1[uk] {
		t.Fatalf("counters after the tcp rule left = %+v, want only udp %+v", c, c1[uk])
	}
	apply(udpOpen, allowPeer)
	if c := counters(); c[tk] != (PortCounter{}) {
		t.Fatalf("counter of a port back in the rules = %+v, want zero", c[tk])
	}

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if lantest.HasNFTable(t, testTable()) {
		t.Fatal("table still there after Close")
	}
	if err := f.Apply(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close = %v, want ErrClosed", err)
	}
	if _, err := f.Counters(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Counters after Close = %v, want ErrClosed", err)
	}
}

// TestOpenFirewall: OpenFirewall creates the inet table "subsys"; a second
// open (a restart after a crash) resets what the first left; Close removes
// the table and a Close after another's is no error. It runs in a network
// namespace of its own, so that the real table name cannot clash with a
// server on the host.
func TestOpenFirewall(t *testing.T) {
	requireRoot(t)
	// The thread stays locked: it dies with the test's goroutine rather than
	// run other goroutines in the private namespace. Sockets the library
	// opens from it (it dials on the calling thread) belong to that
	// namespace.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		testenv.SkipOrFail(t, "needs a network namespace:", err)
	}
	ctx := t.Context()
	f1, err := OpenFirewall(ctx, nil)
	if errors.Is(err, ErrFirewallUnavailable) {
		testenv.SkipOrFail(t, "needs nf_tables:", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f1.Close() })
	if !lantest.HasNFTable(t, firewallTable) {
		t.Fatal("no table after OpenFirewall")
	}
	if err := f1.Apply(ctx, []FirewallRule{{Proto: TCP, Port: 9, Drop: true}, {Proto: UDP, Port: 9, Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}}); err != nil {
		t.Fatal(err)
	}

	f2, err := OpenFirewall(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f2.Close() })
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Name: firewallTable, Family: nftables.TableFamilyINet}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ch := range chains {
		if ch.Table.Name == firewallTable {
			names = append(names, ch.Name)
			if rules, err := c.GetRules(tb, ch); err != nil || len(rules) != 0 {
				t.Errorf("chain %s after a reset: %d rules, err %v; want none", ch.Name, len(rules), err)
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"input", "output"}) {
		t.Errorf("chains after a reset = %v, want [input output]", names)
	}
	if objs, err := c.GetNamedObjects(tb); err != nil || len(objs) != 0 {
		t.Errorf("objects after a reset: %d, err %v; want none", len(objs), err)
	}

	if err := f2.Close(); err != nil {
		t.Fatal(err)
	}
	if lantest.HasNFTable(t, firewallTable) {
		t.Fatal("table still there after Close")
	}
	if err := f1.Close(); err != nil {
		t.Fatalf("Close after the table was gone: %v", err)
	}
}

// TestFirewallTableDeleted: when someone deletes the table (nft flush
// ruleset), the next Apply creates it again.
func TestFirewallTableDeleted(t *testing.T) {
	f := openTestFirewall(t)
	ctx := t.Context()
	if err := f.Apply(ctx, []FirewallRule{{Proto: TCP, Port: 9, Drop: true}}); err != nil {
		t.Fatal(err)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	c.DelTable(&nftables.Table{Name: testTable(), Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(ctx, []FirewallRule{{Proto: TCP, Port: 9, Drop: true}, {Proto: UDP, Port: 9, Drop: true}}); err != nil {
		t.Fatalf("Apply after the table was deleted: %v", err)
	}
	if !lantest.HasNFTable(t, testTable()) {
		t.Fatal("table not created again")
	}
	if got, err := f.Counters(ctx); err != nil || len(got) != 2 {
		t.Fatalf("Counters = %v, %v; want two", got, err)
	}
}

// TestFirewallManyRules: a few hundred ports with allow-lists go in one
// batch; the kernel's answers to it overflow a default-sized netlink receive
// buffer.
func TestFirewallManyRules(t *testing.T) {
	f := openTestFirewall(t)
	var rules []FirewallRule
	for i := range 300 {
		rules = append(rules, FirewallRule{
			Proto: []string{TCP, UDP}[i%2], Port: uint16(20000 + i),
			Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("2001:db8::/48")},
		})
	}
	start := time.Now()
	if err := f.Apply(t.Context(), rules); err != nil {
		t.Fatal(err)
	}
	t.Logf("300 rules applied in %v", time.Since(start))
	if c, err := f.Counters(t.Context()); err != nil || len(c) != 300 {
		t.Fatalf("Counters: %d, %v; want 300", len(c), err)
	}
	if err := f.Apply(t.Context(), rules[:10]); err != nil {
		t.Fatal(err)
	}
	if c, err := f.Counters(t.Context()); err != nil || len(c) != 10 {
		t.Fatalf("Counters: %d, %v; want 10", len(c), err)
	}
}

// TestFirewallContext: a cancelled context stops Apply before it sends
// anything.
func TestFirewallContext(t *testing.T) {
	f := openTestFirewall(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	before := f.batches
	if err := f.Apply(ctx, []FirewallRule{{Proto: TCP, Port: 9, Drop: true}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with a cancelled context = %v, want context.Canceled", err)
	}
	if f.batches != before {
		t.Fatal("Apply with a cancelled context sent a batch")
	}
}

func TestNormalizeRules(t *testing.T) {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	tests := []struct {
		name    string
		in      []FirewallRule
		want    []FirewallRule
		wantErr bool
	}{
		{name: "empty"},
		{
			name: "sorted by proto, port, family",
			in:   []FirewallRule{{Proto: UDP, Port: 53}, {Proto: TCP, Port: 80, Family: 6}, {Proto: TCP, Port: 80, Family: 4}, {Proto: TCP, Port: 22}},
			want: []FirewallRule{{Proto: TCP, Port: 22}, {Proto: TCP, Port: 80, Family: 4}, {Proto: TCP, Port: 80, Family: 6}, {Proto: UDP, Port: 53}},
		},
		{
			name: "allow masked, unmapped, sorted, deduplicated",
			in:   []FirewallRule{{Proto: TCP, Port: 1, Allow: []netip.Prefix{pfx("fd00::1/64"), pfx("10.1.2.3/8"), pfx("::ffff:192.168.1.0/120"), pfx("10.0.0.0/8")}}},
			want: []FirewallRule{{Proto: TCP, Port: 1, Allow: []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.168.1.0/24"), pfx("fd00::/64")}}},
		},
		{
			name: "allow of the other family left out",
			in:   []FirewallRule{{Proto: TCP, Port: 1, Family: 4, Allow: []netip.Prefix{pfx("fd00::/64"), pfx("10.0.0.0/8")}}},
			want: []FirewallRule{{Proto: TCP, Port: 1, Family: 4, Allow: []netip.Prefix{pfx("10.0.0.0/8")}}},
		},
		{
			name: "allow only of the other family: drop",
			in:   []FirewallRule{{Proto: TCP, Port: 1, Family: 6, Allow: []netip.Prefix{pfx("10.0.0.0/8")}}},
			want: []FirewallRule{{Proto: TCP, Port: 1, Family: 6, Drop: true}},
		},
		{
			name: "drop clears allow and dest",
			in:   []FirewallRule{{Proto: TCP, Port: 1, Drop: true, Allow: []netip.Prefix{pfx("10.0.0.0/8")}, Dest: addr("10.0.0.1"), LoopbackOnlyCount: true}},
			want: []FirewallRule{{Proto: TCP, Port: 1, Drop: true, LoopbackOnlyCount: true}},
		},
		{
			name: "dest unmapped, unspecified dest dropped",
			in:   []FirewallRule{{Proto: TCP, Port: 1, Dest: addr("::ffff:10.0.0.1")}, {Proto: UDP, Port: 1, Dest: addr("::")}},
			want: []FirewallRule{{Proto: TCP, Port: 1, Dest: addr("10.0.0.1")}, {Proto: UDP, Port: 1}},
		},
		{name: "bad proto", in: []FirewallRule{{Proto: "sctp", Port: 1}}, wantErr: true},
		{name: "port 0", in: []FirewallRule{{Proto: TCP}}, wantErr: true},
		{name: "bad family", in: []FirewallRule{{Proto: TCP, Port: 1, Family: 5}}, wantErr: true},
		{name: "invalid prefix", in: []FirewallRule{{Proto: TCP, Port: 1, Allow: []netip.Prefix{{}}}}, wantErr: true},
		{name: "mapped prefix too wide", in: []FirewallRule{{Proto: TCP, Port: 1, Allow: []netip.Prefix{pfx("::ffff:0.0.0.0/80")}}}, wantErr: true},
		{name: "dest of the other family", in: []FirewallRule{{Proto: TCP, Port: 1, Family: 6, Dest: addr("10.0.0.1")}}, wantErr: true},
		{name: "same port twice", in: []FirewallRule{{Proto: TCP, Port: 1}, {Proto: TCP, Port: 1}}, wantErr: true},
		{name: "both families and one", in: []FirewallRule{{Proto: TCP, Port: 1, Family: 4}, {Proto: TCP, Port: 1}}, wantErr: true},
		{
			name: "same port, other protocol",
			in:   []FirewallRule{{Proto: UDP, Port: 1}, {Proto: TCP, Port: 1}},
			want: []FirewallRule{{Proto: TCP, Port: 1}, {Proto: UDP, Port: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := normalizeRules(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("normalizeRules(%+v) = %+v, %v; want an ErrInvalid", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equalRules(got, tt.want) {
				t.Fatalf("normalizeRules(%+v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCounterName(t *testing.T) {
	for _, k := range []PortKey{{TCP, 1}, {UDP, 65535}, {TCP, 8080}} {
		for _, dir := range []string{"in", "out"} {
			name := counterName(k, dir)
			gd, gk, ok := parseCounterName(name)
			if !ok || gd != dir || gk != k {
				t.Errorf("parseCounterName(%q) = %q, %v, %v; want %q, %v, true", name, gd, gk, ok, dir, k)
			}
		}
	}
	for _, s := range []string{"", "in", "in-tcp", "in-tcp-", "in-tcp-08", "in-tcp-70000", "up-tcp-1", "in-sctp-1", "in-tcp-1x", "in-tcp-+1"} {
		if _, _, ok := parseCounterName(s); ok {
			t.Errorf("parseCounterName(%q) ok, want not", s)
		}
	}
}

func TestNFTError(t *testing.T) {
	tests := []struct {
		err         error
		opening     bool
		unavailable bool
	}{
		{syscall.EPERM, false, true},
		{fmt.Errorf("conn.Receive: %w", errors.Join(syscall.EPERM)), false, true},
		{syscall.EOPNOTSUPP, false, true},
		{syscall.EPROTONOSUPPORT, true, true},
		{syscall.ENOENT, true, true},
		{syscall.ENOENT, false, false},
		{syscall.EBUSY, true, false},
		{os.ErrDeadlineExceeded, false, false},
	}
	for _, tt := range tests {
		got := nftError(tt.err, tt.opening)
		if errors.Is(got, ErrFirewallUnavailable) != tt.unavailable || !errors.Is(got, tt.err) {
			t.Errorf("nftError(%v, %v) = %v, want unavailable %v, wrapping the error", tt.err, tt.opening, got, tt.unavailable)
		}
	}
}
