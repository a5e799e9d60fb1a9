package netmgr

// This file reports a scan: each planned port with its state, error and
// counters, kept for Ports and published to subscribers when it changed. The
// state of a port, and the Port itself, are decided by portState and
// portReport, which do no I/O.

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
)

// listenerOutcome is what became of the LAN listeners that one port's plan
// asked for.
type listenerOutcome struct {
	// opened counts the listeners that are open.
	opened int
	// errs says, in the plan's order, why the others are not.
	errs []error
	// stats sums the counters of the open ones.
	stats Stats
}

// outcome looks up what became of pp's LAN listeners; it runs on the Run
// goroutine, which owns them.
func (m *PortManager) outcome(pp *portPlan) listenerOutcome {
	var lo listenerOutcome
	for _, k := range pp.proxies {
		if lp, ok := m.proxies[k]; ok {
			lo.stats = lo.stats.Add(lp.proxy.Stats())
			lo.opened++
		} else if e, ok := m.proxyErrs[k]; ok {
			lo.errs = append(lo.errs, e)
		}
	}
	return lo
}

// report turns the plan into Ports with states and counters, stores them for
// Ports, and publishes a PortsEvent for each distro whose ports changed.
func (m *PortManager) report(ctx context.Context, sp *scanPlan, running map[string]Distro, fwErr error, conns []Socket) {
	var counters map[PortKey]PortCounter
	if fwErr == nil && len(sp.rules) > 0 {
		var err error
		if counters, err = m.cfg.Firewall.Counters(ctx); err != nil {
			m.log.Warn("read firewall counters", "err", err)
		}
	}
	byDistro := map[string][]Port{}
	for _, pp := range sp.ports {
		byDistro[pp.distroID] = append(byDistro[pp.distroID], portReport(pp, m.outcome(pp), fwErr, counters, conns))
	}
	m.mu.Lock()
	m.ports = byDistro
	m.mu.Unlock()
	for id, d := range running {
		m.distros[id] = d
	}
	for id, d := range m.distros {
		ps := byDistro[id]
		if ps == nil {
			ps = []Port{}
		}
		prev, had := m.published[id]
		if had && !reflect.DeepEqual(prev, ps) || !had && len(ps) > 0 {
			m.publish(PortsEvent{Distro: d.Name, ID: d.ID, Ports: clonePorts(ps)})
		}
		if _, ok := running[id]; ok {
			m.published[id] = ps
		} else {
			// Stopped: told once (above) that it has no ports, then forgotten.
			delete(m.distros, id)
			delete(m.published, id)
		}
	}
}

// portReport builds the Port that reports one planned socket: its setting with
// the effective LAN toggle, its state (portState), and its counters. Bytes are
// the firewall's per-port counters when counters has the port, else those of
// its LAN listeners. Connections of a TCP port are those of conns to its bind
// address (any, for a wildcard); of a UDP port, the flows through its LAN
// listeners.
func portReport(pp *portPlan, lo listenerOutcome, fwErr error, counters map[PortKey]PortCounter, conns []Socket) Port {
	p := Port{
		Proto: pp.l.Proto, Port: pp.l.Port, Address: pp.l.Address.Unmap(), Process: pp.l.Process, PID: pp.l.PID,
		PortSetting: pp.set,
	}
	p.LAN = pp.lan
	p.Allow = nonNilAllow(p.Allow)
	p.State, p.Error = portState(pp, lo, fwErr)
	if c, ok := counters[PortKey{p.Proto, p.Port}]; ok {
		p.BytesIn, p.BytesOut = c.BytesIn, c.BytesOut
	} else {
		p.BytesIn, p.BytesOut = uint64(lo.stats.BytesIn), uint64(lo.stats.BytesOut)
	}
	if p.Proto == TCP && !pp.guest {
		for _, c := range conns {
			if c.Local.Port() == p.Port && (p.Address.IsUnspecified() || c.Local.Addr().Unmap() == p.Address) {
				p.Connections++
			}
		}
	} else {
		p.Connections = lo.stats.Connections
	}
	return p
}

