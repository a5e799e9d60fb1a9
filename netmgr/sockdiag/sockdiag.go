// Package sockdiag lists, attributes and aborts the sockets of a network
// namespace with NETLINK_SOCK_DIAG: the listening sockets the network
// manager exposes (version 1, on the host) and the VM's agent reports
// (version 2, in the VM), and the connections a port's new setting cuts.
// The request builders and parsers are plain Go, tested and fuzzed on every
// platform; the netlink calls are Linux's. It imports nothing of subsys.
package sockdiag

// This file builds NETLINK_SOCK_DIAG inet_diag requests and parses the answers,
// in plain Go so that it is tested (and fuzzed) on every platform. The layouts
// are those of <linux/netlink.h> and <linux/inet_diag.h>; netlink headers are in
// the host's byte order, ports and addresses in network byte order.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
)

// TCP states that callers compare Socket.State with (UDP reports
// StateClose unconnected and StateEstablished connected).
const (
	StateEstablished = tcpEstab
	StateClose       = tcpClose
	StateListen      = tcpListen
)

// ParseComm reads /proc/PID/comm's content as the process name.
func ParseComm(b []byte) string { return parseComm(b) }

// The protocols, as Socket.Proto names them.
const (
	tcp = "tcp"
	udp = "udp"
)

// ErrInvalid is returned for a socket that cannot be named in a request
// (DestroySockets).
var ErrInvalid = errors.New("invalid socket")

// Netlink and inet_diag constants.
const (
	nlmsgHdrLen      = 16
	nlmsgNoop        = 1
	nlmsgError       = 2
	nlmsgDone        = 3
	nlmsgOverrun     = 4
	nlmFRequest      = 0x1
	nlmFDumpIntr     = 0x10
	nlmFDump         = 0x300 // NLM_F_ROOT|NLM_F_MATCH
	sockDiagByFamily = 20
	sockDestroy      = 21
	nlmFAck          = 0x4

	afInet       = 2
	afInet6      = 10
	ipprotoTCP   = 6
	ipprotoUDP   = 17
	tcpEstab     = 1
	tcpSynRecv   = 3
	tcpFinWait1  = 4
	tcpFinWait2  = 5
	tcpClose     = 7
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpListen    = 10
	tcpClosing   = 11
	diagReqLen   = 56 // struct inet_diag_req_v2
	diagMsgLen   = 72 // struct inet_diag_msg
	sockIDLen    = 48 // struct inet_diag_sockid

	// diagNoCookie in both halves of idiag_cookie: match any socket.
	diagNoCookie = 0xffffffff
)

// connStates are the TCP states Connections reports: a connection a user
// would call live — handshake done or under way on our side of a listener
// (SYN_RECV, which also covers request sockets), open, or closing with a
// peer still there. SYN_SENT (an outgoing attempt), TIME_WAIT (nothing left
// to abort), CLOSE and LISTEN are left out.
const connStates = 1<<tcpEstab | 1<<tcpSynRecv | 1<<tcpFinWait1 | 1<<tcpFinWait2 |
	1<<tcpCloseWait | 1<<tcpLastAck | 1<<tcpClosing

// Socket is one socket of a sock_diag dump.
type Socket struct {
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// State is the kernel's TCP state number (UDP uses 7, TCP_CLOSE, when
	// unconnected and 1, TCP_ESTABLISHED, when connected).
	State uint8 `json:"state"`
	// Local is the bound address and port; an IPv4-mapped IPv6 address is
	// reported as IPv4.
	Local netip.AddrPort `json:"local"`
	// Remote is the peer, or the zero address and port 0 when there is none.
	Remote netip.AddrPort `json:"remote"`
	// IfIndex is the interface the socket is bound to (SO_BINDTODEVICE or a
	// link-local scope), 0 for none.
	IfIndex uint32 `json:"ifindex"`
	// UID owns the socket; Inode names it in /proc/PID/fd ("socket:[Inode]").
	UID   uint32 `json:"uid"`
	Inode uint64 `json:"inode"`
	// Cookie is the kernel's identifier of the socket, unique while the
	// system runs: DestroySockets uses it to make sure it aborts this socket
	// and not a newer one with the same addresses. 0 means unknown.
	Cookie uint64 `json:"cookie"`
}

// Listening reports whether s waits for clients: TCP in LISTEN, or UDP bound to
// a port and not connected.
func (s Socket) Listening() bool {
	switch s.Proto {
	case "tcp":
		return s.State == tcpListen
	case "udp":
		return s.State == tcpClose && s.Remote.Port() == 0 && s.Local.Port() != 0
	}
	return false
}

