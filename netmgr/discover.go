package netmgr

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/subsys-dev/subsys/netmgr/sockdiag"
)

// Listener is a listening socket (TCP in LISTEN, or unconnected UDP) and the
// process that holds it.
type Listener struct {
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// Address is the bind address (0.0.0.0 or :: for every address); an
	// IPv4-mapped IPv6 address is reported as IPv4.
	Address netip.Addr `json:"address"`
	// Port is the bound port.
	Port uint16 `json:"port"`
	// PID and Process name the process holding the socket (the lowest PID when
	// several share it); 0 and "" when no process could be found (another
	// user's process, read without root).
	PID     int    `json:"pid"`
	Process string `json:"process"`
	// UID owns the socket; Inode names it ("socket:[Inode]" in /proc/PID/fd).
	UID   uint32 `json:"uid"`
	Inode uint64 `json:"inode"`
}

// DiscoverOptions narrow Discover.
type DiscoverOptions struct {
	// PIDNamespace keeps only the sockets held by a process whose
	// /proc/PID/ns/pid link reads this (e.g. "pid:[4026532281]", see
	// PIDNamespace): the processes of one version 1 distro. Empty keeps every
	// socket, attributed or not.
	PIDNamespace string
}

// DiffListeners compares two discoveries: added are in cur and not in prev,
// removed in prev and not in cur. A socket is the same when its protocol,
// address, port and inode are; so a port closed and opened again between two
// scans is reported as removed and added. Both results keep the order of their
// input.
func DiffListeners(prev, cur []Listener) (added, removed []Listener) {
	type key struct {
		proto string
		addr  netip.Addr
		port  uint16
		inode uint64
	}
	k := func(l Listener) key { return key{l.Proto, l.Address, l.Port, l.Inode} }
	in := func(ls []Listener) map[key]bool {
		m := make(map[key]bool, len(ls))
		for _, l := range ls {
			m[k(l)] = true
		}
		return m
	}
	was, is := in(prev), in(cur)
	for _, l := range cur {
		if !was[k(l)] {
			added = append(added, l)
		}
	}
	for _, l := range prev {
		if !is[k(l)] {
			removed = append(removed, l)
		}
	}
	return added, removed
}

// holderOf picks the listener that keeps a socket of proto from binding ap: one
// on the same address, else a wildcard of the same family, else any that could
// overlap. Attributed listeners win ties. nil when none fits.
func holderOf(ls []Listener, proto string, ap netip.AddrPort) *Listener {
	want := ap.Addr().Unmap().WithZone("")
	var best *Listener
	bestScore := 0
	for i := range ls {
		l := &ls[i]
		if l.Proto != proto || l.Port != ap.Port() {
			continue
		}
		have := l.Address.Unmap().WithZone("")
		score := 0
		switch {
		case have == want:
			score = 8
		case have.IsUnspecified() && have.Is4() == want.Is4():
			score = 6
		case want.IsUnspecified() && have.Is4() == want.Is4():
			score = 4
		case have.IsUnspecified(): // [::] without IPV6_V6ONLY takes IPv4 too
			score = 2
		default:
			continue
		}
		if l.PID != 0 {
			score++
		}
		if score > bestScore {
			best, bestScore = l, score
		}
	}
	return best
}

// portInUse builds the error for a bind that failed with EADDRINUSE, naming the
// holder when a sock_diag dump and /proc can find it.
func portInUse(proto string, ap netip.AddrPort, err error) error {
	e := &PortInUseError{Proto: proto, Address: ap, Err: err}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ls, derr := Discover(ctx, DiscoverOptions{}); derr == nil {
		if h := holderOf(ls, proto, ap); h != nil {
			e.Holder = h
			e.PID, e.Process = h.PID, h.Process
		}
	}
	return e
}

// Socket is one socket of a sock_diag dump (package sockdiag).
type Socket = sockdiag.Socket

// ListeningSockets lists the listening sockets of the caller's network
// namespace (sockdiag.ListeningSockets).
func ListeningSockets(ctx context.Context) ([]Socket, error) { return sockdiag.ListeningSockets(ctx) }

// Connections lists the live TCP connections of the caller's network
// namespace (sockdiag.Connections).
func Connections(ctx context.Context) ([]Socket, error) { return sockdiag.Connections(ctx) }

// DestroySockets aborts socks (sockdiag.DestroySockets).
func DestroySockets(ctx context.Context, socks []Socket) (int, error) {
	return sockdiag.DestroySockets(ctx, socks)
}

// sortListeners orders listeners by protocol, port, address and inode.
func sortListeners(ls []Listener) {
	slices.SortFunc(ls, func(a, b Listener) int {
		return cmp.Or(
			cmp.Compare(a.Proto, b.Proto),
			cmp.Compare(a.Port, b.Port),
			a.Address.Compare(b.Address),
			cmp.Compare(a.Inode, b.Inode),
		)
	})
}
