package netmgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of ProxyConfig.
const (
	// DefaultTCPIdleTimeout closes a TCP connection idle this long.
	DefaultTCPIdleTimeout = time.Hour
	// DefaultUDPIdleTimeout forgets a UDP flow idle this long.
	DefaultUDPIdleTimeout = 60 * time.Second
	// DefaultDialTimeout bounds connecting to the target.
	DefaultDialTimeout = 10 * time.Second
	// DefaultMaxTCPConns caps live TCP connections per proxy.
	DefaultMaxTCPConns = 8192
	// DefaultMaxUDPFlows caps live UDP flows per proxy.
	DefaultMaxUDPFlows = 1024
)

// countInterval is how often a busy TCP connection publishes the bytes it has
// moved, so that Stats is live while data flows. It is the read deadline each
// copy loop re-arms; a deadline does not stop splice(2) from being used.
const countInterval = time.Second

// maxDatagram is the largest UDP payload.
const maxDatagram = 64 << 10

// ProxyConfig says what a Proxy listens on and where it forwards to.
type ProxyConfig struct {
	// Proto is "tcp" or "udp". Default "tcp".
	Proto string
	// Listen is the address and port to listen on. The socket takes only the
	// address's family: [::] does not accept IPv4 clients, so a port exposed on
	// both families takes two proxies. Port 0 picks a free port (see Addr).
	Listen netip.AddrPort
	// Target is the host:port each client (TCP) or flow (UDP) is forwarded to.
	// Required unless Dial is set.
	Target string
	// Dial, when set, opens the connection to the target instead of dialing
	// Target; version 2 uses it to reach a guest port through the agent.
	// For TCP, half-close is passed on when the conn has CloseWrite, and data
	// between two *net.TCPConn moves with splice(2) (anything else is copied
	// in user space). For UDP, Dial opens one client's flow: each Write on
	// the conn must carry one datagram and each Read return one.
	Dial func(ctx context.Context) (net.Conn, error)
	// Allow lists the source prefixes that may connect; empty allows every source.
	// A refused TCP client is reset at once and the target is never dialed; a
	// refused UDP datagram is dropped.
	Allow []netip.Prefix
	// IdleTimeout closes a TCP connection, or forgets a UDP flow, that has moved
	// no byte in either direction for this long. Default 1 h for TCP
	// (DefaultTCPIdleTimeout) and 60 s for UDP (DefaultUDPIdleTimeout); negative
	// means never.
	IdleTimeout time.Duration
	// DialTimeout bounds connecting to the target. Default 10 s.
	DialTimeout time.Duration
	// MaxConns caps live TCP connections or UDP flows; clients beyond it are
	// refused like those outside Allow. Default 8192 for TCP, 1024 for UDP (each
	// UDP flow holds a 64 KiB buffer and a socket).
	MaxConns int
	// Logger receives per-proxy events at Info and per-connection ones at Debug.
	// Default slog.Default().
	Logger *slog.Logger
}

// Stats are the live counters of a Proxy.
type Stats struct {
	// Connections is the number of live TCP connections or UDP flows.
	Connections int64 `json:"connections"`
	// Total counts the connections or flows admitted since the proxy started.
	Total int64 `json:"total"`
	// Refused counts clients refused by Allow or MaxConns (UDP: datagrams).
	Refused int64 `json:"refused"`
	// Failed counts clients (TCP) or new flows (UDP) whose target could not be
	// reached.
	Failed int64 `json:"failed"`
	// BytesIn counts payload bytes from clients to the target; BytesOut from
	// the target back to clients. A busy TCP connection publishes its bytes
	// every second and when it ends.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
}

// Add returns the sum of s and o.
func (s Stats) Add(o Stats) Stats {
	return Stats{
		Connections: s.Connections + o.Connections,
		Total:       s.Total + o.Total,
		Refused:     s.Refused + o.Refused,
		Failed:      s.Failed + o.Failed,
		BytesIn:     s.BytesIn + o.BytesIn,
		BytesOut:    s.BytesOut + o.BytesOut,
	}
}

