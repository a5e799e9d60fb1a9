package netmgr

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// benchTarget returns the address to dial for mode "direct" (the server) or
// "proxy" (a proxy in front of it).
func benchTarget(b *testing.B, mode string, server string) string {
	if mode == "direct" {
		return server
	}
	p := newProxy(b, ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: server})
	return p.Addr().String()
}

// BenchmarkTCPThroughput streams 256 KiB writes to a discarding server, directly
// and through the proxy (splice), on loopback; compare the MB/s.
func BenchmarkTCPThroughput(b *testing.B) {
	srv := newTCPServer(b, lo4, func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) })
	buf := make([]byte, 256<<10)
	for _, mode := range []string{"direct", "proxy"} {
		b.Run(mode, func(b *testing.B) {
			c, err := net.Dial("tcp", benchTarget(b, mode, srv.addr()))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTCPConnect opens a connection, exchanges one byte and closes it,
// directly and through the proxy; compare conns/s.
func BenchmarkTCPConnect(b *testing.B) {
	srv := newTCPServer(b, lo4, echo)
	for _, mode := range []string{"direct", "proxy"} {
		b.Run(mode, func(b *testing.B) {
			addr := benchTarget(b, mode, srv.addr())
			one := make([]byte, 1)
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
}

// BenchmarkIperf3 runs iperf3 directly on loopback, through a Proxy, and through
// `socat TCP-LISTEN:P,fork TCP:127.0.0.1:Q`, 3 s each — three rounds of 1 s, the
// three taking turns so that a change in the machine's load hits them alike —
// and reports Gbit/s and the ratios (goal: proxy ≥ 0.75× direct, ≥ 2× socat).
// It runs once whatever b.N is.
func BenchmarkIperf3(b *testing.B) {
	for _, tool := range []string{"iperf3", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("needs %s: %v", tool, err)
		}
	}
	const rounds = 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sport := freeBenchPort(b)
	server := exec.CommandContext(ctx, "iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(int(sport)))
	if err := server.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); _ = server.Wait() }()
	target := netip.AddrPortFrom(lo4, sport)
	waitListening(b, target)

	p := newProxy(b, ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: target.String()})
	socatPort := freeBenchPort(b)
	socat := exec.CommandContext(ctx, "socat",
		fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr,bind=127.0.0.1", socatPort),
		"TCP:"+target.String())
	if err := socat.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = socat.Process.Kill(); _ = socat.Wait() }()
	waitListening(b, netip.AddrPortFrom(lo4, socatPort))

	runs := []struct {
		name string
		port uint16
	}{{"direct", sport}, {"proxy", p.Addr().Port()}, {"socat", socatPort}}
	gbps := make(map[string]float64)
	for range rounds {
		for _, run := range runs {
			out, err := exec.CommandContext(ctx, "iperf3", "-c", "127.0.0.1", "-p", strconv.Itoa(int(run.port)), "-t", "1", "-J").Output()
			if err != nil {
				b.Fatalf("iperf3 %s: %v\n%s", run.name, err, out)
			}
			var res struct {
				End struct {
					SumReceived struct {
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				b.Fatalf("iperf3 %s output: %v", run.name, err)
			}
			gbps[run.name] += res.End.SumReceived.BitsPerSecond / 1e9 / rounds
		}
	}
	for _, run := range runs {
		b.ReportMetric(gbps[run.name], run.name+"-Gbit/s")
	}
	b.ReportMetric(gbps["proxy"]/gbps["direct"], "proxy/direct")
	b.ReportMetric(gbps["proxy"]/gbps["socat"], "proxy/socat")
	b.Logf("iperf3 %d×1s each: direct %.1f Gbit/s, proxy %.1f Gbit/s, socat %.1f Gbit/s; proxy/direct %.2f, proxy/socat %.2f",
		rounds, gbps["direct"], gbps["proxy"], gbps["socat"], gbps["proxy"]/gbps["direct"], gbps["proxy"]/gbps["socat"])
}

func freeBenchPort(b *testing.B) uint16 {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// waitListening waits until a TCP socket listens on ap, found with
// ListeningSockets so that no probe connection disturbs the server.
func waitListening(b *testing.B, ap netip.AddrPort) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		socks, err := ListeningSockets(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range socks {
			if s.Proto == TCP && s.Local == ap {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("nothing listens on %s", ap)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