// diagRequest builds the SOCK_DIAG_BY_FAMILY dump request for one address
// family (afInet, afInet6) and protocol (ipprotoTCP, ipprotoUDP), keeping the
// sockets whose state bit is set in states (1<<tcpListen, …).
func diagRequest(seq uint32, family, proto uint8, states uint32) []byte {
	b := make([]byte, nlmsgHdrLen+diagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], nlmFRequest|nlmFDump)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], 0) // port id: the kernel fills it in
	r := b[nlmsgHdrLen:]
	r[0] = family
	r[1] = proto
	r[2] = 0 // no extensions
	ne.PutUint32(r[4:], states)
	// The socket id stays zero: a dump matches every socket; the cookie must be
	// INET_DIAG_NOCOOKIE (all ones) only for exact lookups.
	return b
}

// destroyRequest builds the SOCK_DESTROY request for s: an exact lookup by
// protocol, both addresses and ports, interface and cookie (any socket with
// those addresses when s.Cookie is 0). The kernel acknowledges it (flag
// NLM_F_ACK) with 0 or an errno; see parseAck.
func destroyRequest(seq uint32, s Socket) ([]byte, error) {
	var proto uint8
	switch s.Proto {
	case "tcp":
		proto = ipprotoTCP
	case "udp":
		proto = ipprotoUDP
	default:
		return nil, fmt.Errorf("destroy socket: protocol %q: %w", s.Proto, ErrInvalid)
	}
	local, remote := s.Local.Addr(), s.Remote.Addr()
	if !local.IsValid() || !remote.IsValid() {
		return nil, fmt.Errorf("destroy socket %s %v-%v: missing address: %w", s.Proto, s.Local, s.Remote, ErrInvalid)
	}
	// Socket reports an IPv4-mapped address as IPv4, so a dual-stack socket
	// that talks to an IPv4 peer looks like an IPv4 socket. Asking in AF_INET
	// finds it all the same: the kernel hashes such sockets by their IPv4
	// addresses, and looks both families up there.
	family := uint8(afInet6)
	if local.Is4() && remote.Is4() {
		family = afInet
	}
	b := make([]byte, nlmsgHdrLen+diagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDestroy)
	ne.PutUint16(b[6:], nlmFRequest|nlmFAck)
	ne.PutUint32(b[8:], seq)
	r := b[nlmsgHdrLen:]
	r[0] = family
	r[1] = proto
	ne.PutUint32(r[4:], 0xffffffff) // states: ignored by exact requests
	id := r[8 : 8+sockIDLen]
	binary.BigEndian.PutUint16(id[0:], s.Local.Port())
	binary.BigEndian.PutUint16(id[2:], s.Remote.Port())
	putDiagAddr(id[4:20], family, local)
	putDiagAddr(id[20:36], family, remote)
	ne.PutUint32(id[36:], s.IfIndex)
	lo, hi := uint32(s.Cookie), uint32(s.Cookie>>32)
	if s.Cookie == 0 {
		lo, hi = diagNoCookie, diagNoCookie
	}
	ne.PutUint32(id[40:], lo)
	ne.PutUint32(id[44:], hi)
	return b, nil
}

// putDiagAddr writes a into a 16-byte inet_diag_sockid address field: 4
// bytes for afInet, else 16 (an IPv4 address IPv4-mapped).
func putDiagAddr(dst []byte, family uint8, a netip.Addr) {
	if family == afInet {
		a4 := a.As4()
		copy(dst, a4[:])
		return
	}
	a16 := a.As16()
	copy(dst, a16[:])
}

// parseAck looks in one buffer received after a request with the
// acknowledgement flag for the NLMSG_ERROR that answers sequence number seq:
// found says whether it was there, errno is its error (0 for success).
// Messages of other numbers are skipped; err reports malformed input.
func parseAck(b []byte, seq uint32) (found bool, errno syscall.Errno, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return false, 0, fmt.Errorf("sock_diag: %d bytes left, short of a netlink header", len(b))
		}
		n := ne.Uint32(b[0:])
		if n < nlmsgHdrLen || uint64(n) > uint64(len(b)) {
			return false, 0, fmt.Errorf("sock_diag: message length %d out of range (%d bytes left)", n, len(b))
		}
		typ, mseq := ne.Uint16(b[4:]), ne.Uint32(b[8:])
		body := b[nlmsgHdrLen:n]
		b = b[min((uint64(n)+3)&^3, uint64(len(b))):]
		if mseq != seq || typ != nlmsgError {
			continue
		}
		if len(body) < 4 {
			return false, 0, fmt.Errorf("sock_diag: short error message (%d bytes)", len(body))
		}
		code := int64(int32(ne.Uint32(body)))
		return true, syscall.Errno(max(code, -code)), nil
	}
	return false, 0, nil
}

