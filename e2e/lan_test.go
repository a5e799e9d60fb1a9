//go:build linux

package e2e

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/internal/lantest"
	"github.com/subsys-dev/subsys/internal/testenv"
)

// echodRootfs is the busybox test root file system with /bin/echod, a static
// echo server, added.
func echodRootfs(t testing.TB) []byte {
	t.Helper()
	body := buildStatic(t, "./testdata/echod")
	return concatTars(t, tinyRootfs(t), tarOf(t, tarEntry{h: tar.Header{Typeflag: tar.TypeReg, Name: "./bin/echod", Mode: 0o755, ModTime: time.Unix(1700000000, 0)}, body: string(body)}))
}

func (s *server) ports(distro string) []api.Port {
	s.t.Helper()
	var ps []api.Port
	if st, raw := s.api("GET", "/distros/"+distro+"/ports", nil, &ps); st != 200 {
		s.t.Fatalf("GET ports: %d %s", st, raw)
	}
	return ps
}

func (s *server) port(distro, proto string, port uint16) (api.Port, bool) {
	for _, p := range s.ports(distro) {
		if p.Proto == proto && p.Port == port {
			return p, true
		}
	}
	return api.Port{}, false
}

func (s *server) expose(distro, proto string, port uint16, body map[string]any) api.Port {
	s.t.Helper()
	var p api.Port
	if st, raw := s.api("PUT", fmt.Sprintf("/distros/%s/ports/%s/%d", distro, proto, port), body, &p); st != 200 {
		s.t.Fatalf("PUT %s/%d %v: %d %s", proto, port, body, st, raw)
	}
	return p
}

// freePorts returns n distinct TCP and UDP ports free on every address now.
func freePorts(t testing.TB, n int) []uint16 {
	t.Helper()
	var out []uint16
	for len(out) < n {
		ln, err := net.Listen("tcp", "[::]:0")
		if err != nil {
			t.Fatal(err)
		}
		p := uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		if pc, err := net.ListenPacket("udp", fmt.Sprintf("[::]:%d", p)); err == nil {
			pc.Close()
			out = append(out, p)
		}
	}
	return out
}

const (
	reachTimeout = 2 * time.Second
	// dropTimeout is how long a probe waits before it counts as dropped. A
	// probe that is answered (connected, refused, reset) is answered within
	// milliseconds over the veth: lanProbes.closed shows it at every step
	// where a drop is checked.
	dropTimeout = 400 * time.Millisecond
)

// isTimeout reports whether err is a dial or read that ran out of time: what
// a probe whose packets the firewall dropped ends with. A refused or reset
// connection is an answer, not a drop.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// lanProbes are the reachability checks of the LAN tests, each from the LAN
// test host h or from this host itself. A negative check says which answer it
// wants — a timeout for a drop, a refusal for an address nothing listens on, a
// reset for the LAN proxy's allowlist — never "any error", which would also
// pass while the listener is not up yet or the test network is broken.
type lanProbes struct {
	t *testing.T
	h *lantest.Host
}

// reach wants an echo through ap from the LAN test host.
func (p lanProbes) reach(network string, ap netip.AddrPort) {
	p.t.Helper()
	if err := p.h.Ping(p.t, network, ap, reachTimeout); err != nil {
		p.t.Fatalf("%s %s from the LAN test host: %v (want reachable)", network, ap, err)
	}
}

// dropped wants the probe from the LAN test host to time out: the firewall
// dropped its packets. The caller first shows, with hostReach, that a program
// listens on ap (so that, undropped, the probe would have been answered).
func (p lanProbes) dropped(network string, ap netip.AddrPort) {
	p.t.Helper()
	switch err := p.h.Ping(p.t, network, ap, dropTimeout); {
	case err == nil:
		p.t.Fatalf("%s %s reachable from the LAN test host, want dropped", network, ap)
	case !isTimeout(err):
		p.t.Fatalf("%s %s from the LAN test host: %v, want a timeout (dropped by the firewall)", network, ap, err)
	}
}

// closed wants a TCP connection from the LAN test host to ap refused at once:
// the LAN test host reaches this host, and nothing listens on ap. Run on a port
// nobody holds, it shows that the probes of dropped would get an answer if
// nothing dropped them.
func (p lanProbes) closed(ap netip.AddrPort) {
	p.t.Helper()
	start := time.Now()
	_, err := p.h.Dial(p.t, "tcp", ap, reachTimeout)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		p.t.Fatalf("tcp %s from the LAN test host: %v, want connection refused (nothing listens there)", ap, err)
	}
	if d := time.Since(start); d > dropTimeout/4 {
		p.t.Errorf("tcp %s from the LAN test host was refused after %v: too slow to tell an answer from a drop after %v", ap, d, dropTimeout)
	}
}

