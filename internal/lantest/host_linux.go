package lantest

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
)

// HasNFTable reports whether an nftables table of family inet has that name,
// asking on a connection of its own.
func HasNFTable(t testing.TB, name string) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(tables, func(tb *nftables.Table) bool { return tb.Name == name })
}

// Cgroup2Root returns where a cgroup v2 hierarchy is mounted showing its
// root (what subsys needs to give distros cgroups of their own), and false
// when none is.
func Cgroup2Root() (string, bool) {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	for _, l := range strings.Split(string(raw), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		if f := strings.Fields(pre); ok && strings.HasPrefix(post, "cgroup2 ") && len(f) >= 5 && f[3] == "/" {
			return f[4], true
		}
	}
	return "", false
}
