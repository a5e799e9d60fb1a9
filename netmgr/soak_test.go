package netmgr

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// openFDs counts the process's open file descriptors, and how many of them are
// sockets.
func openFDs(t testing.TB) (fds, sockets int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		testenv.SkipOrFail(t, "no /proc/self/fd:", err)
	}
	for _, e := range ents {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(link, "socket:") {
			sockets++
		}
	}
	return len(ents), sockets
}

// settle waits for the goroutines to be back to the baseline, then checks that
// no socket is left open — before a garbage collection, which would close an
// unreachable leaked conn by its cleanup and hide the leak — and then that every
// descriptor is back once the collector has closed the splice pipes Go pools.
func settle(t *testing.T, fds, sockets, goroutines int) {
	t.Helper()
	fail := func(format string, a ...any) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("leak: "+format+"\n%s", append(a, buf)...)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines {
		if time.Now().After(deadline) {
			fail("%d goroutines (baseline %d)", runtime.NumGoroutine(), goroutines)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if _, s := openFDs(t); s > sockets {
		fail("%d sockets open (baseline %d)", s, sockets)
	}
	for {
		runtime.GC()
		f, _ := openFDs(t)
		if f <= fds {
			return
		}
		if time.Now().After(deadline) {
			fail("%d fds (baseline %d)", f, fds)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// TestSoak runs 10,000 short connections and 100 long ones through one proxy,
// then checks that nothing leaked: descriptors, goroutines, live counters.
func TestSoak(t *testing.T) {
	testenv.SkipIfShort(t, "soak test")
	const (
		short   = 10_000
		long    = 100
		workers = 32
	)
	// Warm up the network poller so that its descriptors are in the baseline.
	if err := warmUp(); err != nil {
		t.Fatal(err)
	}
	baseFDs, baseSockets := openFDs(t)
	baseG := runtime.NumGoroutine()
	start := time.Now()

	func() {
		srvLn, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
		if err != nil {
			t.Fatal(err)
		}
		var srvWG sync.WaitGroup
		srvWG.Go(func() {
			for {
				c, err := srvLn.AcceptTCP()
				if err != nil {
					return
				}
				srvWG.Go(func() {
					defer c.Close()
					echo(c)
				})
			}
		})
		defer func() { srvLn.Close(); srvWG.Wait() }()

		p, err := NewProxy(ProxyConfig{Listen: netip.AddrPortFrom(lo4, 0), Target: srvLn.Addr().String()})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		addr := p.Addr().String()

		// 100 long connections, each checking its echoes while the short ones run.
		stopLong := make(chan struct{})
		var longWG sync.WaitGroup
		var longErr atomic.Value
		var longRounds atomic.Int64
		for i := range long {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			longWG.Go(func() {
				defer c.Close()
				msg := make([]byte, 512+i)
				got := make([]byte, len(msg))
				for round := 0; ; round++ {
					select {
					case <-stopLong:
						return
					default:
					}
					for j := range msg {
						msg[j] = byte(i + round + j)
					}
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write(msg); err != nil {
						longErr.Store(fmt.Errorf("long %d write: %w", i, err))
						return
					}
					if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
						longErr.Store(fmt.Errorf("long %d round %d: echo mismatch or %v", i, round, err))
						return
					}
					longRounds.Add(1)
					time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond) // paces a long connection's rounds
				}
			})
		}
		waitFor(t, 5*time.Second, "100 long connections live", func() bool { return p.Stats().Connections >= long })

		// 10,000 short ones: most echo a message and close cleanly; some close
		// without reading, some reset.
		jobs := make(chan int)
		var shortWG sync.WaitGroup
		var shortErr atomic.Value
		for range workers {
			shortWG.Go(func() {
				for i := range jobs {
					if err := shortConn(addr, i); err != nil {
						shortErr.Store(err)
					}
				}
			})
		}
		for i := range short {
			jobs <- i
		}
		close(jobs)
		shortWG.Wait()
		close(stopLong)
		longWG.Wait()
		if err, _ := shortErr.Load().(error); err != nil {
			t.Error(err)
		}
		if err, _ := longErr.Load().(error); err != nil {
			t.Error(err)
		}
		waitFor(t, 5*time.Second, "every connection released", func() bool { return p.Stats().Connections == 0 })
		s := p.Stats()
		if s.Total != short+long || s.Failed != 0 || s.Refused != 0 {
			t.Errorf("Stats() = %+v, want Total %d and no failures", s, short+long)
		}
		if n := p.closes.Load(); n != 2*s.Total {
			t.Errorf("%d sockets closed for %d connections, want each client and target closed once (%d)", n, s.Total, 2*s.Total)
		}
		t.Logf("%d short + %d long connections (%d long round trips) in %v; %+v", short, long, longRounds.Load(), time.Since(start).Round(time.Millisecond), s)
	}()

	settle(t, baseFDs, baseSockets, baseG)
}

// shortConn makes one short connection through addr; i picks how it ends.
func shortConn(addr string, i int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("short %d: %w", i, err)
	}
	tc := c.(*net.TCPConn)
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	msg := fmt.Appendf(nil, "short connection %d", i)
	if _, err := tc.Write(msg); err != nil {
		return fmt.Errorf("short %d write: %w", i, err)
	}
	switch i % 10 {
	case 7: // hang up without reading
		return nil
	case 8: // reset
		_ = tc.SetLinger(0)
		return nil
	}
	_ = tc.CloseWrite()
	got, err := io.ReadAll(tc)
	if err != nil || !bytes.Equal(got, msg) {
		return fmt.Errorf("short %d: got %q, %v; want %q", i, got, err, msg)
	}
	return nil
}

// warmUp makes one loopback TCP connection so that the runtime's network poller
// exists.
func warmUp() error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	s, err := ln.Accept()
	if err == nil {
		s.Close()
	}
	c.Close()
	return err
}