// diagDump collects the answer to one dump request, buffer by buffer.
type diagDump struct {
	seq   uint32 // of the request; messages of other numbers are skipped
	proto string // "tcp" or "udp": the answer does not say
	socks []Socket
	// done: NLMSG_DONE was seen. interrupted: a message carried
	// NLM_F_DUMP_INTR (the socket tables changed during the dump), so the
	// answer may lack sockets or hold some twice and the dump must be run again
	// once this one is done.
	done, interrupted bool
}

// parse reads one buffer received from a sock_diag dump. A message of another
// sequence number is skipped (a late answer to an earlier request). Errors are
// an NLMSG_ERROR from the kernel (as a syscall.Errno) or malformed input.
func (d *diagDump) parse(b []byte) error {
	ne := binary.NativeEndian
	for len(b) > 0 && !d.done {
		if len(b) < nlmsgHdrLen {
			return fmt.Errorf("sock_diag: %d bytes left, short of a netlink header", len(b))
		}
		n := ne.Uint32(b[0:])
		typ := ne.Uint16(b[4:])
		flags := ne.Uint16(b[6:])
		seq := ne.Uint32(b[8:])
		if n < nlmsgHdrLen || uint64(n) > uint64(len(b)) {
			return fmt.Errorf("sock_diag: message length %d out of range (%d bytes left)", n, len(b))
		}
		body := b[nlmsgHdrLen:n]
		// Messages are padded to 4 bytes; the last one may lack its padding.
		b = b[min((uint64(n)+3)&^3, uint64(len(b))):]
		if seq != d.seq {
			continue
		}
		if flags&nlmFDumpIntr != 0 {
			d.interrupted = true
		}
		switch typ {
		case nlmsgNoop:
		case nlmsgDone:
			d.done = true
			// The payload, when there is one, is an int: 0 or -errno.
			if len(body) >= 4 {
				if code := int32(ne.Uint32(body)); code < 0 {
					return fmt.Errorf("sock_diag dump: %w", syscall.Errno(-int64(code)))
				}
			}
		case nlmsgError:
			if len(body) < 4 {
				return fmt.Errorf("sock_diag: short error message (%d bytes)", len(body))
			}
			code := int64(int32(ne.Uint32(body)))
			if code == 0 {
				continue // an acknowledgement
			}
			return fmt.Errorf("sock_diag: %w", syscall.Errno(max(code, -code)))
		case nlmsgOverrun:
			return errors.New("sock_diag: netlink overrun")
		case sockDiagByFamily:
			s, err := parseDiagMsg(body, d.proto)
			if err != nil {
				return err
			}
			d.socks = append(d.socks, s)
		default:
			return fmt.Errorf("sock_diag: unexpected message type %d", typ)
		}
	}
	return nil
}

// parseDiagMsg parses one struct inet_diag_msg; the attributes after it are not
// needed and are ignored.
func parseDiagMsg(b []byte, proto string) (Socket, error) {
	if len(b) < diagMsgLen {
		return Socket{}, fmt.Errorf("sock_diag: inet_diag_msg of %d bytes, want %d", len(b), diagMsgLen)
	}
	ne := binary.NativeEndian
	family := b[0]
	if family != afInet && family != afInet6 {
		return Socket{}, fmt.Errorf("sock_diag: address family %d", family)
	}
	id := b[4 : 4+sockIDLen]
	sport := binary.BigEndian.Uint16(id[0:])
	dport := binary.BigEndian.Uint16(id[2:])
	src := diagAddr(family, id[4:20])
	dst := diagAddr(family, id[20:36])
	s := Socket{
		Proto:   proto,
		State:   b[1],
		Local:   netip.AddrPortFrom(src, sport),
		Remote:  netip.AddrPortFrom(dst, dport),
		IfIndex: ne.Uint32(id[36:]),
		UID:     ne.Uint32(b[64:]),
		Inode:   uint64(ne.Uint32(b[68:])),
		// idiag_cookie is two host-order u32s, low half first.
		Cookie: uint64(ne.Uint32(id[40:])) | uint64(ne.Uint32(id[44:]))<<32,
	}
	return s, nil
}

// diagAddr reads an address of inet_diag_sockid (16 bytes; IPv4 uses the first 4)
// and reports an IPv4-mapped IPv6 address as IPv4.
func diagAddr(family uint8, b []byte) netip.Addr {
	if family == afInet {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b[:16])).Unmap()
}

// parseSocketLink returns the inode of a /proc/PID/fd link that reads
// "socket:[12345]".
func parseSocketLink(s string) (uint64, bool) {
	rest, ok := strings.CutPrefix(s, "socket:[")
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// parseComm trims the newline off /proc/PID/comm.
func parseComm(b []byte) string {
	return strings.TrimSuffix(string(b), "\n")
}
