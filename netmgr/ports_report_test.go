package netmgr

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestPortState(t *testing.T) {
	a := netip.MustParseAddr
	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	plan := func(bind string, lan bool, set PortSetting, proxies int, err error) *portPlan {
		pp := &portPlan{l: Listener{Proto: TCP, Address: a(bind), Port: 80}, set: set, lan: lan, err: err}
		for range proxies {
			pp.proxies = append(pp.proxies, proxyKey{})
		}
		return pp
	}
	inUse := &PortInUseError{Proto: TCP, Address: netip.MustParseAddrPort("192.0.2.10:80"), PID: 7, Process: "nginx", Err: syscall.EADDRINUSE}
	noAddr := errors.New("this host has no LAN address")
	denied := errors.New("permission denied")
	noFirewall := ErrFirewallUnavailable

	for _, tc := range []struct {
		name  string
		pp    *portPlan
		lo    listenerOutcome
		fwErr error
		state string
		msg   string // a part of the error; "" wants none
	}{
		{"loopback, LAN off", plan("127.0.0.1", false, PortSetting{}, 0, nil), listenerOutcome{}, nil, PortLocal, ""},
		{"loopback, LAN off, no firewall: nothing to enforce", plan("::1", false, PortSetting{Allow: allow}, 0, nil), listenerOutcome{}, noFirewall, PortLocal, ""},
		{"loopback, LAN on, listeners open", plan("127.0.0.1", true, PortSetting{LAN: true}, 2, nil), listenerOutcome{opened: 2}, nil, PortLAN, ""},
		{"loopback, LAN on, no firewall: the listeners enforce it", plan("127.0.0.1", true, PortSetting{LAN: true, Allow: allow}, 1, nil), listenerOutcome{opened: 1}, noFirewall, PortLAN, ""},
		{"loopback, LAN on, one listener's address taken: conflict", plan("127.0.0.1", true, PortSetting{LAN: true}, 2, nil), listenerOutcome{opened: 1, errs: []error{inUse}}, nil, PortConflict, "nginx"},
		{"loopback, LAN on, every listener taken: conflict", plan("127.0.0.1", true, PortSetting{LAN: true}, 1, nil), listenerOutcome{errs: []error{inUse}}, nil, PortConflict, "port in use"},
		{"loopback, LAN on, a conflict and another failure: conflict, both said", plan("127.0.0.1", true, PortSetting{LAN: true}, 2, nil), listenerOutcome{errs: []error{denied, inUse}}, nil, PortConflict, "permission denied; tcp 192.0.2.10:80"},
		{"loopback, LAN on, a listener failed otherwise: error", plan("127.0.0.1", true, PortSetting{LAN: true}, 1, nil), listenerOutcome{errs: []error{denied}}, nil, PortError, "permission denied"},
		{"loopback, LAN on, no LAN address: error", plan("127.0.0.1", true, PortSetting{LAN: true}, 0, noAddr), listenerOutcome{}, nil, PortError, "no LAN address"},
		{"loopback, LAN on, nothing open and nothing said: error", plan("127.0.0.1", true, PortSetting{LAN: true}, 1, nil), listenerOutcome{}, nil, PortError, ""},
		{"every address, LAN off, firewall", plan("0.0.0.0", false, PortSetting{}, 0, nil), listenerOutcome{}, nil, PortLocal, ""},
		{"every address, LAN off, no firewall: error", plan("0.0.0.0", false, PortSetting{}, 0, nil), listenerOutcome{}, noFirewall, PortError, "no firewall (firewall unavailable)"},
		{"every address, LAN on, firewall", plan("::", true, PortSetting{LAN: true}, 0, nil), listenerOutcome{}, nil, PortLAN, ""},
		{"every address, LAN on, no filter, no firewall: on the LAN anyway", plan("::", true, PortSetting{LAN: true}, 0, nil), listenerOutcome{}, noFirewall, PortLAN, ""},
		{"every address, allowlist, no firewall: error", plan("0.0.0.0", true, PortSetting{LAN: true, Allow: allow}, 0, nil), listenerOutcome{}, noFirewall, PortError, "whatever its setting"},
		{"every address, lan_address, no firewall: error", plan("0.0.0.0", true, PortSetting{LAN: true, LANAddress: a("192.0.2.10")}, 0, nil), listenerOutcome{}, noFirewall, PortError, "no firewall"},
		{"every address, lan_address of the other family: error", plan("0.0.0.0", true, PortSetting{LAN: true, LANAddress: a("2001:db8::10")}, 0, errors.New("lan_address 2001:db8::10 is not of the family of the bind address 0.0.0.0")), listenerOutcome{}, nil, PortError, "not of the family"},
		{"one LAN address, follow-bind default on", plan("192.0.2.10", true, DefaultPortSetting, 0, nil), listenerOutcome{}, nil, PortLAN, ""},
		{"an IPv4-mapped loopback bind is loopback", plan("::ffff:127.0.0.1", false, PortSetting{}, 0, nil), listenerOutcome{}, noFirewall, PortLocal, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, msg := portState(tc.pp, tc.lo, tc.fwErr)
			if state != tc.state {
				t.Errorf("state %q, want %q (error %q)", state, tc.state, msg)
			}
			if tc.msg == "" && msg != "" || !strings.Contains(msg, tc.msg) {
				t.Errorf("error %q, want %q in it", msg, tc.msg)
			}
		})
	}
}

