package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/yamux"
)

// HostAliasName is the name a version 2 distro reaches the host by, as
// WSL's host.docker.internal-style names: /etc/hosts maps it to the address
// the VM's network gives the host.
const HostAliasName = "host.subsys.internal"

// NetworkConfig is the utility VM's network, which the host sets after the
// VM boots (configure-network): the interface with MAC gets Address4 and a
// default route through Gateway4; IPv6 comes from the network's router
// advertisements (SLAAC). DNS are the name servers every distro's
// resolv.conf lists, and HostAddress is what HostAliasName names.
type NetworkConfig struct {
	MAC         string   `json:"mac"`
	Address4    string   `json:"address4"`
	Gateway4    string   `json:"gateway4"`
	DNS         []string `json:"dns,omitempty"`
	HostAddress string   `json:"host_address,omitempty"`
}

// check validates c: the host sends it, but it becomes files and routes.
func (c NetworkConfig) check() error {
	if _, err := net.ParseMAC(c.MAC); err != nil {
		return fmt.Errorf("%w: network: mac %q: %v", ErrBadRequest, c.MAC, err)
	}
	p, err := netip.ParsePrefix(c.Address4)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("%w: network: address4 %q is not an IPv4 prefix", ErrBadRequest, c.Address4)
	}
	gw, err := netip.ParseAddr(c.Gateway4)
	if err != nil || !gw.Is4() || !p.Contains(gw) {
		return fmt.Errorf("%w: network: gateway4 %q is not an IPv4 address in %s", ErrBadRequest, c.Gateway4, p)
	}
	if len(c.DNS) > 3 {
		return fmt.Errorf("%w: network: at most 3 name servers", ErrBadRequest)
	}
	addrs := c.DNS
	if c.HostAddress != "" {
		addrs = append(addrs[:len(addrs):len(addrs)], c.HostAddress)
	}
	for _, a := range addrs {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("%w: network: %q is not an IP address", ErrBadRequest, a)
		}
	}
	return nil
}

// resolvConf is the VM's /etc/resolv.conf for c, which every distro's agent
// copies at start.
func (c NetworkConfig) resolvConf() []byte {
	var b strings.Builder
	b.WriteString("# The utility VM's name servers, written by subsys.\n")
	for _, d := range c.DNS {
		b.WriteString("nameserver " + d + "\n")
	}
	return []byte(b.String())
}

// ConfigureNetwork sets the VM's network up as cfg says and returns the VM's
// addresses. Only the utility VM's agent answers it.
func (c *Client) ConfigureNetwork(ctx context.Context, cfg NetworkConfig) ([]string, error) {
	st, _, rep, err := c.roundTrip(ctx, request{Op: opConfigureNetwork, Network: &cfg})
	if err != nil {
		return nil, err
	}
	st.Close()
	return rep.Addresses, nil
}

// NetworkAddresses returns the VM's addresses (IPv4 and IPv6, with prefix
// lengths; link-local ones left out).
func (c *Client) NetworkAddresses(ctx context.Context) ([]string, error) {
	st, _, rep, err := c.roundTrip(ctx, request{Op: opNetworkInfo})
	if err != nil {
		return nil, err
	}
	st.Close()
	return rep.Addresses, nil
}

// Listener is a listening socket of a version 2 distro, as the VM's agent
// reports it (listeners).
type Listener struct {
	// Distro is the id of the distro whose process holds the socket.
	Distro string `json:"distro"`
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// Address is the bind address ("0.0.0.0", "::", "127.0.0.1", …).
	Address string `json:"address"`
	Port    uint16 `json:"port"`
	// PID and Process name the holder (in the VM's PID namespace).
	PID     int    `json:"pid"`
	Process string `json:"process"`
}

// Listeners returns the listening sockets of every distro in the VM. Only
// the utility VM's agent answers it.
func (c *Client) Listeners(ctx context.Context) ([]Listener, error) {
	st, _, rep, err := c.roundTrip(ctx, request{Op: opListeners})
	if err != nil {
		return nil, err
	}
	st.Close()
	return rep.Listeners, nil
}

// WatchListeners calls fn with the listening sockets of every distro in the
// VM now and again each time they change (the agent looks a little more
// often than once a second), until ctx ends or the connection does; then it
// returns the reason.
func (c *Client) WatchListeners(ctx context.Context, fn func([]Listener)) error {
	st, br, rep, err := c.roundTrip(ctx, request{Op: opWatchListeners})
	if err != nil {
		return err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	for {
		fn(rep.Listeners)
		rep = reply{}
		if err := readHeader(br, &rep); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watch listeners: %w", err)
		}
		if rep.Error != nil {
			return fmt.Errorf("watch listeners: %s", rep.Error.Message)
		}
	}
}

