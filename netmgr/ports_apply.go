package netmgr

// This file applies a scan's plan to the host: it opens and closes LAN
// listeners, hands the firewall its rules, and cuts the live connections the
// rules no longer admit. Which connections those are is decided by
// connectionsToCut, which does no I/O.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// applyProxies closes the LAN listeners the plan no longer wants (cutting
// their connections) and opens the new ones. A listener whose address is taken
// is retried after conflictRetry.
func (m *PortManager) applyProxies(sp *scanPlan, running map[string]Distro) {
	for k, lp := range m.proxies {
		want, ok := sp.proxies[k]
		if ok && want.target == lp.target && want.allow == lp.allow && want.distroID == lp.distroID && want.guest == lp.guest {
			continue
		}
		_ = lp.proxy.Close()
		delete(m.proxies, k)
		m.log.Info("LAN listener closed", "proto", k.proto, "listen", k.listen.String())
	}
	for k := range m.retryAt {
		if _, ok := sp.proxies[k]; !ok {
			delete(m.retryAt, k)
			delete(m.proxyErrs, k)
		}
	}
	now := time.Now()
	for k, want := range sp.proxies {
		if _, ok := m.proxies[k]; ok {
			continue
		}
		if t, ok := m.retryAt[k]; ok && now.Before(t) {
			continue
		}
		allow, _ := ParsePrefixes(strings.Split(want.allow, ","))
		pc := ProxyConfig{
			Proto:  k.proto,
			Listen: k.listen,
			Target: want.target.String(),
			Allow:  allow,
			Logger: m.log.With("distro", want.distroID),
		}
		if want.guest {
			guest := running[want.distroID].Guest
			if guest == nil {
				m.proxyErrs[k] = fmt.Errorf("version 2 distro %s has no network to reach its port through", want.distroID)
				m.retryAt[k] = now.Add(conflictRetry)
				continue
			}
			proto, target := k.proto, want.target
			pc.Dial = func(ctx context.Context) (net.Conn, error) { return guest.Dial(ctx, proto, target) }
		}
		p, err := NewProxy(pc)
		if err != nil {
			if _, seen := m.retryAt[k]; !seen {
				m.log.Warn("LAN listener not opened", "proto", k.proto, "listen", k.listen.String(), "err", err)
			}
			m.retryAt[k] = now.Add(conflictRetry)
			m.proxyErrs[k] = err
			continue
		}
		delete(m.retryAt, k)
		delete(m.proxyErrs, k)
		want.proxy = p
		lp := want
		m.proxies[k] = &lp
		m.log.Info("LAN listener opened", "proto", k.proto, "listen", k.listen.String(), "target", want.target.String())
	}
}

// closeProxies stops every LAN listener.
func (m *PortManager) closeProxies() {
	var wg sync.WaitGroup
	for k, lp := range m.proxies {
		wg.Go(func() { _ = lp.proxy.Close() })
		delete(m.proxies, k)
	}
	wg.Wait()
}

// applyFirewall hands the plan's rules to the firewall.
func (m *PortManager) applyFirewall(ctx context.Context, sp *scanPlan) error {
	if m.cfg.Firewall == nil {
		return ErrFirewallUnavailable
	}
	if err := m.cfg.Firewall.Apply(ctx, sp.rules); err != nil {
		m.log.Warn("apply firewall rules", "err", err)
		return err
	}
	return nil
}

// cutConnections aborts the live TCP connections that connectionsToCut
// chooses. Without a firewall nothing is filtered, so nothing is cut either.
func (m *PortManager) cutConnections(ctx context.Context, sp *scanPlan, hostAddrs []netip.Addr, conns []Socket) {
	if m.cfg.Firewall == nil {
		return
	}
	cut := connectionsToCut(sp, hostAddrs, conns)
	if len(cut) == 0 {
		return
	}
	n, err := DestroySockets(ctx, cut)
	if err != nil {
		m.log.Warn("cut connections", "err", err)
	}
	if n > 0 {
		m.log.Info("cut connections no longer allowed", "count", n)
	}
}

// connectionsToCut chooses, of the host's live TCP connections conns, those
// to a distro port bound to a non-loopback address that the plan's firewall
// rule no longer admits: from a LAN host while LAN is off, from outside the
// allowlist, or to another address than lan_address. Connections from this
// host (loopback or one of hostAddrs) are never LAN traffic, and a connection
// to another address than the distros bound on that port number is a host
// program's: neither is cut. A loopback-bound port's LAN traffic comes
// through subsys's listeners, which closing cuts. Enforcing on every scan,
// not only on a toggle, also cuts a connection that slipped in before the port
// was first seen.
func connectionsToCut(sp *scanPlan, hostAddrs []netip.Addr, conns []Socket) []Socket {
	rules := map[uint16][]FirewallRule{}
	for _, r := range sp.rules {
		if r.Proto == TCP && !r.LoopbackOnlyCount && (r.Drop || len(r.Allow) > 0 || r.Dest.IsValid()) {
			rules[r.Port] = append(rules[r.Port], r)
		}
	}
	if len(rules) == 0 {
		return nil
	}
	local := map[netip.Addr]bool{}
	for _, a := range hostAddrs {
		local[a.Unmap()] = true
	}
	// The distros' bind addresses by port: a connection to another address
	// on the same port number is a host program's, not theirs to cut.
	binds := map[uint16][]netip.Addr{}
	for _, pp := range sp.ports {
		if pp.l.Proto == TCP && !pp.l.Address.Unmap().IsLoopback() {
			binds[pp.l.Port] = append(binds[pp.l.Port], pp.l.Address.Unmap())
		}
	}
	var cut []Socket
	for _, c := range conns {
		remote := c.Remote.Addr().Unmap()
		if remote.IsLoopback() || local[remote] {
			continue // from this host: never LAN traffic
		}
		if !boundTo(binds[c.Local.Port()], c.Local.Addr().Unmap()) {
			continue
		}
		for _, r := range rules[c.Local.Port()] {
			if r.admits(remote, c.Local.Addr().Unmap()) {
				continue
			}
			if r.Family == 4 && !remote.Is4() || r.Family == 6 && remote.Is4() {
				continue
			}
			cut = append(cut, c)
			break
		}
	}
	return cut
}

// boundTo reports whether a connection to local address a belongs to a socket
// bound to one of binds: the same address, or the wildcard of its family (the
// IPv6 wildcard takes IPv4 too).
func boundTo(binds []netip.Addr, a netip.Addr) bool {
	for _, b := range binds {
		if b == a || b.IsUnspecified() && (b.Is6() || a.Is4()) {
			return true
		}
	}
	return false
}

// admits reports whether a LAN packet from src to dst passes r.
func (r FirewallRule) admits(src, dst netip.Addr) bool {
	if r.Drop {
		return false
	}
	if r.Dest.IsValid() && dst != r.Dest {
		return false
	}
	if len(r.Allow) == 0 {
		return true
	}
	for _, p := range r.Allow {
		if p.Contains(src) {
			return true
		}
	}
	return false
}
