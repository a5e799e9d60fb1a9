package agent

import (
	"slices"
	"strings"
	"testing"
)

func TestAddHosts(t *testing.T) {
	alias := map[string]string{HostAliasName: "10.0.2.2"}
	tests := []struct {
		name, in string
		extra    map[string]string
		want     string
	}{
		{"none", "127.0.0.1\tlocalhost\n", nil, "127.0.0.1\tlocalhost\n"},
		{"added", "127.0.0.1\tlocalhost\n", alias, "127.0.0.1\tlocalhost\n10.0.2.2\thost.subsys.internal\t# subsys\n"},
		{"an earlier start's line replaced", "127.0.0.1\tlocalhost\n10.0.9.9\thost.subsys.internal\t# subsys\n", alias,
			"127.0.0.1\tlocalhost\n10.0.2.2\thost.subsys.internal\t# subsys\n"},
		{"a line of the distro's naming it replaced", "1.2.3.4 host.subsys.internal other\n::1 localhost\n", alias,
			"::1 localhost\n10.0.2.2\thost.subsys.internal\t# subsys\n"},
		{"no final newline", "127.0.0.1 localhost", alias, "127.0.0.1 localhost\n10.0.2.2\thost.subsys.internal\t# subsys\n"},
		{"words that would break the file left out", "", map[string]string{"a b": "1.1.1.1", "c": "2.2.2.2\n3.3.3.3 evil", "d#": "4.4.4.4"}, ""},
	}
	for _, tt := range tests {
		got := string(addHosts([]byte(tt.in), tt.extra))
		if got != tt.want {
			t.Errorf("%s: addHosts(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
		if again := string(addHosts([]byte(got), tt.extra)); again != got {
			t.Errorf("%s: not idempotent: %q then %q", tt.name, got, again)
		}
	}
}

func TestNetworkConfigCheck(t *testing.T) {
	good := NetworkConfig{MAC: "52:54:00:12:34:56", Address4: "10.0.2.15/24", Gateway4: "10.0.2.2", DNS: []string{"10.0.2.3", "fec0::3"}, HostAddress: "10.0.2.2"}
	tests := []struct {
		name string
		edit func(*NetworkConfig)
		bad  string // "" when good
	}{
		{"good", func(*NetworkConfig) {}, ""},
		{"no host address", func(c *NetworkConfig) { c.HostAddress = "" }, ""},
		{"bad mac", func(c *NetworkConfig) { c.MAC = "zz" }, "mac"},
		{"v6 address4", func(c *NetworkConfig) { c.Address4 = "fec0::15/64" }, "IPv4 prefix"},
		{"gateway outside", func(c *NetworkConfig) { c.Gateway4 = "10.0.3.2" }, "gateway4"},
		{"dns with a newline", func(c *NetworkConfig) { c.DNS = []string{"10.0.2.3\nnameserver 6.6.6.6"} }, "not an IP"},
		{"host address a name", func(c *NetworkConfig) { c.HostAddress = "evil host" }, "not an IP"},
		{"too many dns", func(c *NetworkConfig) { c.DNS = []string{"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"} }, "at most 3"},
	}
	for _, tt := range tests {
		c := good
		c.DNS = append([]string(nil), good.DNS...)
		tt.edit(&c)
		err := c.check()
		if (tt.bad == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.bad) {
			t.Errorf("%s: check() = %v, want %q", tt.name, err, tt.bad)
		}
	}
	if got := string(good.resolvConf()); !strings.Contains(got, "nameserver 10.0.2.3\nnameserver fec0::3\n") {
		t.Errorf("resolvConf = %q", got)
	}
}

func FuzzAddHosts(f *testing.F) {
	f.Add("127.0.0.1 localhost\n1.2.3.4 host.subsys.internal\n", "10.0.2.2")
	f.Fuzz(func(t *testing.T, in, addr string) {
		out := string(addHosts([]byte(in), map[string]string{HostAliasName: addr}))
		if again := string(addHosts([]byte(out), map[string]string{HostAliasName: addr})); again != out {
			t.Fatalf("not idempotent: %q then %q", out, again)
		}
		if !validHostsWord(addr) {
			return
		}
		// Exactly one line maps the name: ours.
		n := 0
		for _, l := range strings.Split(out, "\n") {
			if f := hostsFields(l); len(f) > 1 && slices.Contains(f[1:], HostAliasName) {
				n++
				if l != addr+"\t"+HostAliasName+"\t"+managedMark {
					t.Fatalf("line %q maps %s", l, HostAliasName)
				}
			}
		}
		if n != 1 {
			t.Fatalf("%q maps %s %d times", out, HostAliasName, n)
		}
	})
}

func TestDistroOfCgroup(t *testing.T) {
	for in, want := range map[string]string{
		"0::/distros/abc-123\n":                  "abc-123",
		"0::/distros/abc-123/user.slice\n":       "abc-123",
		"0::/\n":                                 "",
		"0::/distros/../etc\n":                   "",
		"1:name=systemd:/distros/abc\n":          "",
		"0::/distros/" + strings.Repeat("a", 65): "",
	} {
		got, ok := distroOfCgroup(in)
		if got != want || ok != (want != "") {
			t.Errorf("distroOfCgroup(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