// Proxy forwards TCP connections or UDP flows from a listening socket to a
// target. It owns every goroutine it starts; Close stops them all.
type Proxy struct {
	cfg   ProxyConfig
	log   *slog.Logger
	addr  netip.AddrPort
	ln    *net.TCPListener
	pc    *net.UDPConn
	oob   bool // UDP: the socket reports each datagram's local address (wildcard listen)
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	once  sync.Once
	idle  time.Duration // 0: none
	count time.Duration // TCP read deadline period

	mu     sync.Mutex
	closed bool
	conns  map[*tcpConn]struct{}
	flows  map[netip.AddrPort]*udpFlow

	live, total, refused, failed, in, out atomic.Int64
	// closes counts TCP sockets closed (client and target), for the tests'
	// exactly-once check.
	closes atomic.Int64
}

// NewProxy binds cfg.Listen and starts forwarding until Close. A taken address
// gives a *PortInUseError (errors.Is ErrPortInUse) naming the holder when it can
// be found. The socket never uses SO_REUSEPORT, so a port is never shared.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Proto == "" {
		cfg.Proto = TCP
	}
	if cfg.Proto != TCP && cfg.Proto != UDP {
		return nil, fmt.Errorf("%w: protocol %q: want tcp or udp", ErrInvalid, cfg.Proto)
	}
	if !cfg.Listen.Addr().IsValid() {
		return nil, fmt.Errorf("%w: no listen address", ErrInvalid)
	}
	cfg.Listen = netip.AddrPortFrom(cfg.Listen.Addr().Unmap(), cfg.Listen.Port())
	if cfg.Target == "" && cfg.Dial == nil {
		return nil, fmt.Errorf("%w: no target", ErrInvalid)
	}
	for i, pfx := range cfg.Allow {
		if !pfx.IsValid() {
			return nil, fmt.Errorf("%w: allow prefix %d is not valid", ErrInvalid, i)
		}
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxTCPConns
		if cfg.Proto == UDP {
			cfg.MaxConns = DefaultMaxUDPFlows
		}
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, count: countInterval}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.log = p.log.With("proto", cfg.Proto, "listen", cfg.Listen.String(), "target", cfg.Target)
	switch {
	case cfg.IdleTimeout > 0:
		p.idle = cfg.IdleTimeout
	case cfg.IdleTimeout == 0 && cfg.Proto == TCP:
		p.idle = DefaultTCPIdleTimeout
	case cfg.IdleTimeout == 0:
		p.idle = DefaultUDPIdleTimeout
	}
	if p.idle > 0 && p.idle/2 < p.count {
		p.count = max(p.idle/2, time.Millisecond)
	}
	family := "4"
	if cfg.Listen.Addr().Is6() {
		family = "6"
	}
	var err error
	if cfg.Proto == TCP {
		// No TCP keepalive: the idle timeout ends dead connections, and the
		// four setsockopt calls per connection it costs are a tenth of the
		// work of accepting one.
		lc := net.ListenConfig{KeepAlive: -1}
		var ln net.Listener
		ln, err = lc.Listen(context.Background(), "tcp"+family, cfg.Listen.String())
		if err == nil {
			p.ln = ln.(*net.TCPListener)
		}
	} else {
		p.pc, err = net.ListenUDP("udp"+family, net.UDPAddrFromAddrPort(cfg.Listen))
	}
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, portInUse(cfg.Proto, cfg.Listen, err)
		}
		return nil, fmt.Errorf("listen %s %s: %w", cfg.Proto, cfg.Listen, err)
	}
	p.ctx, p.stop = context.WithCancel(context.Background())
	if cfg.Proto == TCP {
		p.addr = p.ln.Addr().(*net.TCPAddr).AddrPort()
	} else {
		p.addr = p.pc.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	p.addr = netip.AddrPortFrom(p.addr.Addr().Unmap(), p.addr.Port())
	if cfg.Proto == TCP {
		p.conns = make(map[*tcpConn]struct{})
		p.wg.Add(1)
		go p.acceptLoop()
	} else {
		p.flows = make(map[netip.AddrPort]*udpFlow)
		if cfg.Listen.Addr().IsUnspecified() {
			// Reply from the address each datagram came to, not the one the
			// routing table picks: a client that sent to 127.0.0.2 or to the
			// second address of an interface must see the reply come from it.
			if err := enablePktinfo(p.pc, cfg.Listen.Addr().Is6()); err == nil {
				p.oob = true
			} else {
				p.log.Debug("no per-datagram local address; replies use the routing table's", "err", err)
			}
		}
		p.wg.Add(1)
		go p.udpLoop()
	}
	if p.idle > 0 {
		p.wg.Add(1)
		go p.janitor()
	}
	p.log.Debug("proxy listening", "addr", p.addr.String())
	return p, nil
}

