package netmgr

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/lantest"
	"github.com/subsys-dev/subsys/internal/testenv"
)

// TestMain lets the test binary double as the echo server that
// TestFirewallDistroCgroup runs in a cgroup of its own.
func TestMain(m *testing.M) {
	if addr := os.Getenv("NETMGR_TEST_ECHO"); addr != "" {
		// Wait for the go-ahead: the test moves this process into its cgroup
		// first, and a socket keeps the cgroup it was made in.
		if _, err := fmt.Scanln(); err != nil {
			os.Exit(1)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}
	os.Exit(m.Run())
}

// TestFirewallDistroCgroup: with SetDistroCgroup, a LAN host cannot reach a
// port held by a process of that cgroup until a rule for the port lets it
// through, while a port of a process outside it stays reachable.
func TestFirewallDistroCgroup(t *testing.T) {
	h := newLANHost(t)
	f := openTestFirewall(t)
	mount, ok := lantest.Cgroup2Root()
	if !ok {
		testenv.SkipOrFail(t, "no cgroup2 hierarchy mounted at its root")
	}
	parent := filepath.Join(mount, fmt.Sprintf("subsys-test-%d", os.Getpid()))
	child := filepath.Join(parent, "distro")
	if err := os.MkdirAll(child, 0o755); err != nil {
		testenv.SkipOrFail(t, "cannot create a cgroup:", err)
	}
	t.Cleanup(func() { os.Remove(child); os.Remove(parent) })
	var st syscall.Stat_t
	if err := syscall.Stat(parent, &st); err != nil {
		t.Fatal(err)
	}

	// The "distro" process, in the child cgroup, on every address.
	port := freePort(t, TCP)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "NETMGR_TEST_ECHO="+fmt.Sprintf("0.0.0.0:%d", port))
	out, _ := cmd.StdoutPipe()
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := os.WriteFile(filepath.Join(child, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Only now does it open its socket.
	fmt.Fprintln(in)
	buf := make([]byte, 10)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "listening\n" {
		t.Fatalf("echo helper: %q %v", buf, err)
	}
	// A host process's port beside it.
	host := newTCPServer(t, netip.IPv4Unspecified(), echo)
	hostPort := host.ln.Addr().(*net.TCPAddr).AddrPort().Port()

	distroAP := netip.AddrPortFrom(h.host4, port)
	hostAP := netip.AddrPortFrom(h.host4, hostPort)
	if err := h.ping(t, "tcp", distroAP); err != nil {
		t.Fatalf("before SetDistroCgroup: %v", err)
	}
	f.SetDistroCgroup(st.Ino, 1)
	if err := f.Apply(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if err := h.Dial4(t, distroAP); !isTimeout(err) {
		t.Errorf("a port of the distro cgroup that no rule names, from the LAN: %v, want a timeout (dropped)", err)
	}
	if err := h.ping(t, "tcp", hostAP); err != nil {
		t.Errorf("a host process's port was cut off: %v", err)
	}
	if err := pingThrough(netip.AddrPortFrom(lo4, port)); err != nil {
		t.Errorf("the distro's port from this host: %v", err)
	}
	// A rule that lets LAN traffic through opens it; one that drops keeps it shut.
	if err := f.Apply(t.Context(), []FirewallRule{{Proto: TCP, Port: port, Family: 4}}); err != nil {
		t.Fatal(err)
	}
	if err := h.ping(t, "tcp", distroAP); err != nil {
		t.Errorf("with a rule that lets LAN traffic through: %v", err)
	}
	if err := f.Apply(t.Context(), []FirewallRule{{Proto: TCP, Port: port, Family: 4, Drop: true}}); err != nil {
		t.Fatal(err)
	}
	if err := h.Dial4(t, distroAP); !isTimeout(err) {
		t.Errorf("with a drop rule, from the LAN: %v, want a timeout (dropped)", err)
	}
}

// Dial4 tries a TCP connection from the LAN test host with a short timeout.
func (h *lanHost) Dial4(t *testing.T, ap netip.AddrPort) error {
	c, err := h.Host.Dial(t, "tcp", ap, 400*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err
}

// TestFirewallUDPAnswers: a UDP port the firewall filters still hears the
// answers of the LAN hosts it sent to (a resolver or NTP client on an
// unconnected socket), while a datagram nobody asked for is dropped, and a
// change of the port's rule forgets the hosts it answered.
func TestFirewallUDPAnswers(t *testing.T) {
	h := newLANHost(t)
	f := openTestFirewall(t)
	// The "distro" socket: unconnected, on every address.
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	if err := f.Apply(t.Context(), []FirewallRule{{Proto: UDP, Port: port, Family: 4, Drop: true}}); err != nil {
		t.Fatal(err)
	}
	// An echo server on the LAN test host.
	var peer *net.UDPConn
	h.In(t, func() { peer, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.peer4, 0))) })
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := peer.ReadFromUDP(buf)
			if err != nil {
				return
			}
			peer.WriteToUDP(buf[:n], from)
		}
	}()
	ask := func() error {
		if _, err := pc.WriteToUDPAddrPort([]byte("q"), peer.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			return err
		}
		pc.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		_, _, err := pc.ReadFromUDPAddrPort(make([]byte, 8))
		return err
	}
	if err := ask(); err != nil {
		t.Fatalf("the answer to a query from the filtered port: %v", err)
	}
	// Unasked: a datagram from the LAN host's other socket is dropped.
	var other net.Conn
	h.In(t, func() { other, err = net.Dial("udp4", netip.AddrPortFrom(h.host4, port).String()) })
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.Write([]byte("unasked"))
	pc.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
	if _, from, err := pc.ReadFromUDPAddrPort(make([]byte, 8)); err == nil {
		t.Errorf("an unasked datagram from %s passed the drop", from)
	}
	// A rule change forgets the peers: the same host, unasked, is dropped.
	if err := f.Apply(t.Context(), []FirewallRule{{Proto: UDP, Port: port, Family: 4, Drop: true, LoopbackOnlyCount: false}, {Proto: TCP, Port: port, Family: 4, Drop: true}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(t.Context(), []FirewallRule{{Proto: UDP, Port: port, Family: 4, Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	peer.WriteToUDPAddrPort([]byte("late"), netip.AddrPortFrom(h.host4, port))
	pc.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
	if _, from, err := pc.ReadFromUDPAddrPort(make([]byte, 8)); err == nil {
		t.Errorf("after the rule changed, a datagram from %s passed as an answer", from)
	}
	if err := ask(); err != nil {
		t.Errorf("a new query's answer: %v", err)
	}
}
