package netmgr

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// planHost is the host of the plan tests: loopback, one LAN address of each
// family, and a link-local address (never a LAN address).
var planHost = []netip.Addr{
	netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"),
	netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10"),
	netip.MustParseAddr("fe80::1"),
}

// on80 is the settings of a distro whose TCP port 80 has s with LAN on.
func on80(s PortSetting) map[PortKey]PortSetting {
	s.LAN = true
	return map[PortKey]PortSetting{{TCP, 80}: s}
}

func TestPlanScan(t *testing.T) {
	a := netip.MustParseAddr
	pfx := netip.MustParsePrefix
	tcp := func(addr string, port uint16) Listener {
		return Listener{Proto: TCP, Address: a(addr), Port: port, PID: 42, Process: "srv"}
	}
	udp := func(addr string, port uint16) Listener {
		return Listener{Proto: UDP, Address: a(addr), Port: port, PID: 42, Process: "srv"}
	}
	lan := func(p string, port uint16) proxyKey { return proxyKey{TCP, netip.AddrPortFrom(a(p), port)} }
	to := func(addr string, port uint16) netip.AddrPort { return netip.AddrPortFrom(a(addr), port) }
	allow := []netip.Prefix{pfx("10.0.0.0/8")}

	type port struct {
		lan     bool
		proxies int  // LAN listeners planned for it
		err     bool // not exposed as asked
	}
	for _, tc := range []struct {
		name       string
		settings   map[string]map[PortKey]PortSetting
		listeners  map[string][]Listener
		host       []netip.Addr
		followBind bool
		ports      []port
		proxies    map[proxyKey]netip.AddrPort // listen → target
		rules      []FirewallRule
	}{
		{
			name:      "loopback, no setting: this host only, counted on lo",
			listeners: map[string][]Listener{"d": {tcp("127.0.0.1", 80)}},
			ports:     []port{{}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, LoopbackOnlyCount: true}},
		},
		{
			name:      "loopback, LAN on: a listener on each LAN address, of both families, none on link-local",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{})},
			listeners: map[string][]Listener{"d": {tcp("127.0.0.1", 80)}},
			ports:     []port{{lan: true, proxies: 2}},
			proxies:   map[proxyKey]netip.AddrPort{lan("192.0.2.10", 80): to("127.0.0.1", 80), lan("2001:db8::10", 80): to("127.0.0.1", 80)},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, LoopbackOnlyCount: true}},
		},
		{
			name:      "loopback, LAN on with an allowlist: the listeners carry it, the firewall does not",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{Allow: allow})},
			listeners: map[string][]Listener{"d": {tcp("::1", 80)}},
			ports:     []port{{lan: true, proxies: 2}},
			proxies:   map[proxyKey]netip.AddrPort{lan("192.0.2.10", 80): to("::1", 80), lan("2001:db8::10", 80): to("::1", 80)},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 6, LoopbackOnlyCount: true}},
		},
		{
			name:      "loopback, LAN on lan_address: one listener",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{LANAddress: a("2001:db8::10")})},
			listeners: map[string][]Listener{"d": {tcp("127.0.0.1", 80)}},
			ports:     []port{{lan: true, proxies: 1}},
			proxies:   map[proxyKey]netip.AddrPort{lan("2001:db8::10", 80): to("127.0.0.1", 80)},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, LoopbackOnlyCount: true}},
		},
		{
			name:      "loopback, LAN on a lan_address the host lacks: no listener, an error",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{LANAddress: a("198.51.100.1")})},
			listeners: map[string][]Listener{"d": {tcp("127.0.0.1", 80)}},
			ports:     []port{{lan: true, err: true}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, LoopbackOnlyCount: true}},
		},
		{
			name:      "loopback, LAN on a host with no LAN address: an error",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{})},
			listeners: map[string][]Listener{"d": {tcp("127.0.0.1", 80)}},
			host:      []netip.Addr{a("127.0.0.1"), a("::1"), a("fe80::1")},
			ports:     []port{{lan: true, err: true}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, LoopbackOnlyCount: true}},
		},
		{
			name:      "loopback, LAN turned off again: nothing",
			settings:  map[string]map[PortKey]PortSetting{"d": {{TCP, 80}: {Allow: allow}}},
			listeners: map[string][]Listener{"d": {tcp("127.0.0.1", 80)}},
			ports:     []port{{}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, LoopbackOnlyCount: true}},
		},
		{
			name:      "every IPv4 address, no setting: dropped",
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			ports:     []port{{}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Drop: true}},
		},
		{
			name:      "every address of both families, LAN on: admitted, no listener",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{})},
			listeners: map[string][]Listener{"d": {tcp("::", 80)}},
			ports:     []port{{lan: true}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 0}},
		},
		{
			name:      "every address, LAN on with an allowlist and a lan_address",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{Allow: allow, LANAddress: a("192.0.2.10")})},
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			ports:     []port{{lan: true}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Allow: allow, Dest: a("192.0.2.10")}},
		},
		{
			name:      "every IPv4 address, an IPv6 lan_address: dropped, and an error",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{LANAddress: a("2001:db8::10")})},
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			ports:     []port{{lan: true, err: true}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Drop: true}},
		},
		{
			name:      "the IPv6 wildcard takes an IPv4 lan_address",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{LANAddress: a("192.0.2.10")})},
			listeners: map[string][]Listener{"d": {tcp("::", 80)}},
			ports:     []port{{lan: true}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 0, Dest: a("192.0.2.10")}},
		},
		{
			name:      "one LAN address, LAN off: dropped like a wildcard",
			listeners: map[string][]Listener{"d": {tcp("192.0.2.10", 80)}},
			ports:     []port{{}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Drop: true}},
		},
		{
			name:      "an IPv4-mapped bind address is IPv4",
			listeners: map[string][]Listener{"d": {tcp("::ffff:192.0.2.10", 80)}},
			ports:     []port{{}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Drop: true}},
		},
		{
			name:       "follow-bind: every address is on the LAN",
			listeners:  map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			followBind: true,
			ports:      []port{{lan: true}},
			rules:      []FirewallRule{{Proto: TCP, Port: 80, Family: 4}},
		},
		{
			name:       "follow-bind leaves loopback alone",
			listeners:  map[string][]Listener{"d": {tcp("::1", 80)}},
			followBind: true,
			ports:      []port{{}},
			rules:      []FirewallRule{{Proto: TCP, Port: 80, Family: 6, LoopbackOnlyCount: true}},
		},
		{
			name:       "follow-bind, turned off by hand",
			settings:   map[string]map[PortKey]PortSetting{"d": {{TCP, 80}: {}}},
			listeners:  map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			followBind: true,
			ports:      []port{{}},
			rules:      []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Drop: true}},
		},
		{
			name:      "a setting is per protocol: UDP 80 keeps the default",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{})},
			listeners: map[string][]Listener{"d": {udp("0.0.0.0", 80)}},
			ports:     []port{{}},
			rules:     []FirewallRule{{Proto: UDP, Port: 80, Family: 4, Drop: true}},
		},
		{
			name:      "a setting is per distro: another distro's port keeps the default",
			settings:  map[string]map[PortKey]PortSetting{"other": on80(PortSetting{})},
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			ports:     []port{{}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Drop: true}},
		},
		{
			name:      "0.0.0.0 and :: on one port: one rule for both families",
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80), tcp("::", 80)}},
			ports:     []port{{}, {}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 0, Drop: true}},
		},
		{
			name: "two distros on one port: the stricter rule, planned in the order of their ids",
			settings: map[string]map[PortKey]PortSetting{
				"a": on80(PortSetting{}),
				"b": on80(PortSetting{Allow: allow}),
			},
			listeners: map[string][]Listener{"b": {tcp("198.51.100.7", 80)}, "a": {tcp("192.0.2.10", 80)}},
			ports:     []port{{lan: true}, {lan: true}},
			rules:     []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Allow: allow}},
		},
		{
			name:     "a loopback and a wildcard socket on one port: the wildcard's filter, counted on every interface",
			settings: map[string]map[PortKey]PortSetting{"d": on80(PortSetting{})},
			listeners: map[string][]Listener{"d": {
				tcp("127.0.0.1", 80), tcp("::", 80),
			}},
			ports:   []port{{lan: true, proxies: 2}, {lan: true}},
			proxies: map[proxyKey]netip.AddrPort{lan("192.0.2.10", 80): to("127.0.0.1", 80), lan("2001:db8::10", 80): to("127.0.0.1", 80)},
			rules:   []FirewallRule{{Proto: TCP, Port: 80, Family: 0}},
		},
		{
			name:  "no listening socket: an empty plan",
			ports: []port{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.host
			if host == nil {
				host = planHost
			}
			sp := planScan(tc.settings, tc.listeners, nil, host, tc.followBind)
			got := make([]port, len(sp.ports))
			for i, pp := range sp.ports {
				got[i] = port{lan: pp.lan, proxies: len(pp.proxies), err: pp.err != nil}
			}
			if !reflect.DeepEqual(got, tc.ports) {
				t.Errorf("ports %+v, want %+v", got, tc.ports)
			}
			proxies := map[proxyKey]netip.AddrPort{}
			for k, lp := range sp.proxies {
				proxies[k] = lp.target
			}
			if len(proxies) != len(tc.proxies) || len(proxies) > 0 && !reflect.DeepEqual(proxies, tc.proxies) {
				t.Errorf("LAN listeners %v, want %v", proxies, tc.proxies)
			}
			if !reflect.DeepEqual(sp.rules, tc.rules) {
				t.Errorf("rules %+v, want %+v", sp.rules, tc.rules)
			}
			if _, err := normalizeRules(sp.rules); err != nil {
				t.Errorf("the firewall refuses the plan: %v", err)
			}
		})
	}
}