// Addr is the address the proxy listens on, with the port it got.
func (p *Proxy) Addr() netip.AddrPort { return p.addr }

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Connections: p.live.Load(),
		Total:       p.total.Load(),
		Refused:     p.refused.Load(),
		Failed:      p.failed.Load(),
		BytesIn:     p.in.Load(),
		BytesOut:    p.out.Load(),
	}
}

// Close stops the listener, cuts every live connection and flow, and waits for
// the proxy's goroutines; it returns within a few milliseconds of the last
// socket closing. Calling it again does nothing.
func (p *Proxy) Close() error {
	var err error
	p.once.Do(func() {
		p.stop()
		p.mu.Lock()
		p.closed = true
		conns := make([]*tcpConn, 0, len(p.conns))
		for c := range p.conns {
			conns = append(conns, c)
		}
		flows := make([]*udpFlow, 0, len(p.flows))
		for _, f := range p.flows {
			flows = append(flows, f)
		}
		p.mu.Unlock()
		if p.ln != nil {
			err = p.ln.Close()
		} else {
			err = p.pc.Close()
		}
		for _, c := range conns {
			c.close(false)
		}
		for _, f := range flows {
			p.dropFlow(f)
		}
	})
	p.wg.Wait()
	return err
}

// allowed reports whether a client at a may use the proxy.
func (p *Proxy) allowed(a netip.Addr) bool {
	if len(p.cfg.Allow) == 0 {
		return true
	}
	a = a.Unmap().WithZone("")
	for _, pfx := range p.cfg.Allow {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// janitor closes TCP connections and forgets UDP flows that have been idle for
// p.idle.
func (p *Proxy) janitor() {
	defer p.wg.Done()
	t := time.NewTicker(min(max(p.idle/4, 5*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			cut := now.Add(-p.idle).UnixNano()
			var conns []*tcpConn
			var flows []*udpFlow
			p.mu.Lock()
			for c := range p.conns {
				if c.last.Load() < cut {
					conns = append(conns, c)
				}
			}
			for _, f := range p.flows {
				if f.last.Load() < cut {
					flows = append(flows, f)
				}
			}
			p.mu.Unlock()
			for _, c := range conns {
				p.log.Debug("idle connection closed", "client", c.client.RemoteAddr().String())
				c.close(false)
			}
			for _, f := range flows {
				p.log.Debug("idle flow expired", "client", f.client.String())
				p.dropFlow(f)
			}
		}
	}
}

// --- TCP ---

// tcpConn is one client connection and its target connection. Each of the two
// is closed exactly once, by close (or, for a target dialed after close, by
// setTarget's caller).
type tcpConn struct {
	p      *Proxy
	client *net.TCPConn
	last   atomic.Int64 // unix nanoseconds of the last byte moved

	mu     sync.Mutex
	target net.Conn
	closed bool
}

// setTarget records the target connection; false means the connection was
// closed meanwhile and the caller must close t.
func (c *tcpConn) setTarget(t net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.target = t
	return true
}

func (c *tcpConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// close closes both sides once; reset sends RST instead of FIN, so a reset on
// one side reaches the other.
func (c *tcpConn) close(reset bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	t := c.target
	c.mu.Unlock()
	if reset {
		_ = c.client.SetLinger(0)
		if tc, ok := t.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	_ = c.client.Close()
	c.p.closes.Add(1)
	if t != nil {
		_ = t.Close()
		c.p.closes.Add(1)
	}
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		client, err := p.ln.AcceptTCP()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or memory: wait and try again, like net/http.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-p.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		src := client.RemoteAddr().(*net.TCPAddr).AddrPort()
		c := &tcpConn{p: p, client: client}
		c.last.Store(time.Now().UnixNano())
		if !p.allowed(src.Addr()) || !p.track(c) {
			p.refused.Add(1)
			p.log.Debug("client refused", "client", src.String())
			c.close(true)
			continue
		}
		p.wg.Add(1)
		go p.serveTCP(c)
	}
}

// track registers a new connection; false when the proxy is closed or full.
func (p *Proxy) track(c *tcpConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.conns) >= p.cfg.MaxConns {
		return false
	}
	p.conns[c] = struct{}{}
	p.live.Add(1)
	p.total.Add(1)
	return true
}

func (p *Proxy) untrack(c *tcpConn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	p.live.Add(-1)
}

func (p *Proxy) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	if p.cfg.Dial != nil {
		return p.cfg.Dial(ctx)
	}
	d := net.Dialer{KeepAlive: -1}
	return d.DialContext(ctx, "tcp", p.cfg.Target)
}

// serveTCP dials the target at once (a server that speaks first must reach the
// client without waiting for it), then copies both ways until both are done.
func (p *Proxy) serveTCP(c *tcpConn) {
	defer p.wg.Done()
	defer p.untrack(c)
	t, err := p.dial(p.ctx)
	if err != nil {
		if p.ctx.Err() == nil {
			p.failed.Add(1)
			p.log.Debug("target unreachable", "client", c.client.RemoteAddr().String(), "err", err)
		}
		c.close(true) // the client sees a reset, as if the port were closed
		return
	}
	if !c.setTarget(t) {
		_ = t.Close()
		p.closes.Add(1)
		return
	}
	c.last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(done)
		p.pipe(c, c.client, t, &p.out)
	}()
	p.pipe(c, t, c.client, &p.in)
	<-done
	c.close(false)
}

// pipe copies src to dst until src ends. Between two *net.TCPConn, io.Copy
// uses splice(2). The read deadline is re-armed every p.count so that the bytes
// moved are counted while the copy runs; it does not end the copy. At EOF the
// write side of dst is shut (half-close passes through); on any error both
// connections are closed, which ends the other direction too.
func (p *Proxy) pipe(c *tcpConn, dst, src net.Conn, counter *atomic.Int64) {
	for {
		deadline := src.SetReadDeadline(time.Now().Add(p.count)) == nil
		n, err := io.Copy(dst, src)
		if n > 0 {
			counter.Add(n)
			c.last.Store(time.Now().UnixNano())
		}
		switch {
		case err == nil: // EOF from src
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			return
		case deadline && isTimeout(err) && !c.isClosed():
			continue
		default:
			// A target dialled without waiting for its answer (Dial, version
			// 2) reports a refusal here, as ECONNREFUSED: the client sees a
			// reset, as when a dial fails before the copy.
			refused := errors.Is(err, syscall.ECONNREFUSED)
			if refused {
				p.failed.Add(1)
			}
			reset := errors.Is(err, syscall.ECONNRESET) || refused
			if reset && !c.isClosed() {
				p.log.Debug("connection reset", "client", c.client.RemoteAddr().String())
			}
			c.close(reset)
			return
		}
	}
}

// --- UDP ---

// udpFlow is one client address and the connected socket that carries its
// datagrams to the target and brings the replies back.
type udpFlow struct {
	client netip.AddrPort
	conn   net.Conn // a *net.UDPConn, or a datagram conn from ProxyConfig.Dial
	oob    []byte   // control message that makes replies leave from the address the client used
	last   atomic.Int64
	once   sync.Once
}

func (p *Proxy) udpLoop() {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	var oob []byte
	if p.oob {
		oob = make([]byte, 256)
	}
	for {
		n, oobn, _, src, err := p.pc.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Debug("udp read", "err", err)
			select {
			case <-time.After(5 * time.Millisecond):
			case <-p.ctx.Done():
				return
			}
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if !p.allowed(src.Addr()) {
			p.refused.Add(1)
			continue
		}
		f := p.flow(src, oob[:oobn])
		if f == nil {
			continue
		}
		f.last.Store(time.Now().UnixNano())
		_, err = f.conn.Write(buf[:n])
		if errors.Is(err, syscall.ECONNREFUSED) {
			// The error of an earlier datagram (ICMP port unreachable) is
			// reported once, instead of sending this one: send it again.
			_, err = f.conn.Write(buf[:n])
		}
		if err != nil {
			p.log.Debug("udp send to target", "client", src.String(), "err", err)
			continue
		}
		p.in.Add(int64(n))
	}
}

// flow returns the flow of client src, opening it if it is new; nil when the
// client is refused or the target cannot be reached. Only udpLoop calls it, so
// a flow is never opened twice.
func (p *Proxy) flow(src netip.AddrPort, oob []byte) *udpFlow {
	p.mu.Lock()
	f := p.flows[src]
	full := len(p.flows) >= p.cfg.MaxConns
	p.mu.Unlock()
	if f != nil {
		return f
	}
	if full {
		p.refused.Add(1)
		return nil
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.DialTimeout)
	var conn net.Conn
	var err error
	if p.cfg.Dial != nil {
		conn, err = p.cfg.Dial(ctx)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "udp", p.cfg.Target)
	}
	cancel()
	if err != nil {
		if p.ctx.Err() == nil {
			p.failed.Add(1)
			p.log.Debug("target unreachable", "client", src.String(), "err", err)
		}
		return nil
	}
	f = &udpFlow{client: src, conn: conn}
	if p.oob {
		f.oob = replyOOB(oob, p.addr.Addr().Is6())
	}
	f.last.Store(time.Now().UnixNano())
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = conn.Close()
		return nil
	}
	p.flows[src] = f
	p.live.Add(1)
	p.total.Add(1)
	p.wg.Add(1)
	p.mu.Unlock()
	go p.udpReplies(f)
	return f
}

// udpReplies sends what the target answers on f back to f's client.
func (p *Proxy) udpReplies(f *udpFlow) {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, err := f.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // the target's port is closed now; it may open again
			}
			p.log.Debug("udp read from target", "client", f.client.String(), "err", err)
			p.dropFlow(f)
			return
		}
		f.last.Store(time.Now().UnixNano())
		if _, _, err := p.pc.WriteMsgUDPAddrPort(buf[:n], f.oob, f.client); err != nil {
			p.log.Debug("udp reply to client", "client", f.client.String(), "err", err)
			continue
		}
		p.out.Add(int64(n))
	}
}

// dropFlow forgets f and closes its socket, once.
func (p *Proxy) dropFlow(f *udpFlow) {
	f.once.Do(func() {
		p.mu.Lock()
		if p.flows[f.client] == f {
			delete(p.flows, f.client)
		}
		p.mu.Unlock()
		p.live.Add(-1)
		_ = f.conn.Close()
	})
}

// isTimeout says whether err is a read deadline's expiry: os.ErrDeadlineExceeded
// for the kernel's sockets, a net.Error that says Timeout for others (a yamux
// stream, the path to a version 2 distro).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
