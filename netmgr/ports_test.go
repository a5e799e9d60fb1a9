package netmgr

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestPlan(t *testing.T) {
	a := netip.MustParseAddr
	host := []netip.Addr{a("127.0.0.1"), a("::1"), a("192.0.2.10"), a("2001:db8::10"), a("fe80::1")}
	lst := func(addr string, port uint16) Listener {
		return Listener{Proto: TCP, Address: a(addr), Port: port, PID: 42, Process: "srv"}
	}
	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	type want struct {
		lan     bool
		proxies map[proxyKey]netip.AddrPort // listen → target
		rules   []FirewallRule
		err     bool
	}
	pk := func(addr string, port uint16) proxyKey { return proxyKey{TCP, netip.AddrPortFrom(a(addr), port)} }
	tgt := func(addr string, port uint16) netip.AddrPort { return netip.AddrPortFrom(a(addr), port) }
	for _, tc := range []struct {
		name       string
		ls         []Listener
		set        *PortSetting
		followBind bool
		want       want
	}{
		{"loopback, default: host only, counted on lo", []Listener{lst("127.0.0.1", 80)}, nil, false,
			want{rules: []FirewallRule{{Proto: TCP, Port: 80, Family: 4, LoopbackOnlyCount: true}}}},
		{"loopback, LAN on: a listener per LAN address of both families", []Listener{lst("127.0.0.1", 80)}, &PortSetting{LAN: true, Allow: allow}, false,
			want{lan: true,
				proxies: map[proxyKey]netip.AddrPort{pk("192.0.2.10", 80): tgt("127.0.0.1", 80), pk("2001:db8::10", 80): tgt("127.0.0.1", 80)},
				rules:   []FirewallRule{{Proto: TCP, Port: 80, Family: 4, LoopbackOnlyCount: true}}}},
		{"loopback, LAN on one address", []Listener{lst("::1", 80)}, &PortSetting{LAN: true, LANAddress: a("192.0.2.10")}, false,
			want{lan: true, proxies: map[proxyKey]netip.AddrPort{pk("192.0.2.10", 80): tgt("::1", 80)},
				rules: []FirewallRule{{Proto: TCP, Port: 80, Family: 6, LoopbackOnlyCount: true}}}},
		{"loopback, LAN on an address the host lacks", []Listener{lst("127.0.0.1", 80)}, &PortSetting{LAN: true, LANAddress: a("198.51.100.1")}, false,
			want{lan: true, err: true, rules: []FirewallRule{{Proto: TCP, Port: 80, Family: 4, LoopbackOnlyCount: true}}}},
		{"every address, default: dropped", []Listener{lst("0.0.0.0", 80)}, nil, false,
			want{rules: []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Drop: true}}}},
		{"every address, follow-bind: on the LAN", []Listener{lst("::", 80)}, nil, true,
			want{lan: true, rules: []FirewallRule{{Proto: TCP, Port: 80, Family: 0}}}},
		{"follow-bind leaves loopback alone", []Listener{lst("127.0.0.1", 80)}, nil, true,
			want{rules: []FirewallRule{{Proto: TCP, Port: 80, Family: 4, LoopbackOnlyCount: true}}}},
		{"follow-bind, turned off by hand", []Listener{lst("0.0.0.0", 80)}, &PortSetting{}, true,
			want{rules: []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Drop: true}}}},
		{"every address, LAN on with allowlist and address", []Listener{lst("0.0.0.0", 80)}, &PortSetting{LAN: true, Allow: allow, LANAddress: a("192.0.2.10")}, false,
			want{lan: true, rules: []FirewallRule{{Proto: TCP, Port: 80, Family: 4, Allow: allow, Dest: a("192.0.2.10")}}}},
		{"0.0.0.0 and :: on one port: one rule for both families", []Listener{lst("0.0.0.0", 80), lst("::", 80)}, nil, false,
			want{rules: []FirewallRule{{Proto: TCP, Port: 80, Family: 0, Drop: true}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewPortManager(PortsConfig{})
			if tc.set != nil {
				m.settings["d"] = map[PortKey]PortSetting{{TCP, 80}: *tc.set}
			}
			sp := m.plan(map[string][]Listener{"d": tc.ls}, nil, host, tc.followBind)
			if len(sp.ports) != len(tc.ls) {
				t.Fatalf("%d ports planned, want %d", len(sp.ports), len(tc.ls))
			}
			pp := sp.ports[0]
			if pp.lan != tc.want.lan || (pp.err != nil) != tc.want.err {
				t.Errorf("lan %v err %v, want lan %v err %v", pp.lan, pp.err, tc.want.lan, tc.want.err)
			}
			got := map[proxyKey]netip.AddrPort{}
			for k, lp := range sp.proxies {
				got[k] = lp.target
			}
			if len(got) != len(tc.want.proxies) || (len(got) > 0 && !reflect.DeepEqual(got, tc.want.proxies)) {
				t.Errorf("proxies %v, want %v", got, tc.want.proxies)
			}
			if !reflect.DeepEqual(sp.rules, tc.want.rules) {
				t.Errorf("rules %+v, want %+v", sp.rules, tc.want.rules)
			}
		})
	}
}