func TestPortReport(t *testing.T) {
	a := netip.MustParseAddr
	ap := netip.MustParseAddrPort
	conns := []Socket{
		{Proto: TCP, Local: ap("192.0.2.10:80"), Remote: ap("192.0.2.99:40000")},
		{Proto: TCP, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:40001")},
		{Proto: TCP, Local: ap("[2001:db8::10]:80"), Remote: ap("[2001:db8::99]:40002")},
		{Proto: TCP, Local: ap("192.0.2.10:22"), Remote: ap("192.0.2.99:40003")},
	}
	counters := map[PortKey]PortCounter{{TCP, 80}: {BytesIn: 1000, BytesOut: 2000}}
	stats := Stats{Connections: 3, BytesIn: 10, BytesOut: 20}
	for _, tc := range []struct {
		name     string
		l        Listener
		set      PortSetting
		lan      bool
		lo       listenerOutcome
		counters map[PortKey]PortCounter
		want     Port
	}{
		{
			name: "every address: every connection to the port, the firewall's bytes",
			l:    Listener{Proto: TCP, Address: a("::"), Port: 80, PID: 42, Process: "srv"},
			set:  PortSetting{Localhost: true}, counters: counters,
			want: Port{Proto: TCP, Port: 80, Address: a("::"), PID: 42, Process: "srv", PortSetting: PortSetting{Localhost: true, Allow: []netip.Prefix{}},
				State: PortLocal, Connections: 3, BytesIn: 1000, BytesOut: 2000},
		},
		{
			name: "one address: the connections to it; follow-bind shows as LAN on",
			l:    Listener{Proto: TCP, Address: a("::ffff:192.0.2.10"), Port: 80},
			set:  DefaultPortSetting, lan: true, counters: counters,
			want: Port{Proto: TCP, Port: 80, Address: a("192.0.2.10"), PortSetting: PortSetting{LAN: true, Localhost: true, Allow: []netip.Prefix{}},
				State: PortLAN, Connections: 1, BytesIn: 1000, BytesOut: 2000},
		},
		{
			name: "no firewall counters: the LAN listeners' bytes",
			l:    Listener{Proto: TCP, Address: a("127.0.0.1"), Port: 80},
			set:  PortSetting{LAN: true, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, lan: true,
			lo: listenerOutcome{opened: 2, stats: stats},
			want: Port{Proto: TCP, Port: 80, Address: a("127.0.0.1"), PortSetting: PortSetting{LAN: true, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
				State: PortLAN, Connections: 1, BytesIn: 10, BytesOut: 20},
		},
		{
			name: "UDP: the flows through the LAN listeners",
			l:    Listener{Proto: UDP, Address: a("127.0.0.1"), Port: 80},
			set:  PortSetting{LAN: true}, lan: true, counters: counters,
			lo: listenerOutcome{opened: 1, stats: stats},
			want: Port{Proto: UDP, Port: 80, Address: a("127.0.0.1"), PortSetting: PortSetting{LAN: true, Allow: []netip.Prefix{}},
				State: PortLAN, Connections: 3, BytesIn: 10, BytesOut: 20},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pp := &portPlan{distroID: "d", l: tc.l, set: tc.set, lan: tc.lan}
			got := portReport(pp, tc.lo, nil, tc.counters, conns)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("portReport =\n%+v, want\n%+v", got, tc.want)
			}
		})
	}
}

func TestPortsOf(t *testing.T) {
	ports := []Port{
		{Proto: TCP, Port: 80, Address: netip.MustParseAddr("0.0.0.0"), State: PortLocal},
		{Proto: TCP, Port: 80, Address: netip.MustParseAddr("::"), State: PortLocal},
		{Proto: UDP, Port: 80, State: PortLocal},
		{Proto: TCP, Port: 443, State: PortLAN},
	}
	set := PortSetting{LAN: true}
	if got := portsOf(ports, PortKey{TCP, 80}, set); !reflect.DeepEqual(got, ports[:2]) {
		t.Errorf("tcp/80: %+v, want every socket on it", got)
	}
	if got := portsOf(ports, PortKey{UDP, 80}, set); !reflect.DeepEqual(got, ports[2:3]) {
		t.Errorf("udp/80: %+v, want that socket only", got)
	}
	want := []Port{{Proto: TCP, Port: 8080, PortSetting: PortSetting{LAN: true, Allow: []netip.Prefix{}}, State: PortClosed}}
	for _, ps := range [][]Port{ports, nil} {
		if got := portsOf(ps, PortKey{TCP, 8080}, set); !reflect.DeepEqual(got, want) {
			t.Errorf("tcp/8080, not listening: %+v, want %+v", got, want)
		}
	}
}