// turnedAway wants the LAN proxy on ap to reset a TCP connection from the
// LAN test host: its allowlist leaves the test host out.
func (p lanProbes) turnedAway(ap netip.AddrPort) {
	p.t.Helper()
	if err := p.h.Ping(p.t, "tcp", ap, reachTimeout); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		p.t.Fatalf("tcp %s from the LAN test host: %v, want reset by the LAN proxy (allowlist)", ap, err)
	}
}

// hostReach wants an echo through ap from this host's own network namespace
// (never filtered: the kernel routes it over lo).
func (p lanProbes) hostReach(network string, ap netip.AddrPort) {
	p.t.Helper()
	if err := pingFromHost(network, ap); err != nil {
		p.t.Fatalf("%s %s from this host: %v", network, ap, err)
	}
}

// waitListening waits until a TCP connection to ap from this host succeeds,
// polling often: the checks that follow must run as soon as the port is open.
func waitListening(t *testing.T, ap netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ap.String(), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after 3 s: %v", ap, err)
		}
		time.Sleep(2 * time.Millisecond) // poll interval
	}
}

// TestLANExposure is the network manager end to end: a version 1 distro runs
// echo servers bound to 127.0.0.1 and to every address (IPv4 and IPv6, TCP and
// UDP); from a LAN test host (a network namespace on a veth pair) they are
// unreachable until their LAN toggle is on, reachable while on, unreachable —
// with open connections cut within 1 s — after off; an allowlist that excludes
// the test host refuses it; settings survive a server restart.
func TestLANExposure(t *testing.T) {
	h := lantest.New(t)
	s := startServer(t, "")
	probe := lanProbes{t, h}
	lo := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p) }
	lan4 := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(h.Host4, p) }
	lan6 := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(h.Host6, p) }
	reach, dropped, closed, hostReach := probe.reach, probe.dropped, probe.closed, probe.hostReach
	// pathCheck shows the LAN test host gets answers from this host right
	// now: a port nobody holds refuses it at once. Every set of dropped
	// checks starts with it.
	pathCheck := func() {
		t.Helper()
		closed(lan4(freePorts(t, 1)[0]))
	}
	s.importTar("lan", echodRootfs(t))
	defer s.api("POST", "/distros/lan/terminate", nil, nil)
	ps := freePorts(t, 3)
	pLo, pAll, pUDP := ps[0], ps[1], ps[2]

	// Port events arrive over SSE while the ports appear.
	events := s.sseLines(t)

	started := time.Now()
	s.sh("lan", fmt.Sprintf("echod -tcp 127.0.0.1:%d -tcp [::]:%d -udp 127.0.0.1:%d -udp [::]:%d </dev/null >/dev/null 2>&1 &", pLo, pAll, pUDP, pAll))
	waitFor(t, 3*time.Second, "the distro's ports in the API", func() bool {
		_, a := s.port("lan", "tcp", pLo)
		_, b := s.port("lan", "tcp", pAll)
		_, c := s.port("lan", "udp", pUDP)
		return a && b && c
	})
	t.Logf("ports listed %v after the exec that opened them started", time.Since(started).Round(time.Millisecond))
	if d := time.Since(started); d > 1500*time.Millisecond {
		t.Errorf("new listeners took %v to show, want about 1 s at most", d)
	}
	waitFor(t, 3*time.Second, "a ports event on the SSE stream", func() bool {
		return events.has(fmt.Sprintf(`"port":%d`, pLo))
	})
	for _, want := range []struct {
		proto string
		port  uint16
		addr  string
	}{{"tcp", pLo, "127.0.0.1"}, {"tcp", pAll, "::"}, {"udp", pUDP, "127.0.0.1"}} {
		p, _ := s.port("lan", want.proto, want.port)
		if p.Address != want.addr || p.Process != "echod" || p.PID == 0 || p.LAN || p.State != "local" {
			t.Errorf("%s/%d = %+v, want bound to %s by echod, LAN off, state local", want.proto, want.port, p, want.addr)
		}
	}

	// The distro's processes live in a cgroup of their own, which the firewall
	// matches: a port opened after the last scan is off the LAN from its first
	// packet, not only from the next scan.
	var d distro
	s.api("GET", "/distros/lan", nil, &d)
	_, cgroups := lantest.Cgroup2Root()
	if !cgroups {
		testenv.SkipPart(t, "no cgroup v2 hierarchy mounted at its root: distros run without cgroups; their checks are left out")
	}
	if p, _ := s.port("lan", "tcp", pLo); cgroups && p.PID != 0 {
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PID))
		if !strings.Contains(string(raw), "0::/subsys/"+d.ID+"\n") {
			t.Errorf("echod's cgroups: %q, want 0::/subsys/%s", raw, d.ID)
		}
	}
	if cgroups {
		// Each try probes as soon as the port takes connections (from this
		// host); a try whose port the last scan already listed checks the
		// per-port rule instead, so at least one must come before the scan.
		pathCheck()
		early := 0
		for i, p := range freePorts(t, 3) {
			s.sh("lan", fmt.Sprintf("echod -tcp 0.0.0.0:%d </dev/null >/dev/null 2>&1 &", p))
			waitListening(t, lo(p))
			if _, listed := s.port("lan", "tcp", p); !listed {
				early++
			}
			switch err := h.Ping(t, "tcp", lan4(p), dropTimeout); {
			case err == nil:
				t.Errorf("try %d: a port opened a moment ago was reachable from the LAN before a scan saw it", i)
			case !isTimeout(err):
				t.Errorf("try %d: a port opened a moment ago, from the LAN: %v, want a timeout (dropped by the cgroup rule)", i, err)
			}
		}
		t.Logf("%d of 3 new ports probed before a scan listed them", early)
		if early == 0 {
			t.Error("every new port was listed before its probe: the cgroup rule went unchecked")
		}
	}

	// The distro's own connections out to the LAN get their replies: TCP
	// (the SYN-ACK reaches a socket of the distro's cgroup), UDP, and UDP on an
	// unconnected socket that lives long enough to be listed as a port with LAN
	// off (a resolver's or an NTP client's).
	peer := netip.AddrPortFrom(h.Peer4, freePorts(t, 1)[0])
	h.In(t, func() {
		startTCPEcho(t, peer.String())
		startUDPEcho(t, peer.String())
	})
	for _, network := range []string{"tcp", "udp", "udp-unconnected"} {
		if res := s.exec("lan", map[string]any{"argv": []string{"/bin/echod", "-dial", network, "-to", peer.String()}}); res.ExitCode != 0 || res.Stdout != "ping\n" {
			t.Errorf("%s from the distro to the LAN test host: exit %d, %q %q", network, res.ExitCode, res.Stdout, res.Stderr)
		}
	}

	// A program in a PID namespace nested in the distro's (a container run in
	// it) is the distro's too: found by its cgroup.
	if cgroups {
		pNested := freePorts(t, 1)[0]
		s.sh("lan", fmt.Sprintf("echod -nested-pidns -udp 0.0.0.0:%d </dev/null >/dev/null 2>&1 &", pNested))
		waitFor(t, 3*time.Second, "the nested program's port", func() bool { _, ok := s.port("lan", "udp", pNested); return ok })
	}

	// LAN off by default, even for the program bound to every address; this
	// host still reaches both, on loopback and on its LAN address. The
	// loopback-bound program has nothing on the LAN address, so a LAN client
	// is refused there; the one bound to every address is dropped.
	hostReach("tcp", lo(pLo))
	hostReach("tcp", lo(pAll))
	hostReach("tcp", lan4(pAll))
	hostReach("udp", lo(pAll))
	pathCheck()
	closed(lan4(pLo))
	dropped("tcp", lan4(pAll))
	dropped("tcp", lan6(pAll))
	dropped("udp", lan4(pAll))

	// LAN on while another program of this host holds the port on the IPv6
	// LAN address: state conflict, naming it; IPv4 works meanwhile, and IPv6
	// once the holder is gone.
	blocker, err := net.Listen("tcp", lan6(pLo).String())
	if err != nil {
		t.Fatal(err)
	}
	if got := s.expose("lan", "tcp", pLo, map[string]any{"lan": true}); got.State != "conflict" || !strings.Contains(got.Error, "e2e.test") {
		t.Errorf("LAN on with [%s]:%d taken: %+v, want state conflict naming e2e.test", h.Host6, pLo, got)
	}
	reach("tcp", lan4(pLo))
	blocker.Close()
	waitFor(t, 8*time.Second, "the conflict to clear", func() bool { p, _ := s.port("lan", "tcp", pLo); return p.State == "lan" })

	// LAN on.
	for _, p := range []struct {
		proto string
		port  uint16
	}{{"tcp", pLo}, {"tcp", pAll}, {"udp", pUDP}, {"udp", pAll}} {
		if got := s.expose("lan", p.proto, p.port, map[string]any{"lan": true}); got.State != "lan" || !got.LAN {
			t.Fatalf("PUT %s/%d lan=true: %+v, want state lan", p.proto, p.port, got)
		}
	}
	reach("tcp", lan4(pLo))
	reach("tcp", lan6(pLo)) // an IPv6 LAN listener forwards to the IPv4 loopback program
	reach("tcp", lan4(pAll))
	reach("tcp", lan6(pAll))
	reach("udp", lan4(pUDP))
	reach("udp", lan6(pUDP))
	reach("udp", lan4(pAll))
	hostReach("tcp", lo(pLo))

	// Counters move with traffic (read from the firewall at each scan, so
	// they show within a scan or two).
	waitFor(t, 3*time.Second, "the counters of the LAN port to move with traffic", func() bool {
		p, _ := s.port("lan", "tcp", pAll)
		return p.BytesIn > 0 && p.BytesOut > 0
	})

	// Open connections are cut within 1 s of LAN off.
	cLo := openEcho(t, h, lan4(pLo))
	cAll := openEcho(t, h, lan4(pAll))
	waitFor(t, 2*time.Second, "the live connection counted", func() bool {
		p, _ := s.port("lan", "tcp", pAll)
		return p.Connections >= 1
	})
	off := time.Now()
	s.expose("lan", "tcp", pLo, map[string]any{"lan": false})
	s.expose("lan", "tcp", pAll, map[string]any{"lan": false})
	for name, c := range map[string]net.Conn{"loopback-bound": cLo, "all-addresses": cAll} {
		if err := expectCut(c, off); err != nil {
			t.Errorf("open LAN connection to the %s service: %v", name, err)
		}
	}
	// The LAN listener of the loopback-bound program is gone; the program
	// bound to every address is dropped again.
	hostReach("tcp", lo(pLo))
	hostReach("tcp", lo(pAll))
	pathCheck()
	closed(lan4(pLo))
	closed(lan6(pLo))
	dropped("tcp", lan4(pAll))
	dropped("tcp", lan6(pAll))

	// An allowlist that leaves the test host out refuses it — the LAN proxy
	// of the loopback-bound program resets it, the firewall drops it on the
	// way to the other; one naming it admits it.
	other := []string{"192.0.2.0/24", "2001:db8::/32"}
	s.expose("lan", "tcp", pLo, map[string]any{"lan": true, "allow": other})
	s.expose("lan", "tcp", pAll, map[string]any{"lan": true, "allow": other})
	probe.turnedAway(lan4(pLo))
	pathCheck()
	dropped("tcp", lan4(pAll))
	dropped("tcp", lan6(pAll))
	mine := []string{h.Peer4.String() + "/32", h.Peer6.String()}
	s.expose("lan", "tcp", pAll, map[string]any{"allow": mine})
	got := s.expose("lan", "tcp", pLo, map[string]any{"allow": mine})
	if len(got.Allow) != 2 || got.Allow[1] != h.Peer6.String()+"/128" {
		t.Errorf("allow after PUT: %v, want %v as prefixes", got.Allow, mine)
	}
	reach("tcp", lan4(pLo))
	reach("tcp", lan4(pAll))
	reach("tcp", lan6(pAll))

	// Bad input gets a clear 400.
	for _, body := range []map[string]any{{"allow": []string{"10.0.0.300/8"}}, {"lan_address": "nope"}, {"lan_address": "127.0.0.1"}} {
		if st, raw := s.api("PUT", fmt.Sprintf("/distros/lan/ports/tcp/%d", pAll), body, nil); st != 400 {
			t.Errorf("PUT %v: %d %s, want 400", body, st, raw)
		}
	}
	if st, _ := s.api("PUT", "/distros/lan/ports/sctp/80", map[string]any{"lan": true}, nil); st != 400 {
		t.Errorf("PUT sctp: %d, want 400", st)
	}
	if st, _ := s.api("GET", "/distros/nope/ports", nil, nil); st != 404 {
		t.Errorf("GET ports of a missing distro: %d, want 404", st)
	}
	// A port that does not listen keeps its setting.
	if p := s.expose("lan", "tcp", 9, map[string]any{"lan": true}); p.State != "closed" || !p.LAN {
		t.Errorf("PUT of a closed port: %+v, want state closed, lan true", p)
	}

	// Settings survive a restart of the server; the distro keeps running.
	s.restart()
	waitFor(t, 5*time.Second, "ports after the restart", func() bool {
		p, ok := s.port("lan", "tcp", pAll)
		return ok && p.State == "lan" && len(p.Allow) == 2
	})
	reach("tcp", lan4(pLo))
	reach("tcp", lan6(pAll))
	reach("udp", lan4(pUDP))
	s.expose("lan", "tcp", pAll, map[string]any{"lan": false})
	hostReach("tcp", lo(pAll))
	pathCheck()
	dropped("tcp", lan4(pAll))

	// v1_lan_default = follow-bind: an unconfigured port bound to every
	// address is on the LAN, as in WSL 1; one configured off stays off.
	pNew := freePorts(t, 1)[0]
	s.sh("lan", fmt.Sprintf("echod -tcp 0.0.0.0:%d </dev/null >/dev/null 2>&1 &", pNew))
	waitFor(t, 3*time.Second, "the new port", func() bool { _, ok := s.port("lan", "tcp", pNew); return ok })
	hostReach("tcp", lo(pNew))
	pathCheck()
	dropped("tcp", lan4(pNew))
	if st, raw := s.api("PUT", "/settings", map[string]any{"v1_lan_default": "follow-bind"}, nil); st != 200 {
		t.Fatalf("PUT settings: %d %s", st, raw)
	}
	waitFor(t, 3*time.Second, "follow-bind applied", func() bool { p, _ := s.port("lan", "tcp", pNew); return p.State == "lan" && p.LAN })
	reach("tcp", lan4(pNew))
	dropped("tcp", lan4(pAll))
	if st, _ := s.api("PUT", "/settings", map[string]any{"v1_lan_default": "sometimes"}, nil); st != 400 {
		t.Errorf("PUT v1_lan_default=sometimes: %d, want 400", st)
	}
	s.api("PUT", "/settings", map[string]any{"v1_lan_default": "off"}, nil)
	waitFor(t, 3*time.Second, "off applied", func() bool { p, _ := s.port("lan", "tcp", pNew); return p.State == "local" })
	pathCheck()
	dropped("tcp", lan4(pNew))

	// A server that stops while the distro runs leaves its drop rules; one
	// that stops with no distro running leaves nothing behind.
	s.stop()
	if !lantest.HasNFTable(t, "subsys") {
		t.Error("the firewall table went with the server while the distro still runs: LAN-off ports would be open")
	}
	hostReach("tcp", lo(pAll))
	pathCheck()
	dropped("tcp", lan4(pAll))
	s.start()
	s.api("POST", "/distros/lan/terminate", nil, nil)
	s.stop()
	if lantest.HasNFTable(t, "subsys") {
		t.Error("the firewall table outlived the server and every distro")
	}
}

