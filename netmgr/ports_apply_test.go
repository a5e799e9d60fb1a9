package netmgr

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/subsys-dev/subsys/netmgr/sockdiag"
)

func TestConnectionsToCut(t *testing.T) {
	a := netip.MustParseAddr
	ap := netip.MustParseAddrPort
	pfx := netip.MustParsePrefix
	tcp := func(addr string, port uint16) Listener { return Listener{Proto: TCP, Address: a(addr), Port: port} }
	conn := func(local, remote string) Socket {
		return Socket{Proto: TCP, State: sockdiag.StateEstablished, Local: ap(local), Remote: ap(remote)}
	}
	off := map[PortKey]PortSetting{{TCP, 80}: {}}

	for _, tc := range []struct {
		name      string
		settings  map[string]map[PortKey]PortSetting
		listeners map[string][]Listener
		conns     []Socket
		cut       []int // indexes into conns
	}{
		{
			name:      "LAN off: a LAN client is cut, this host's are not",
			settings:  map[string]map[PortKey]PortSetting{"d": off},
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			conns: []Socket{
				conn("192.0.2.10:80", "192.0.2.99:40000"),
				conn("127.0.0.1:80", "127.0.0.1:40001"),
				conn("192.0.2.10:80", "192.0.2.10:40002"), // from the host's own LAN address
			},
			cut: []int{0},
		},
		{
			name:      "no setting is LAN off",
			listeners: map[string][]Listener{"d": {tcp("::", 80)}},
			conns: []Socket{
				conn("192.0.2.10:80", "192.0.2.99:40000"),
				conn("[2001:db8::10]:80", "[2001:db8::99]:40000"),
				conn("[::1]:80", "[::1]:40000"),
			},
			cut: []int{0, 1},
		},
		{
			name:      "LAN on, no filter: nothing is cut",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{})},
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			conns:     []Socket{conn("192.0.2.10:80", "192.0.2.99:40000")},
		},
		{
			name:      "LAN on with an allowlist: clients outside it are cut",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{Allow: []netip.Prefix{pfx("10.0.0.0/8")}})},
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			conns: []Socket{
				conn("192.0.2.10:80", "10.1.2.3:40000"),
				conn("192.0.2.10:80", "192.0.2.99:40000"),
			},
			cut: []int{1},
		},
		{
			name:      "LAN on lan_address: connections to another address are cut",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{LANAddress: a("192.0.2.10")})},
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			conns: []Socket{
				conn("192.0.2.10:80", "192.0.2.99:40000"),
				conn("198.51.100.10:80", "192.0.2.99:40001"),
			},
			cut: []int{1},
		},
		{
			name:      "a connection to another address on the port is a host program's",
			settings:  map[string]map[PortKey]PortSetting{"d": off},
			listeners: map[string][]Listener{"d": {tcp("192.0.2.10", 80)}},
			conns: []Socket{
				conn("192.0.2.10:80", "192.0.2.99:40000"),
				conn("198.51.100.10:80", "192.0.2.99:40001"),
				conn("[2001:db8::10]:80", "[2001:db8::99]:40002"),
			},
			cut: []int{0},
		},
		{
			name:      "the IPv4 wildcard does not take IPv6 connections",
			settings:  map[string]map[PortKey]PortSetting{"d": off},
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			conns:     []Socket{conn("[2001:db8::10]:80", "[2001:db8::99]:40000")},
		},
		{
			name:      "an IPv4-mapped client of the IPv6 wildcard is an IPv4 client",
			settings:  map[string]map[PortKey]PortSetting{"d": on80(PortSetting{Allow: []netip.Prefix{pfx("10.0.0.0/8")}})},
			listeners: map[string][]Listener{"d": {tcp("::", 80)}},
			conns: []Socket{
				conn("[::ffff:192.0.2.10]:80", "[::ffff:10.0.0.1]:40000"),
				conn("[::ffff:192.0.2.10]:80", "[::ffff:192.0.2.99]:40001"),
			},
			cut: []int{1},
		},
		{
			name:      "a loopback-bound port is left to its LAN listeners",
			settings:  map[string]map[PortKey]PortSetting{"d": off},
			listeners: map[string][]Listener{"d": {tcp("127.0.0.1", 80)}},
			conns:     []Socket{conn("127.0.0.1:80", "127.0.0.1:40000")},
		},
		{
			name:      "another port, or no distro port at all, is not touched",
			settings:  map[string]map[PortKey]PortSetting{"d": off},
			listeners: map[string][]Listener{"d": {tcp("0.0.0.0", 80)}},
			conns:     []Socket{conn("192.0.2.10:22", "192.0.2.99:40000")},
		},
		{
			name:      "UDP has no connections to cut",
			listeners: map[string][]Listener{"d": {{Proto: UDP, Address: a("0.0.0.0"), Port: 80}}},
			conns:     []Socket{conn("192.0.2.10:80", "192.0.2.99:40000")},
		},
		{
			name: "two distros on one port: the stricter rule cuts for both",
			settings: map[string]map[PortKey]PortSetting{
				"a": on80(PortSetting{}),
				"b": on80(PortSetting{Allow: []netip.Prefix{pfx("10.0.0.0/8")}}),
			},
			listeners: map[string][]Listener{"a": {tcp("192.0.2.10", 80)}, "b": {tcp("198.51.100.10", 80)}},
			conns: []Socket{
				conn("192.0.2.10:80", "192.0.2.99:40000"),
				conn("192.0.2.10:80", "10.0.0.1:40001"),
			},
			cut: []int{0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := planScan(tc.settings, tc.listeners, nil, planHost, false)
			got := connectionsToCut(sp, planHost, tc.conns)
			var want []Socket
			for _, i := range tc.cut {
				want = append(want, tc.conns[i])
			}
			if !slices.Equal(got, want) {
				t.Errorf("cut %v, want %v", got, want)
			}
		})
	}
}
