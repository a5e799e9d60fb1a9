//go:build linux

package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/internal/lantest"
)

// TestPortProxy drives portproxy rules through the REST API and the CLI: TCP
// and UDP echo from a LAN test host through rules on IPv4 and IPv6, 409s that
// name what holds a port, counters, persistence across a restart, and the
// ports/expose verbs.
func TestPortProxy(t *testing.T) {
	h := lantest.New(t)
	s := startServer(t, "")
	ps := freePorts(t, 4)
	echoPort, listenTCP, listenUDP, listen6 := ps[0], ps[1], ps[2], ps[3]
	// The targets: echo servers on this host's loopback.
	startTCPEcho(t, fmt.Sprintf("127.0.0.1:%d", echoPort))
	startUDPEcho(t, fmt.Sprintf("127.0.0.1:%d", echoPort))

	var r api.Rule
	st, raw := s.api("POST", "/portproxy", api.RuleRequest{ListenPort: int(listenTCP), ConnectPort: int(echoPort)}, &r)
	if st != 201 || r.State != "active" || r.ListenAddress != "0.0.0.0" || r.ConnectAddress != "127.0.0.1" || r.Proto != "tcp" || r.ID == "" {
		t.Fatalf("POST /portproxy: %d %s", st, raw)
	}
	var ru api.Rule
	if st, raw := s.api("POST", "/portproxy", api.RuleRequest{Proto: api.UDP, ListenPort: int(listenUDP), ConnectPort: int(echoPort)}, &ru); st != 201 {
		t.Fatalf("POST udp rule: %d %s", st, raw)
	}
	out, errOut, code := s.cli(nil, "portproxy", "add", "--id", "v6", "--listen-address", "::", "--listen-port", fmt.Sprint(listen6), "--connect-port", fmt.Sprint(echoPort))
	if code != 0 || !strings.Contains(out, "rule v6") {
		t.Fatalf("portproxy add (CLI): %d %q %q", code, out, errOut)
	}
	if err := h.Ping(t, "tcp", netip.AddrPortFrom(h.Host4, listenTCP), reachTimeout); err != nil {
		t.Fatalf("TCP echo through the rule from the LAN: %v", err)
	}
	if err := h.Ping(t, "udp", netip.AddrPortFrom(h.Host4, listenUDP), reachTimeout); err != nil {
		t.Fatalf("UDP echo through the rule from the LAN: %v", err)
	}
	if err := h.Ping(t, "tcp", netip.AddrPortFrom(h.Host6, listen6), reachTimeout); err != nil {
		t.Fatalf("TCP echo through the IPv6 rule from the LAN: %v", err)
	}
	var got api.Rule
	if st, _ := s.api("GET", "/portproxy/"+r.ID, nil, &got); st != 200 || got.Total != 1 || got.BytesIn != 4 {
		t.Errorf("GET rule after one echo: %d %+v, want total 1, bytes_in 4", st, got)
	}

	// Conflicts: a duplicate rule, and a port a process of this host holds.
	var e api.ErrorBody
	if st, _ := s.api("POST", "/portproxy", api.RuleRequest{ListenPort: int(listenTCP), ConnectPort: 1}, &e); st != 409 || e.Error.Code != api.CodeDuplicateRule {
		t.Errorf("duplicate rule: %d %+v, want 409 duplicate_rule", st, e)
	}
	busyPort := freePorts(t, 1)[0]
	ln, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", busyPort))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if st, _ := s.api("POST", "/portproxy", api.RuleRequest{ListenPort: int(busyPort), ConnectPort: int(echoPort)}, &e); st != 409 || e.Error.Code != api.CodePortInUse || !strings.Contains(e.Error.Message, "e2e.test") {
		t.Errorf("port held by this test: %d %+v, want 409 port_in_use naming e2e.test", st, e)
	}
	for _, body := range []map[string]any{
		{"listen_port": 0, "connect_port": 1},
		{"listen_port": 1, "connect_port": 1, "proto": "sctp"},
		{"listen_port": 1, "connect_port": 1, "listen_address": "nope"},
		{"listen_port": 1, "connect_port": 1, "allow": []string{"10.0.0.0/99"}},
	} {
		if st, raw := s.api("POST", "/portproxy", body, nil); st != 400 {
			t.Errorf("POST %v: %d %s, want 400", body, st, raw)
		}
	}

	// Rules survive a restart.
	s.restart()
	out, _, code = s.cli(nil, "portproxy", "list")
	if code != 0 || strings.Count(out, "active") != 3 || !strings.Contains(out, r.ID) || !strings.Contains(out, fmt.Sprintf("[::]:%d", listen6)) {
		t.Fatalf("portproxy list after restart (want 3 active rules):\n%s", out)
	}
	if err := h.Ping(t, "udp", netip.AddrPortFrom(h.Host4, listenUDP), reachTimeout); err != nil {
		t.Fatalf("UDP echo after the restart: %v", err)
	}

	// Delete: the port closes. Its listener is gone, so a LAN client is
	// refused (not dropped: no firewall rule is involved), as the same probe
	// reached the echo server through the rule above.
	if _, errOut, code := s.cli(nil, "portproxy", "delete", r.ID); code != 0 {
		t.Fatalf("portproxy delete: %d %s", code, errOut)
	}
	lanProbes{t, h}.closed(netip.AddrPortFrom(h.Host4, listenTCP))
	if st, _ := s.api("DELETE", "/portproxy/"+r.ID, nil, &e); st != 404 {
		t.Errorf("second DELETE: %d, want 404", st)
	}
	if _, errOut, code := s.cli(nil, "portproxy", "delete", "nope"); code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("CLI delete of a missing rule: %d %q", code, errOut)
	}
}