func TestFirewallRuleAdmits(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		r        FirewallRule
		src, dst string
		want     bool
	}{
		{FirewallRule{Drop: true}, "10.0.0.1", "192.0.2.1", false},
		{FirewallRule{}, "10.0.0.1", "192.0.2.1", true},
		{FirewallRule{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "10.0.0.1", "192.0.2.1", true},
		{FirewallRule{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "11.0.0.1", "192.0.2.1", false},
		{FirewallRule{Dest: a("192.0.2.1")}, "10.0.0.1", "192.0.2.1", true},
		{FirewallRule{Dest: a("192.0.2.1")}, "10.0.0.1", "192.0.2.2", false},
	} {
		if got := tc.r.admits(a(tc.src), a(tc.dst)); got != tc.want {
			t.Errorf("%+v admits %s→%s = %v, want %v", tc.r, tc.src, tc.dst, got, tc.want)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
		bad  bool
	}{
		{[]string{"10.1.2.3/8", " 192.168.1.5 ", "", "fd00::1"}, "10.0.0.0/8,192.168.1.5/32,fd00::1/128", false},
		{[]string{"::ffff:10.0.0.1"}, "10.0.0.1/32", false},
		{[]string{"10.0.0.0/33"}, "", true},
		{[]string{"example.com"}, "", true},
		{nil, "", false},
	} {
		got, err := ParsePrefixes(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("ParsePrefixes(%q) error %v, want error %v", tc.in, err, tc.bad)
			continue
		}
		if !tc.bad && prefixList(got) != tc.want {
			t.Errorf("ParsePrefixes(%q) = %s, want %s", tc.in, prefixList(got), tc.want)
		}
	}
	many := make([]string, MaxAllow+1)
	for i := range many {
		many[i] = "10.0.0.1"
	}
	if _, err := ParsePrefixes(many); err == nil {
		t.Error("more than MaxAllow prefixes accepted")
	}
}

func TestNormalizeAllow(t *testing.T) {
	in := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/8"), netip.MustParsePrefix("::ffff:10.0.0.0/104"), netip.MustParsePrefix("192.168.0.0/16")}
	if got := prefixList(normalizeAllow(in)); got != "10.0.0.0/8,192.168.0.0/16" {
		t.Errorf("normalizeAllow = %s", got)
	}
}

func FuzzParsePrefixes(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "fd00::/8", "1.2.3.4", "::ffff:1.2.3.4/120", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePrefixes([]string{s})
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("ParsePrefixes(%q) gave %v", s, p)
			}
			again, err := ParsePrefixes([]string{p.String()})
			if err != nil || len(again) != 1 || again[0] != p {
				t.Fatalf("round trip of %v: %v %v", p, again, err)
			}
		}
	})
}