// Dial connects to address ("127.0.0.1:8080", "[::1]:53") inside the VM over
// network ("tcp" or "udp") and returns the connection, carried by one
// stream. A "udp" connection keeps datagrams whole: each Write sends one and
// each Read returns one (see DatagramConn).
//
// Dial does not wait for the VM's answer: what the caller writes follows the
// request at once, which saves a round trip to the VM on every connection
// (a forwarded port's client usually speaks first). A refused connection
// shows as the first Read's error, and what was written is dropped.
func (c *Client) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	fail := func(err error) (net.Conn, error) {
		if errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %v", ErrDisconnected, err)
		}
		return nil, fmt.Errorf("agent dial: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	st, err := c.sess.OpenStream()
	if err != nil {
		return fail(err)
	}
	if err := writeHeader(st, request{Op: opDial, Net: network, Address: address}); err != nil {
		st.Close()
		return fail(err)
	}
	conn := &dialConn{Conn: st, br: bufio.NewReader(st)}
	if network == "udp" {
		return &DatagramConn{Conn: conn}, nil
	}
	return conn, nil
}

// dialConn is Dial's connection: its first Read takes the VM's answer to the
// dial off the stream before any data. A read that times out part way
// through the answer (the caller's deadline) keeps what came, and the next
// Read goes on from there.
type dialConn struct {
	net.Conn // the stream
	br       *bufio.Reader
	answered bool
	answer   []byte
	err      error // the VM's refusal, for every Read
}

func (c *dialConn) Read(p []byte) (int, error) {
	for !c.answered {
		chunk, err := c.br.ReadSlice('\n')
		c.answer = append(c.answer, chunk...)
		if len(c.answer) > maxHeaderSize {
			c.answered, c.err = true, fmt.Errorf("agent dial: %w: answer exceeds %d bytes", ErrProtocol, maxHeaderSize)
			break
		}
		switch {
		case err == nil:
			c.answered = true
			var rep reply
			if err := json.Unmarshal(c.answer[:len(c.answer)-1], &rep); err != nil {
				c.err = fmt.Errorf("agent dial: %w: bad answer: %v", ErrProtocol, err)
			} else if rep.Error != nil {
				// ECONNREFUSED: a port that could not be reached in the
				// VM is, to the client, a port that refused it.
				c.err = fmt.Errorf("agent dial: %s: %w", rep.Error.Message, syscall.ECONNREFUSED)
			}
			c.answer = nil
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return 0, io.ErrUnexpectedEOF
		default:
			return 0, err // a timeout: the next Read goes on
		}
	}
	if c.err != nil {
		return 0, c.err
	}
	return c.br.Read(p)
}

// maxDatagram is the largest UDP payload a DatagramConn carries.
const maxDatagram = 65535

// DatagramConn carries datagrams over a stream: each is a 2-byte big-endian
// length and that many bytes. Write sends p as one datagram; Read returns
// one datagram (its excess dropped when p is too small, as a UDP socket
// does). It is how a UDP flow of a forwarded port crosses the agent.
type DatagramConn struct {
	net.Conn
	rmu, wmu sync.Mutex
	hdr      [2]byte
}

// Write sends p as one datagram.
func (d *DatagramConn) Write(p []byte) (int, error) {
	if len(p) > maxDatagram {
		return 0, fmt.Errorf("datagram of %d bytes is larger than %d", len(p), maxDatagram)
	}
	frame := make([]byte, 2+len(p))
	binary.BigEndian.PutUint16(frame, uint16(len(p)))
	copy(frame[2:], p)
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if _, err := d.Conn.Write(frame); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Read returns the next datagram.
func (d *DatagramConn) Read(p []byte) (int, error) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if _, err := io.ReadFull(d.Conn, d.hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(d.hdr[:]))
	if n <= len(p) {
		_, err := io.ReadFull(d.Conn, p[:n])
		return n, err
	}
	if _, err := io.ReadFull(d.Conn, p); err != nil {
		return 0, err
	}
	_, err := io.CopyN(io.Discard, d.Conn, int64(n-len(p)))
	return len(p), err
}

// distroOfCgroup names the distro whose cgroup a process is in, from its
// /proc/PID/cgroup as the VM's agent reads it ("0::/distros/ID/…").
func distroOfCgroup(procCgroup string) (string, bool) {
	for _, l := range strings.Split(procCgroup, "\n") {
		path, ok := strings.CutPrefix(l, "0::/distros/")
		if !ok {
			continue
		}
		id, _, _ := strings.Cut(path, "/")
		if validDistroID(id) {
			return id, true
		}
	}
	return "", false
}
