package ns

import (
	"strings"
	"testing"
)

func TestCgroup2Mount(t *testing.T) {
	for _, tc := range []struct {
		name, table, mount, root string
		bad                      bool
	}{
		{"pure v2", "25 1 0:23 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n", "/sys/fs/cgroup", "/", false},
		{"hybrid", "30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup/unified", "/", false},
		{"namespaced", "41 31 0:38 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup", "/user.slice", false},
		{"escaped space", `41 31 0:38 / /mnt/cg\040v2 rw - cgroup2 cgroup2 rw` + "\n", "/mnt/cg v2", "/", false},
		{"optional fields", "41 31 0:38 / /cg rw shared:1 master:2 - cgroup2 none rw\n", "/cg", "/", false},
		{"none", "30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", "", "", true},
		{"garbage", "nonsense\n\n - \n", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mount, root, err := cgroup2Mount(strings.NewReader(tc.table))
			if (err != nil) != tc.bad || mount != tc.mount || root != tc.root {
				t.Errorf("cgroup2Mount = %q, %q, %v; want %q, %q, error %v", mount, root, err, tc.mount, tc.root, tc.bad)
			}
		})
	}
}

func FuzzCgroup2Mount(f *testing.F) {
	f.Add("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
	f.Add(`1 2 3 \040 \1 - cgroup2`)
	f.Fuzz(func(t *testing.T, table string) {
		mount, _, err := cgroup2Mount(strings.NewReader(table))
		if err == nil && mount == "" && !strings.Contains(table, " - cgroup2") {
			t.Fatalf("a mount found in %q", table)
		}
	})
}
