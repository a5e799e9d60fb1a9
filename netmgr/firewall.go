package netmgr

// This file holds the plain-Go half of the host firewall: the rule types, their
// validation and canonical form, shared by firewall_linux.go (nf_tables) and
// firewall_other.go (unavailable).

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// ErrFirewallUnavailable reports that nf_tables cannot be used: the caller is
// not root (no CAP_NET_ADMIN), the kernel lacks nf_tables, or the host is not
// Linux. Callers fall back to exposing ports without kernel filtering.
var ErrFirewallUnavailable = errors.New("firewall unavailable")

// FirewallRule says what non-loopback traffic may reach one distro-owned port
// of the host. Loopback traffic (127.0.0.1, ::1 and the host's own LAN
// addresses, which the kernel routes over lo) is never filtered.
type FirewallRule struct {
	// Proto is "tcp" or "udp".
	Proto string
	// Port is the host port, 1-65535.
	Port uint16
	// Family limits the rule to IPv4 (4) or IPv6 (6) packets; 0 covers both.
	// Two rules of the same port may not cover the same family.
	Family int
	// Drop: every packet to Port that did not arrive on the loopback
	// interface is dropped (LAN off).
	Drop bool
	// Allow: when !Drop, non-loopback packets from sources outside Allow are
	// dropped; empty allows every source. Prefixes of either family (an
	// IPv4-mapped IPv6 prefix counts as IPv4); a family with no prefix in
	// Allow is dropped entirely when Allow is non-empty.
	Allow []netip.Prefix
	// Dest: when !Drop and valid (and not unspecified), non-loopback packets
	// to any other destination address are dropped — also those of the other
	// family (the lan_address setting).
	Dest netip.Addr
	// LoopbackOnlyCount: the port's counters count only packets on lo (see
	// Firewall.Counters); otherwise they count LAN packets too.
	LoopbackOnlyCount bool
}

// key returns the rule's protocol and port. (PortKey itself is declared in
// ports.go.)
func (r FirewallRule) key() PortKey { return PortKey{r.Proto, r.Port} }

// keyString formats k as "tcp/8080" for messages.
func keyString(k PortKey) string { return fmt.Sprintf("%s/%d", k.Proto, k.Port) }

// PortCounter holds the bytes of the IP packets (headers included) that went
// to a port (input hook, destination port) and came from it (output hook,
// source port), as the kernel saw them: a GRO or GSO batch counts as one
// packet with its payloads summed.
type PortCounter struct {
	// BytesIn counts the packets to the port; BytesOut those from it.
	BytesIn, BytesOut uint64
}

// normalizeRules validates rules and returns them in canonical form, sorted
// by protocol, port and family, so that two lists that mean the same compare
// equal with equalRules. Errors wrap ErrInvalid.
func normalizeRules(rules []FirewallRule) ([]FirewallRule, error) {
	out := make([]FirewallRule, 0, len(rules))
	for _, r := range rules {
		n, err := normalizeRule(r)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b FirewallRule) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Family, b.Family))
	})
	// Two rules whose families overlap on one port would both filter (and
	// both count) the same packets: the caller has a bug.
	for i := 1; i < len(out); i++ {
		a, b := out[i-1], out[i]
		if a.key() == b.key() && (a.Family == 0 || a.Family == b.Family) {
			return nil, fmt.Errorf("firewall rules: %s given twice for IPv%s: %w", keyString(a.key()), familyName(b.Family), ErrInvalid)
		}
	}
	return out, nil
}

// familyName spells a FirewallRule family for messages.
func familyName(f int) string {
	if f == 0 {
		return "4 and IPv6"
	}
	return fmt.Sprint(f)
}

// normalizeRule validates r and returns its canonical form: allow prefixes
// masked, unmapped, of the rule's family, sorted and without duplicates; Dest
// unmapped without zone; fields that Drop makes moot cleared.
func normalizeRule(r FirewallRule) (FirewallRule, error) {
	if r.Proto != TCP && r.Proto != UDP {
		return r, fmt.Errorf("firewall rule: protocol %q, want tcp or udp: %w", r.Proto, ErrInvalid)
	}
	if r.Port == 0 {
		return r, fmt.Errorf("firewall rule %s: port 0: %w", keyString(r.key()), ErrInvalid)
	}
	if r.Family != 0 && r.Family != 4 && r.Family != 6 {
		return r, fmt.Errorf("firewall rule %s: family %d, want 4, 6 or 0: %w", keyString(r.key()), r.Family, ErrInvalid)
	}
	if r.Drop {
		return FirewallRule{Proto: r.Proto, Port: r.Port, Family: r.Family, Drop: true, LoopbackOnlyCount: r.LoopbackOnlyCount}, nil
	}
	var allow []netip.Prefix
	for _, p := range r.Allow {
		if !p.IsValid() {
			return r, fmt.Errorf("firewall rule %s: invalid allow prefix %v: %w", keyString(r.key()), p, ErrInvalid)
		}
		a := p.Addr().WithZone("")
		bits := p.Bits()
		if a.Is4In6() {
			// What an IPv4 client looks like to a dual-stack socket; on
			// the wire, and to nf_tables, it is IPv4.
			if bits < 96 {
				return r, fmt.Errorf("firewall rule %s: allow prefix %v is wider than the IPv4-mapped range: %w", keyString(r.key()), p, ErrInvalid)
			}
			a, bits = a.Unmap(), bits-96
		}
		// A prefix of the other family could never match a packet the rule
		// sees; leaving it out keeps the canonical form unique.
		if r.Family == 4 && !a.Is4() || r.Family == 6 && !a.Is6() {
			continue
		}
		allow = append(allow, netip.PrefixFrom(a, bits).Masked())
	}
	slices.SortFunc(allow, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	allow = slices.Compact(allow)
	if len(r.Allow) > 0 && len(allow) == 0 {
		// Every prefix was of the other family: nothing is allowed, which
		// must not turn into "empty: everything is allowed".
		return FirewallRule{Proto: r.Proto, Port: r.Port, Family: r.Family, Drop: true, LoopbackOnlyCount: r.LoopbackOnlyCount}, nil
	}
	dest := r.Dest.WithZone("").Unmap()
	if dest.IsUnspecified() {
		dest = netip.Addr{} // 0.0.0.0 or ::: every address of the host
	}
	if dest.IsValid() && (r.Family == 4 && !dest.Is4() || r.Family == 6 && !dest.Is6()) {
		return r, fmt.Errorf("firewall rule %s: destination %v is not of family %d: %w", keyString(r.key()), dest, r.Family, ErrInvalid)
	}
	return FirewallRule{Proto: r.Proto, Port: r.Port, Family: r.Family, Allow: allow, Dest: dest, LoopbackOnlyCount: r.LoopbackOnlyCount}, nil
}

// equalRules reports whether two normalized rule lists are the same.
func equalRules(a, b []FirewallRule) bool {
	return slices.EqualFunc(a, b, func(x, y FirewallRule) bool {
		return x.Proto == y.Proto && x.Port == y.Port && x.Family == y.Family && x.Drop == y.Drop &&
			x.Dest == y.Dest && x.LoopbackOnlyCount == y.LoopbackOnlyCount && slices.Equal(x.Allow, y.Allow)
	})
}