// portState decides the state of one planned socket, and the error it
// reports, from its plan, what became of its LAN listeners, and fwErr, why
// the firewall did not take the scan's rules (nil when it did):
//   - a LAN listener whose address another socket holds: PortConflict;
//   - any other reason the port is not exposed as asked: PortError;
//   - a port bound to a non-loopback address whose setting only a firewall
//     can enforce (LAN off, an allowlist or a lan_address) while there is
//     none: PortError, since the LAN reaches it whatever the setting;
//   - LAN on, with a listener open (loopback binds) or the firewall admitting
//     it (other binds): PortLAN;
//   - LAN off: PortLocal; LAN on but nothing open: PortError.
func portState(pp *portPlan, lo listenerOutcome, fwErr error) (state, msg string) {
	var errs []string
	if pp.err != nil {
		errs = append(errs, pp.err.Error())
	}
	conflict := false
	for _, e := range lo.errs {
		if errors.Is(e, ErrPortInUse) {
			conflict = true
		}
		errs = append(errs, e.Error())
	}
	// A version 2 socket, like a loopback-bound one, is reached from the LAN
	// only through subsys's listeners.
	loop := pp.guest || pp.l.Address.Unmap().IsLoopback()
	state = PortLocal
	switch {
	case conflict:
		state = PortConflict
	case len(errs) > 0:
		state = PortError
	case !loop && fwErr != nil && (!pp.lan || len(pp.set.Allow) > 0 || pp.set.LANAddress.IsValid()):
		state = PortError
		errs = append(errs, "no firewall ("+fwErr.Error()+"): the port is reachable from the LAN whatever its setting")
	case pp.lan && (lo.opened > 0 || !loop):
		state = PortLAN
	}
	if pp.lan && state == PortLocal {
		state = PortError
	}
	return state, strings.Join(errs, "; ")
}

// portsOf picks from a distro's ports the entries of one port, one per
// listening socket; when none listens, it is one entry in state PortClosed
// with the setting set, so that a setting made before its port listens is
// shown too.
func portsOf(ports []Port, k PortKey, set PortSetting) []Port {
	var out []Port
	for _, p := range ports {
		if p.Proto == k.Proto && p.Port == k.Port {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = []Port{{Proto: k.Proto, Port: k.Port, PortSetting: set, State: PortClosed}}
		out[0].Allow = nonNilAllow(out[0].Allow)
	}
	return out
}

// PortsEvent says that a distro's ports, or their counters, changed.
type PortsEvent struct {
	// Distro is the distro's name.
	Distro string `json:"distro"`
	// ID is the distro's id.
	ID string `json:"id"`
	// Ports are all its listening ports now; empty when it has none, or
	// stopped.
	Ports []Port `json:"ports"`
}

// eventBuffer is how many events may wait for a slow subscriber; one that falls
// further behind loses its channel (closed) and must subscribe again.
const eventBuffer = 64

// Subscribe returns a channel of PortsEvents and the function that ends the
// subscription. The channel is closed when the subscriber falls behind.
func (m *PortManager) Subscribe() (<-chan PortsEvent, func()) {
	ch := make(chan PortsEvent, eventBuffer)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		if _, ok := m.subs[ch]; ok {
			delete(m.subs, ch)
			close(ch)
		}
		m.mu.Unlock()
	}
}

// publish sends e to every subscriber without waiting.
func (m *PortManager) publish(e PortsEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- e:
		default:
			delete(m.subs, ch)
			close(ch)
		}
	}
}

// clonePorts copies ps deeply enough that the caller may change it: the
// slice and each port's allowlist.
func clonePorts(ps []Port) []Port {
	out := slices.Clone(ps)
	for i := range out {
		out[i].Allow = slices.Clone(out[i].Allow)
	}
	return out
}
