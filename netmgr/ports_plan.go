package netmgr

// This file holds the plan of a scan: from the distros' listening sockets,
// their settings and the host's addresses, which LAN listeners and firewall
// rules each port needs. Deciding does no I/O, so every case is unit-tested
// without root.

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// portPlan is what one scan decided for one listening socket of a distro.
type portPlan struct {
	distroID string
	l        Listener
	set      PortSetting
	lan      bool // effective: the setting, or the follow-bind default
	proxies  []proxyKey
	err      error // why the port is not exposed as asked
	// guest: a version 2 distro's socket, in the VM: reached only through
	// subsys's listeners, on host loopback (localhost) and the LAN.
	guest bool
}

// scanPlan is the whole scan's decision.
type scanPlan struct {
	ports   []*portPlan
	proxies map[proxyKey]lanProxy
	rules   []FirewallRule
}

// plan decides, for every listening socket, which LAN listeners and firewall
// rules it needs, from the settings as they are now.
func (m *PortManager) plan(listeners map[string][]Listener, guests map[string]bool, hostAddrs []netip.Addr, followBind bool) *scanPlan {
	m.mu.Lock()
	// Set writes into the per-distro maps while a scan plans: copy them too.
	settings := make(map[string]map[PortKey]PortSetting, len(m.settings))
	for id, ps := range m.settings {
		settings[id] = maps.Clone(ps)
	}
	m.mu.Unlock()
	return planScan(settings, listeners, guests, hostAddrs, followBind)
}

// planScan decides, for every listening socket of listeners (by distro id),
// which LAN listeners and firewall rules it needs, given the stored settings
// (by distro id; a port without one has DefaultPortSetting), the host's
// addresses and whether the follow-bind LAN default is on. Distros are planned
// in the order of their ids and sockets in the order given, so that one input
// always gives the same plan.
//
// A socket bound to loopback is reached from the LAN only through subsys's
// listeners, one per LAN address of the host, so its firewall rule only
// counts the loopback leg. A socket bound to any other address is reached
// directly: its rule drops LAN packets while LAN is off, and admits only the
// allowlist and lan_address when it is on. Sockets on one port share one rule.
//
// A version 2 distro's socket (guests) is in the VM: it gets listeners on
// host loopback, both families, while its localhost setting is on, and on
// the LAN addresses while LAN is on, each dialing into the VM; no firewall
// rule, since no host socket is involved.
func planScan(settings map[string]map[PortKey]PortSetting, listeners map[string][]Listener, guests map[string]bool, hostAddrs []netip.Addr, followBind bool) *scanPlan {
	sp := &scanPlan{proxies: map[proxyKey]lanProxy{}}
	ruleIdx := map[PortKey]int{}
	for _, id := range slices.Sorted(maps.Keys(listeners)) {
		for _, l := range listeners[id] {
			k := PortKey{l.Proto, l.Port}
			set, configured := settings[id][k]
			if !configured {
				set = DefaultPortSetting
			}
			addr := l.Address.Unmap()
			pp := &portPlan{distroID: id, l: l, set: set, lan: lanOn(set, configured, followBind, addr)}
			if guests[id] {
				pp.guest = true
				pp.lan = set.LAN // follow-bind is version 1's default only
				sp.planGuest(pp, hostAddrs)
				sp.ports = append(sp.ports, pp)
				continue
			}
			rule := FirewallRule{Proto: l.Proto, Port: l.Port, Family: familyOf(addr)}
			if addr.IsLoopback() {
				// Only subsys's proxies carry LAN traffic to it; count the loopback leg.
				rule.LoopbackOnlyCount = true
				if pp.lan {
					sp.planListeners(pp, hostAddrs)
				}
			} else {
				rule = filterRule(rule, pp)
			}
			if i, ok := ruleIdx[k]; ok {
				// Several sockets on one port (0.0.0.0 and [::], say): one
				// rule for both families, and the stricter decision wins.
				sp.rules[i] = mergeRules(sp.rules[i], rule)
			} else {
				ruleIdx[k] = len(sp.rules)
				sp.rules = append(sp.rules, rule)
			}
			sp.ports = append(sp.ports, pp)
		}
	}
	return sp
}

// lanOn is a port's effective LAN toggle: its setting's, or, when the port
// has no setting and the follow-bind default is on, on for a socket bound to
// a non-loopback address, as on WSL 1.
func lanOn(set PortSetting, configured, followBind bool, bind netip.Addr) bool {
	return set.LAN || !configured && followBind && !bind.IsLoopback()
}

// planListeners adds the LAN listeners of a loopback-bound port whose LAN is
// on: one on each LAN address of the host (of either family, so an IPv4-only
// program is reached over IPv6 too), or on lan_address alone when it is set.
// Loopback and link-local addresses are no LAN addresses. When no address
// fits, pp.err says why.
func (sp *scanPlan) planListeners(pp *portPlan, hostAddrs []netip.Addr) {
	l, set := pp.l, pp.set
	target := netip.AddrPortFrom(l.Address.Unmap(), l.Port)
	for _, a := range hostAddrs {
		if a.IsLoopback() || a.IsLinkLocalUnicast() || (set.LANAddress.IsValid() && a != set.LANAddress) {
			continue
		}
		pk := proxyKey{l.Proto, netip.AddrPortFrom(a, l.Port)}
		if prev, taken := sp.proxies[pk]; taken && prev.target.Addr().Is4() == target.Addr().Is4() {
			continue // a same-family target got it first
		}
		sp.proxies[pk] = lanProxy{distroID: pp.distroID, target: target, allow: prefixList(set.Allow)}
		pp.proxies = append(pp.proxies, pk)
	}
	if len(pp.proxies) == 0 {
		if set.LANAddress.IsValid() {
			pp.err = fmt.Errorf("lan_address %s is not an address of this host", set.LANAddress)
		} else {
			pp.err = errors.New("this host has no LAN address")
		}
	}
}