func TestPlanScanListenerAllowlist(t *testing.T) {
	a := netip.MustParseAddr
	set := PortSetting{LAN: true, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	sp := planScan(map[string]map[PortKey]PortSetting{"d": {{UDP, 53}: set}},
		map[string][]Listener{"d": {{Proto: UDP, Address: a("127.0.0.1"), Port: 53}}}, nil, planHost, false)
	want := lanProxy{distroID: "d", target: netip.AddrPortFrom(a("127.0.0.1"), 53), allow: "10.0.0.0/8,fd00::/8"}
	for _, l := range []string{"192.0.2.10", "2001:db8::10"} {
		k := proxyKey{UDP, netip.AddrPortFrom(a(l), 53)}
		if got := sp.proxies[k]; got != want {
			t.Errorf("LAN listener %v: %+v, want %+v", k, got, want)
		}
	}
}

func TestLANOn(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name       string
		set        PortSetting
		configured bool
		followBind bool
		bind       string
		want       bool
	}{
		{"no setting, default off", DefaultPortSetting, false, false, "0.0.0.0", false},
		{"no setting, follow-bind, every address", DefaultPortSetting, false, true, "0.0.0.0", true},
		{"no setting, follow-bind, one LAN address", DefaultPortSetting, false, true, "2001:db8::10", true},
		{"no setting, follow-bind, loopback", DefaultPortSetting, false, true, "127.0.0.1", false},
		{"no setting, follow-bind, IPv6 loopback", DefaultPortSetting, false, true, "::1", false},
		{"setting on", PortSetting{LAN: true}, true, false, "127.0.0.1", true},
		{"setting off beats follow-bind", PortSetting{}, true, true, "0.0.0.0", false},
		{"setting on with follow-bind", PortSetting{LAN: true}, true, true, "0.0.0.0", true},
	} {
		if got := lanOn(tc.set, tc.configured, tc.followBind, a(tc.bind)); got != tc.want {
			t.Errorf("%s: lanOn = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPlanCopiesSettings(t *testing.T) {
	// Set writes into the stored settings while the Run goroutine plans; the
	// plan must read a copy (go test -race sees it otherwise).
	m := NewPortManager(PortsConfig{})
	m.settings["d"] = map[PortKey]PortSetting{{TCP, 80}: {LAN: true}}
	ls := map[string][]Listener{"d": {{Proto: TCP, Address: netip.MustParseAddr("0.0.0.0"), Port: 80}}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			m.mu.Lock()
			m.settings["d"][PortKey{TCP, uint16(1000 + i)}] = PortSetting{}
			m.mu.Unlock()
		}
	}()
	for range 200 {
		if sp := m.plan(ls, nil, planHost, false); !sp.ports[0].lan {
			t.Fatal("the setting of port 80 was lost")
		}
	}
	<-done
}

// TestPlanGuest: a version 2 distro's sockets are in the VM: listeners on
// host loopback while localhost is on (both families, whatever the bind),
// on the LAN addresses while LAN is on, every one dialing the socket's
// address in the VM; no firewall rule.
func TestPlanGuest(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name   string
		set    *PortSetting // nil: no setting (the default)
		bind   string
		listen []string // the planned listeners' addresses
		target string
	}{
		{"default: localhost only", nil, "0.0.0.0", []string{"127.0.0.1", "::1"}, "127.0.0.1:8080"},
		{"bound to guest loopback", nil, "127.0.0.1", []string{"127.0.0.1", "::1"}, "127.0.0.1:8080"},
		{"bound to [::]", nil, "::", []string{"127.0.0.1", "::1"}, "[::1]:8080"},
		{"localhost off", &PortSetting{}, "0.0.0.0", nil, ""},
		{"LAN on", &PortSetting{Localhost: true, LAN: true}, "0.0.0.0", []string{"127.0.0.1", "::1", "192.0.2.10", "2001:db8::10"}, "127.0.0.1:8080"},
		{"LAN only", &PortSetting{LAN: true}, "0.0.0.0", []string{"192.0.2.10", "2001:db8::10"}, "127.0.0.1:8080"},
	}
	for _, tt := range tests {
		settings := map[string]map[PortKey]PortSetting{}
		if tt.set != nil {
			settings["g"] = map[PortKey]PortSetting{{TCP, 8080}: *tt.set}
		}
		sp := planScan(settings, map[string][]Listener{"g": {{Proto: TCP, Address: a(tt.bind), Port: 8080}}},
			map[string]bool{"g": true}, planHost, true)
		if len(sp.rules) != 0 {
			t.Errorf("%s: firewall rules %v for a guest port", tt.name, sp.rules)
		}
		var got []string
		for k, lp := range sp.proxies {
			got = append(got, k.listen.Addr().String())
			if !lp.guest || lp.target.String() != tt.target {
				t.Errorf("%s: listener %v = %+v, want a guest one to %s", tt.name, k, lp, tt.target)
			}
		}
		slices.Sort(got)
		want := slices.Clone(tt.listen)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: listeners on %v, want %v", tt.name, got, want)
		}
		if pp := sp.ports[0]; pp.lan != (tt.set != nil && tt.set.LAN) {
			t.Errorf("%s: lan = %v (follow-bind is version 1's only)", tt.name, pp.lan)
		}
	}
}