// openEcho opens a connection from the LAN test host and checks that it echoes.
func openEcho(t *testing.T, h *lantest.Host, ap netip.AddrPort) net.Conn {
	t.Helper()
	c, err := h.Dial(t, "tcp", ap, reachTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", ap, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(reachTimeout))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("echo through %s: %v", ap, err)
	}
	return c
}

// expectCut checks that c was closed or reset by the far side within 1 s of
// since: a read that ends with an error other than a timeout.
func expectCut(c net.Conn, since time.Time) error {
	c.SetDeadline(since.Add(1500 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	if err == nil {
		// The far end may still have had bytes in flight; a write then must fail.
		_, err = c.Write([]byte("y"))
	}
	switch {
	case err == nil:
		return errors.New("still open")
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errors.New("not cut within 1.5 s")
	}
	if d := time.Since(since); d > time.Second+200*time.Millisecond {
		return fmt.Errorf("cut after %v, want within 1 s", d)
	}
	return nil
}

// pingFromHost echoes a line through ap from this host's own network namespace.
func pingFromHost(network string, ap netip.AddrPort) error {
	c, err := net.DialTimeout(network, ap.String(), reachTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(reachTimeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	return nil
}

// sseStream collects the lines of an open /events stream.
type sseStream struct {
	lines chan string
	seen  []string
}

func (s *server) sseLines(t *testing.T) *sseStream {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	st := &sseStream{lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			select {
			case st.lines <- sc.Text():
			default:
			}
		}
		close(st.lines)
	}()
	return st
}

// has reports whether a `ports` event whose data contains sub has arrived.
func (st *sseStream) has(sub string) bool {
	for {
		select {
		case l, ok := <-st.lines:
			if !ok {
				return false
			}
			st.seen = append(st.seen, l)
			continue
		default:
		}
		break
	}
	for i, l := range st.seen {
		if l == "event: ports" && i+1 < len(st.seen) && strings.Contains(st.seen[i+1], sub) {
			return true
		}
	}
	return false
}
