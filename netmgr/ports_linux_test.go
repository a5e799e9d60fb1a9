package netmgr

import (
	"testing"
)

func TestDistroOfCgroup(t *testing.T) {
	ds := []Distro{{ID: "a", Cgroup: "/subsys/a"}, {ID: "ab", Cgroup: "/subsys/ab"}, {ID: "v2"}}
	for _, tc := range []struct {
		procCgroup, want string
	}{
		{"0::/subsys/a\n", "a"},
		{"12:pids:/\n0::/subsys/ab/nested/x\n", "ab"},
		{"0::/subsys/abc\n", ""},
		{"0::/\n", ""},
		{"1:name=systemd:/subsys/a\n", ""},
		{"", ""},
	} {
		got, ok := distroOfCgroup(tc.procCgroup, ds)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("distroOfCgroup(%q) = %q, %v; want %q", tc.procCgroup, got, ok, tc.want)
		}
	}
}