// guestTarget is where in the VM a version 2 socket bound to bind is
// reached: loopback of its family for a wildcard bind, else its address.
func guestTarget(bind netip.Addr, port uint16) netip.AddrPort {
	bind = bind.Unmap()
	if bind.IsUnspecified() {
		if bind.Is4() {
			bind = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		} else {
			bind = netip.IPv6Loopback()
		}
	}
	return netip.AddrPortFrom(bind, port)
}

// planGuest adds the listeners of a version 2 socket: host loopback (both
// families, so a program bound to IPv4 only is reached on [::1] too) while
// localhost is on, the LAN addresses (as planListeners) while LAN is on.
func (sp *scanPlan) planGuest(pp *portPlan, hostAddrs []netip.Addr) {
	l := pp.l
	target := guestTarget(l.Address, l.Port)
	add := func(a netip.Addr, allow string) {
		pk := proxyKey{l.Proto, netip.AddrPortFrom(a, l.Port)}
		if prev, taken := sp.proxies[pk]; taken && (prev.distroID != pp.distroID || prev.target.Addr().Is4() == a.Is4()) {
			return // another socket of the port got it first (same family wins)
		}
		sp.proxies[pk] = lanProxy{distroID: pp.distroID, target: target, allow: allow, guest: true}
		if !slices.Contains(pp.proxies, pk) {
			pp.proxies = append(pp.proxies, pk)
		}
	}
	if pp.set.Localhost {
		add(netip.AddrFrom4([4]byte{127, 0, 0, 1}), "")
		add(netip.IPv6Loopback(), "")
	}
	if pp.lan {
		before := len(pp.proxies)
		for _, a := range hostAddrs {
			if a.IsLoopback() || a.IsLinkLocalUnicast() || (pp.set.LANAddress.IsValid() && a != pp.set.LANAddress) {
				continue
			}
			add(a, prefixList(pp.set.Allow))
		}
		if len(pp.proxies) == before {
			if pp.set.LANAddress.IsValid() {
				pp.err = fmt.Errorf("lan_address %s is not an address of this host", pp.set.LANAddress)
			} else {
				pp.err = errors.New("this host has no LAN address")
			}
		}
	}
}

// filterRule completes rule, the firewall rule of a socket bound to a
// non-loopback address: a drop while LAN is off, else the allowlist and
// lan_address of the setting. A lan_address of the other family than the
// socket's can receive none of its packets: that is a drop too, and pp.err
// says why.
func filterRule(rule FirewallRule, pp *portPlan) FirewallRule {
	rule.Drop = !pp.lan
	if !pp.lan {
		return rule
	}
	rule.Allow = pp.set.Allow
	rule.Dest = pp.set.LANAddress
	if d := pp.set.LANAddress; d.IsValid() && rule.Family != 0 && d.Is4() != (rule.Family == 4) {
		rule.Drop, rule.Dest = true, netip.Addr{}
		pp.err = fmt.Errorf("lan_address %s is not of the family of the bind address %s", d, pp.l.Address.Unmap())
	}
	return rule
}

// hasTCP reports whether the plan holds a TCP port, whose connections the
// scan then lists.
func (sp *scanPlan) hasTCP() bool {
	for _, pp := range sp.ports {
		if pp.l.Proto == TCP {
			return true
		}
	}
	return false
}

// mergeRules combines the rules of two sockets on one port (0.0.0.0 and [::],
// or two distros on two addresses): both families when they differ, and the
// stricter of the two filters, so that a merge never opens what either rule
// keeps shut: a drop when either drops, the prefixes both allow, the lan
// address both name.
func mergeRules(a, b FirewallRule) FirewallRule {
	if a.Family != b.Family {
		a.Family = 0
	}
	a.LoopbackOnlyCount = a.LoopbackOnlyCount && b.LoopbackOnlyCount
	if b.Drop {
		a.Drop = true
	}
	switch {
	case len(a.Allow) == 0:
		a.Allow = b.Allow
	case len(b.Allow) > 0:
		a.Allow = intersectPrefixes(a.Allow, b.Allow)
		if len(a.Allow) == 0 {
			a.Drop = true
		}
	}
	switch {
	case !a.Dest.IsValid():
		a.Dest = b.Dest
	case b.Dest.IsValid() && b.Dest != a.Dest:
		a.Drop = true
	}
	if a.Drop {
		a.Allow, a.Dest = nil, netip.Addr{}
	}
	return a
}

// intersectPrefixes returns the prefixes that lie in both lists: of each pair
// that overlaps, the narrower.
func intersectPrefixes(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range a {
		for _, q := range b {
			switch {
			case p.Bits() >= q.Bits() && q.Contains(p.Addr()):
				out = append(out, p)
			case q.Bits() > p.Bits() && p.Contains(q.Addr()):
				out = append(out, q)
			}
		}
	}
	return normalizeAllow(out)
}

// familyOf is a bind address's firewall family: 4, 6, or 0 for the IPv6
// wildcard, which takes IPv4 clients too unless IPV6_V6ONLY is set.
func familyOf(a netip.Addr) int {
	switch {
	case a.Is4():
		return 4
	case a.IsUnspecified():
		return 0
	default:
		return 6
	}
}