// TestPortsCLI: `subsys ports` lists what a distro listens on, `subsys expose`
// changes who can reach it.
func TestPortsCLI(t *testing.T) {
	s := startServer(t, "")
	s.importTar("cli", echodRootfs(t))
	defer s.api("POST", "/distros/cli/terminate", nil, nil)
	out, _, code := s.cli(nil, "ports", "cli")
	if code != 0 || !strings.Contains(out, "No program in cli is listening") {
		t.Errorf("ports of a distro without listeners: %d %q", code, out)
	}
	p := freePorts(t, 1)[0]
	s.sh("cli", fmt.Sprintf("echod -tcp 127.0.0.1:%d </dev/null >/dev/null 2>&1 &", p))
	waitFor(t, 3*time.Second, "the port", func() bool { _, ok := s.port("cli", "tcp", p); return ok })
	out, _, code = s.cli(nil, "ports", "cli")
	if code != 0 || !strings.Contains(out, fmt.Sprint(p)) || !strings.Contains(out, "echod") || !strings.Contains(out, "this host only") {
		t.Errorf("ports:\n%s", out)
	}
	out, errOut, code := s.cli(nil, "expose", "cli", fmt.Sprint(p), "--lan", "--allow", "10.0.0.0/8,192.168.0.0/16")
	if code != 0 || !strings.Contains(out, "LAN") || !strings.Contains(out, "10.0.0.0/8,192.168.0.0/16") {
		t.Errorf("expose --lan: %d %q %q", code, out, errOut)
	}
	out, _, code = s.cli(nil, "expose", "cli", fmt.Sprint(p), "--no-lan")
	if code != 0 || !strings.Contains(out, "this host only") {
		t.Errorf("expose --no-lan: %d %q", code, out)
	}
	if _, errOut, code := s.cli(nil, "expose", "cli", "70000"); code == 0 || !strings.Contains(errOut, "70000") {
		t.Errorf("expose of port 70000: %d %q", code, errOut)
	}
	if _, errOut, code := s.cli(nil, "expose", "cli", fmt.Sprint(p), "--allow", "bogus"); code == 0 || !strings.Contains(errOut, "bogus") {
		t.Errorf("expose --allow bogus: %d %q", code, errOut)
	}
}

func startTCPEcho(t testing.TB, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	return ln
}

func startUDPEcho(t *testing.T, addr string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}
