// Package netmgr owns networking for distros: listening-port discovery (a netlink
// sock_diag dump attributed to processes through /proc), the TCP and UDP proxy that
// localhost forwarding, LAN exposure and portproxy rules are made of, the PortProxy
// that runs portproxy rules, the PortManager that exposes distro ports to the LAN
// per port, and the nftables firewall that keeps LAN-off ports off. cli (which
// starts it in serve) and server import it.
// Rules and settings persist through the RuleStore and PortStore interfaces it
// declares; DBStore implements them on store, the only other subsys package it
// imports. It never imports server, cli or web. Version 1 distros share the host's
// network namespace, so their ports are host ports already; version 2 distros
// (planned) will be reached through a dial function (ProxyConfig.Dial).
package netmgr

import (
	"errors"
	"fmt"
	"net/netip"
)

// Sentinel errors; server maps each to an HTTP status with errors.Is.
var (
	// ErrPortInUse: the listen address is taken by another socket. The error is a
	// *PortInUseError that names the holder when it can be found.
	ErrPortInUse = errors.New("port in use")
	// ErrDuplicate: a rule with the same protocol and listen address:port (or one
	// that overlaps it through a wildcard address) exists already.
	ErrDuplicate = errors.New("duplicate rule")
	// ErrInvalid: a rule or configuration is malformed (protocol, address, port,
	// prefix).
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: no rule by that id.
	ErrNotFound = errors.New("not found")
	// ErrClosed: the PortProxy or the Firewall was closed.
	ErrClosed = errors.New("closed")
)

// Protocol names, as the API and the CLI spell them.
const (
	TCP = "tcp"
	UDP = "udp"
)

// PortInUseError reports that a listen address is taken. errors.Is(err,
// ErrPortInUse) holds for it; Err is the underlying bind error (EADDRINUSE).
type PortInUseError struct {
	// Proto is "tcp" or "udp".
	Proto string
	// Address is the listen address and port that could not be bound.
	Address netip.AddrPort
	// PID and Process name the holder; PID is 0 when it could not be found (a
	// socket of another network namespace, or /proc not readable).
	PID     int
	Process string
	// Holder is the listening socket that holds the port, when found.
	Holder *Listener
	// Err is the bind error.
	Err error
}

// Error says which address is taken and, when known, by whom.
func (e *PortInUseError) Error() string {
	who := "another socket"
	switch {
	case e.PID != 0:
		who = fmt.Sprintf("process %d (%s)", e.PID, e.Process)
	case e.Holder != nil:
		who = fmt.Sprintf("a socket on %s of an unknown process (uid %d)", netip.AddrPortFrom(e.Holder.Address, e.Holder.Port), e.Holder.UID)
	}
	return fmt.Sprintf("%s %s: port in use by %s", e.Proto, e.Address, who)
}

// Is makes errors.Is(err, ErrPortInUse) true.
func (e *PortInUseError) Is(target error) bool { return target == ErrPortInUse }

// Unwrap returns the bind error.
func (e *PortInUseError) Unwrap() error { return e.Err }
