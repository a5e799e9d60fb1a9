package netmgr

import (
	"io"
	"net"
	"net/netip"
	"testing"
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