func TestMergeRules(t *testing.T) {
	pfx := netip.MustParsePrefix
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		a, b FirewallRule
		want FirewallRule
	}{
		{"any and a list: the list", FirewallRule{Family: 4}, FirewallRule{Family: 4, Allow: []netip.Prefix{pfx("10.0.0.0/24")}},
			FirewallRule{Family: 4, Allow: []netip.Prefix{pfx("10.0.0.0/24")}}},
		{"two lists: what both allow", FirewallRule{Family: 4, Allow: []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.168.0.0/16")}}, FirewallRule{Family: 4, Allow: []netip.Prefix{pfx("10.1.0.0/16"), pfx("172.16.0.0/12")}},
			FirewallRule{Family: 4, Allow: []netip.Prefix{pfx("10.1.0.0/16")}}},
		{"disjoint lists: drop", FirewallRule{Family: 4, Allow: []netip.Prefix{pfx("10.0.0.0/8")}}, FirewallRule{Family: 4, Allow: []netip.Prefix{pfx("192.168.0.0/16")}},
			FirewallRule{Family: 4, Drop: true}},
		{"a drop wins", FirewallRule{Family: 4, Allow: []netip.Prefix{pfx("10.0.0.0/8")}}, FirewallRule{Family: 6, Drop: true},
			FirewallRule{Family: 0, Drop: true}},
		{"two lan addresses: drop", FirewallRule{Family: 4, Dest: a("192.0.2.1")}, FirewallRule{Family: 4, Dest: a("192.0.2.2")},
			FirewallRule{Family: 4, Drop: true}},
		{"loopback count and a filter", FirewallRule{Family: 4, LoopbackOnlyCount: true}, FirewallRule{Family: 0, Dest: a("192.0.2.1")},
			FirewallRule{Family: 0, Dest: a("192.0.2.1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mergeRules(tc.a, tc.b); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("mergeRules = %+v, want %+v", got, tc.want)
			}
			if got := mergeRules(tc.b, tc.a); got.Drop != tc.want.Drop || !reflect.DeepEqual(got.Allow, tc.want.Allow) {
				t.Errorf("mergeRules the other way = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPlanTwoDistrosOnePort(t *testing.T) {
	a := netip.MustParseAddr
	m := NewPortManager(PortsConfig{})
	m.settings["a"] = map[PortKey]PortSetting{{TCP, 8080}: {LAN: true}}
	m.settings["b"] = map[PortKey]PortSetting{{TCP, 8080}: {LAN: true, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}}
	sp := m.plan(map[string][]Listener{
		"a": {{Proto: TCP, Address: a("192.0.2.10"), Port: 8080}},
		"b": {{Proto: TCP, Address: a("198.51.100.7"), Port: 8080}},
	}, nil, nil, false)
	want := []FirewallRule{{Proto: TCP, Port: 8080, Family: 4, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}}
	if !reflect.DeepEqual(sp.rules, want) {
		t.Errorf("rules %+v, want the stricter %+v", sp.rules, want)
	}
	// A lan_address of the other family than the socket's: drop, and say why.
	m.settings["a"][PortKey{TCP, 8080}] = PortSetting{LAN: true, LANAddress: a("2001:db8::10")}
	sp = m.plan(map[string][]Listener{"a": {{Proto: TCP, Address: a("0.0.0.0"), Port: 8080}}}, nil, nil, false)
	if len(sp.rules) != 1 || !sp.rules[0].Drop || sp.rules[0].Dest.IsValid() || sp.ports[0].err == nil {
		t.Errorf("IPv6 lan_address for 0.0.0.0: rules %+v, err %v; want a drop and an error", sp.rules, sp.ports[0].err)
	}
	if _, err := normalizeRules(sp.rules); err != nil {
		t.Errorf("the firewall refuses the plan: %v", err)
	}
}

func TestBoundTo(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		binds []string
		local string
		want  bool
	}{
		{[]string{"0.0.0.0"}, "192.0.2.1", true},
		{[]string{"0.0.0.0"}, "2001:db8::1", false},
		{[]string{"::"}, "192.0.2.1", true},
		{[]string{"192.0.2.1"}, "192.0.2.1", true},
		{[]string{"192.0.2.1"}, "192.0.2.2", false},
		{nil, "192.0.2.1", false},
	} {
		var binds []netip.Addr
		for _, b := range tc.binds {
			binds = append(binds, a(b))
		}
		if got := boundTo(binds, a(tc.local)); got != tc.want {
			t.Errorf("boundTo(%v, %s) = %v, want %v", tc.binds, tc.local, got, tc.want)
		}
	}
}
