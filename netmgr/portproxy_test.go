package netmgr

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRuleValidate(t *testing.T) {
	ok := Rule{Proto: TCP, ListenAddress: netip.MustParseAddr("0.0.0.0"), ListenPort: 8080, ConnectAddress: "127.0.0.1", ConnectPort: 80}
	tests := []struct {
		name  string
		edit  func(r *Rule)
		valid bool
	}{
		{"ok", func(r *Rule) {}, true},
		{"udp v6", func(r *Rule) { r.Proto = UDP; r.ListenAddress = netip.MustParseAddr("::"); r.ConnectAddress = "::1" }, true},
		{"host name", func(r *Rule) { r.ConnectAddress = "db.internal.example" }, true},
		{"upper case protocol is normalized", func(r *Rule) { r.Proto = "TCP" }, true},
		{"id", func(r *Rule) { r.ID = "web-1" }, true},
		{"allow", func(r *Rule) { r.Allow = []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")} }, true},
		{"same port other host", func(r *Rule) { r.ConnectAddress = "10.0.0.5"; r.ConnectPort = 8080 }, true},
		{"bad id", func(r *Rule) { r.ID = "../x" }, false},
		{"protocol", func(r *Rule) { r.Proto = "icmp" }, false},
		{"no listen address", func(r *Rule) { r.ListenAddress = netip.Addr{} }, false},
		{"multicast listen", func(r *Rule) { r.ListenAddress = netip.MustParseAddr("224.0.0.1") }, false},
		{"listen port 0", func(r *Rule) { r.ListenPort = 0 }, false},
		{"connect port 0", func(r *Rule) { r.ConnectPort = 0 }, false},
		{"no connect address", func(r *Rule) { r.ConnectAddress = "" }, false},
		{"unspecified connect", func(r *Rule) { r.ConnectAddress = "0.0.0.0" }, false},
		{"bad host", func(r *Rule) { r.ConnectAddress = "db_1;rm -rf" }, false},
		{"long host", func(r *Rule) { r.ConnectAddress = strings.Repeat("a.", 130) + "com" }, false},
		{"loop to itself", func(r *Rule) { r.ConnectPort = 8080 }, false},
		{"loop to itself exact", func(r *Rule) { r.ListenAddress = lo4; r.ConnectPort = 8080 }, false},
		{"invalid prefix", func(r *Rule) { r.Allow = []netip.Prefix{{}} }, false},
		{"too many prefixes", func(r *Rule) { r.Allow = make([]netip.Prefix, MaxAllow+1) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.edit(&r)
			err := r.Normalize().Validate()
			if (err == nil) != tt.valid {
				t.Fatalf("Validate(%+v) = %v, want valid %v", r, err, tt.valid)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestRuleNormalize(t *testing.T) {
	r := Rule{
		Proto:          " UDP ",
		ListenAddress:  netip.MustParseAddr("::ffff:127.0.0.1"),
		ConnectAddress: "::FFFF:10.0.0.1",
		Allow:          []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")},
	}.Normalize()
	if r.Proto != UDP || r.ListenAddress != lo4 || r.ConnectAddress != "10.0.0.1" || r.Allow[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Fatalf("Normalize = %+v", r)
	}
	if got := (Rule{ConnectAddress: "::1", ConnectPort: 53}).Target(); got != "[::1]:53" {
		t.Fatalf("Target() = %q, want [::1]:53", got)
	}
}

func TestRuleOverlaps(t *testing.T) {
	rule := func(proto, addr string, port uint16) Rule {
		return Rule{Proto: proto, ListenAddress: netip.MustParseAddr(addr), ListenPort: port}
	}
	tests := []struct {
		a, b Rule
		want bool
	}{
		{rule(TCP, "127.0.0.1", 80), rule(TCP, "127.0.0.1", 80), true},
		{rule(TCP, "0.0.0.0", 80), rule(TCP, "127.0.0.1", 80), true},
		{rule(TCP, "127.0.0.1", 80), rule(TCP, "0.0.0.0", 80), true},
		{rule(TCP, "::", 80), rule(TCP, "::1", 80), true},
		{rule(TCP, "0.0.0.0", 80), rule(TCP, "::", 80), false}, // separate families
		{rule(TCP, "127.0.0.1", 80), rule(UDP, "127.0.0.1", 80), false},
		{rule(TCP, "127.0.0.1", 80), rule(TCP, "127.0.0.1", 81), false},
		{rule(TCP, "127.0.0.1", 80), rule(TCP, "127.0.0.2", 80), false},
	}
	for _, tt := range tests {
		if got := tt.a.overlaps(tt.b); got != tt.want {
			t.Errorf("%s %v overlaps %s %v = %v, want %v", tt.a.Proto, tt.a.Listen(), tt.b.Proto, tt.b.Listen(), got, tt.want)
		}
	}
}

// memStore is a RuleStore in memory that can be told to fail.
type memStore struct {
	mu    sync.Mutex
	rules map[string]Rule
	fail  error
}

func newMemStore() *memStore { return &memStore{rules: make(map[string]Rule)} }

func (s *memStore) Rules(ctx context.Context) ([]Rule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []Rule
	for _, r := range s.rules {
		out = append(out, r)
	}
	return out, nil
}

func (s *memStore) PutRule(ctx context.Context, r Rule) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.rules[r.ID] = r
	return nil
}

func (s *memStore) DeleteRule(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.rules, id)
	return nil
}

// freePort returns a port that was free on 127.0.0.1 for proto a moment ago.
func freePort(t *testing.T, proto string) uint16 {
	t.Helper()
	if proto == UDP {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func TestPortProxy(t *testing.T) {
	ctx := context.Background()
	srv := newTCPServer(t, lo4, echo)
	usrv := udpEcho(t, lo4, "")
	target := srv.ln.Addr().(*net.TCPAddr).AddrPort()
	utarget := usrv.LocalAddr().(*net.UDPAddr).AddrPort()
	st := newMemStore()
	m := NewPortProxy(PortProxyConfig{Store: st})
	defer m.Close()

	port := freePort(t, TCP)
	rs, err := m.Add(ctx, Rule{Proto: TCP, ListenAddress: lo4, ListenPort: port, ConnectAddress: "127.0.0.1", ConnectPort: target.Port()})
	if err != nil {
		t.Fatal(err)
	}
	if rs.ID == "" || rs.State != StateActive {
		t.Fatalf("Add = %+v, want an id and state active", rs)
	}
	if _, ok := st.rules[rs.ID]; !ok {
		t.Fatal("rule not stored")
	}
	if err := pingThrough(netip.AddrPortFrom(lo4, port)); err != nil {
		t.Fatalf("echo through the rule: %v", err)
	}
	waitFor(t, 2*time.Second, "one finished connection with 4 bytes each way", func() bool {
		got, err := m.Get(rs.ID)
		return err == nil && got.Total == 1 && got.Connections == 0 && got.BytesIn == 4 && got.BytesOut == 4
	})

	uport := freePort(t, UDP)
	urs, err := m.Add(ctx, Rule{ID: "dns", Proto: UDP, ListenAddress: lo4, ListenPort: uport, ConnectAddress: "127.0.0.1", ConnectPort: utarget.Port()})
	if err != nil {
		t.Fatal(err)
	}
	c := dialUDP(t, netip.AddrPortFrom(lo4, uport))
	if got, err := roundTrip(t, c, "q"); err != nil || got != "q" {
		t.Fatalf("UDP echo through the rule: %q, %v", got, err)
	}

	// Duplicates and overlaps are refused and not stored.
	for _, dup := range []Rule{
		{Proto: TCP, ListenAddress: lo4, ListenPort: port, ConnectAddress: "127.0.0.1", ConnectPort: 1},
		{Proto: TCP, ListenAddress: netip.IPv4Unspecified(), ListenPort: port, ConnectAddress: "127.0.0.1", ConnectPort: 1},
		{ID: "dns", Proto: TCP, ListenAddress: lo4, ListenPort: freePort(t, TCP), ConnectAddress: "127.0.0.1", ConnectPort: 1},
	} {
		if _, err := m.Add(ctx, dup); !errors.Is(err, ErrDuplicate) {
			t.Errorf("Add(%+v) = %v, want ErrDuplicate", dup, err)
		}
	}
	// A port held by someone else: ErrPortInUse naming the holder.
	held, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	hport := uint16(held.Addr().(*net.TCPAddr).Port)
	_, err = m.Add(ctx, Rule{Proto: TCP, ListenAddress: lo4, ListenPort: hport, ConnectAddress: "127.0.0.1", ConnectPort: 1})
	var pe *PortInUseError
	if !errors.As(err, &pe) || pe.PID == 0 {
		t.Fatalf("Add on a held port = %v, want *PortInUseError with the holder", err)
	}
	// Invalid rules.
	if _, err := m.Add(ctx, Rule{Proto: TCP, ListenAddress: lo4, ConnectAddress: "127.0.0.1", ConnectPort: 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Add without a listen port = %v, want ErrInvalid", err)
	}
	// A failing store: the rule is not kept and its port is free again.
	st.fail = errors.New("disk full")
	fport := freePort(t, TCP)
	if _, err := m.Add(ctx, Rule{Proto: TCP, ListenAddress: lo4, ListenPort: fport, ConnectAddress: "127.0.0.1", ConnectPort: 1}); err == nil {
		t.Fatal("Add with a failing store succeeded")
	}
	if err := m.Delete(ctx, "dns"); err == nil {
		t.Fatal("Delete with a failing store succeeded")
	}
	st.fail = nil
	if ln, err := net.Listen("tcp4", netip.AddrPortFrom(lo4, fport).String()); err != nil {
		t.Fatalf("port of a rule the store refused is still bound: %v", err)
	} else {
		ln.Close()
	}
	if n := len(m.List()); n != 2 {
		t.Fatalf("List() = %d rules, want 2", n)
	}
	if got := m.List(); got[0].ID != rs.ID || got[1].ID != urs.ID {
		t.Fatalf("List() order = %s, %s; want tcp then udp", got[0].ID, got[1].ID)
	}

	// JSON is what the REST API will send.
	b, err := json.Marshal(m.List()[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"id"`, `"proto":"tcp"`, `"listen_address":"127.0.0.1"`, `"listen_port"`, `"connect_address"`, `"connect_port"`, `"state":"active"`, `"connections"`, `"bytes_in":4`, `"bytes_out":4`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}

	// Delete cuts live connections within 1 s, frees the port and the store.
	live := dialTCP(t, netip.AddrPortFrom(lo4, port))
	if _, err := live.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(live, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.Delete(ctx, rs.ID); err != nil {
		t.Fatal(err)
	}
	_ = live.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := live.Read(make([]byte, 1)); err == nil || time.Since(start) > time.Second {
		t.Fatalf("live connection after Delete: err %v after %v", err, time.Since(start))
	}
	if _, ok := st.rules[rs.ID]; ok {
		t.Fatal("deleted rule still stored")
	}
	if err := m.Delete(ctx, rs.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
	if _, err := m.Get(rs.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get deleted = %v, want ErrNotFound", err)
	}
}

// TestManagerRun: stored rules start on Run; one whose port is taken is a
// conflict naming the holder, and starts once the port is free.
func TestPortProxyRun(t *testing.T) {
	srv := newTCPServer(t, lo4, echo)
	target := srv.ln.Addr().(*net.TCPAddr).AddrPort()
	held, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hport := uint16(held.Addr().(*net.TCPAddr).Port)
	port := freePort(t, TCP)
	st := newMemStore()
	st.rules["a"] = Rule{ID: "a", Proto: TCP, ListenAddress: lo4, ListenPort: port, ConnectAddress: "127.0.0.1", ConnectPort: target.Port()}
	st.rules["b"] = Rule{ID: "b", Proto: TCP, ListenAddress: lo4, ListenPort: hport, ConnectAddress: "127.0.0.1", ConnectPort: target.Port()}
	st.rules["bad"] = Rule{ID: "bad", Proto: "icmp", ListenAddress: lo4, ListenPort: 1, ConnectAddress: "127.0.0.1", ConnectPort: 1}

	m := NewPortProxy(PortProxyConfig{Store: st, RetryInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitFor(t, 2*time.Second, "rules loaded", func() bool { return len(m.List()) == 3 })

	if s, _ := m.Get("a"); s.State != StateActive {
		t.Fatalf("rule a = %+v, want active", s)
	}
	if err := pingThrough(netip.AddrPortFrom(lo4, port)); err != nil {
		t.Fatalf("echo through a restored rule: %v", err)
	}
	if s, _ := m.Get("b"); s.State != StateConflict || !strings.Contains(s.Error, "port in use") {
		t.Fatalf("rule b = %+v, want a conflict naming the holder", s)
	}
	if s, _ := m.Get("bad"); s.State != StateError {
		t.Fatalf("rule bad = %+v, want error", s)
	}
	held.Close()
	waitFor(t, 2*time.Second, "rule b started after its port was freed", func() bool {
		s, _ := m.Get("b")
		return s.State == StateActive
	})
	if err := pingThrough(netip.AddrPortFrom(lo4, hport)); err != nil {
		t.Fatalf("echo through rule b: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if err := pingThrough(netip.AddrPortFrom(lo4, port)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("through the rule after Run returned: %v, want connection refused (its listener closed)", err)
	}
	if _, err := m.Add(context.Background(), Rule{Proto: TCP, ListenAddress: lo4, ListenPort: port, ConnectAddress: "127.0.0.1", ConnectPort: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close = %v, want ErrClosed", err)
	}
}

func TestPortProxyLoadError(t *testing.T) {
	st := newMemStore()
	st.fail = errors.New("locked")
	m := NewPortProxy(PortProxyConfig{Store: st})
	defer m.Close()
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("Run with a failing store = %v", err)
	}
}

// FuzzRule: a rule as the REST API receives it (JSON) never panics validation,
// and a valid one has a usable listen address and target and stays valid and
// unchanged when normalized again.
func FuzzRule(f *testing.F) {
	f.Add(`{"proto":"tcp","listen_address":"0.0.0.0","listen_port":8080,"connect_address":"127.0.0.1","connect_port":80}`)
	f.Add(`{"id":"x","proto":"UDP","listen_address":"::","listen_port":53,"connect_address":"dns.example","connect_port":53,"allow":["10.0.0.0/8","fd00::/8"]}`)
	f.Add(`{"proto":"tcp","listen_address":"::ffff:127.0.0.1","listen_port":1,"connect_address":"::FFFF:1.2.3.4","connect_port":1}`)
	f.Fuzz(func(t *testing.T, s string) {
		var r Rule
		if json.Unmarshal([]byte(s), &r) != nil {
			return
		}
		n := r.Normalize()
		if n.Validate() != nil {
			return
		}
		if n.ListenPort == 0 || n.ConnectPort == 0 || !n.ListenAddress.IsValid() || n.ListenAddress.Is4In6() {
			t.Fatalf("valid rule %+v", n)
		}
		host, port, err := net.SplitHostPort(n.Target())
		if err != nil || host != n.ConnectAddress || port == "0" {
			t.Fatalf("Target() = %q: %v", n.Target(), err)
		}
		again := n.Normalize()
		if again.Validate() != nil || again.Proto != n.Proto || again.ConnectAddress != n.ConnectAddress || again.ListenAddress != n.ListenAddress {
			t.Fatalf("Normalize not idempotent: %+v then %+v", n, again)
		}
	})
}
