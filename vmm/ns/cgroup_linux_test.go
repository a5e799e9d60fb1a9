package ns

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/vmm/agent"
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

// TestCgroups: a distro starts in a cgroup of its own under Config.Cgroup,
// with every process it starts; a distro started without (by an older server)
// is moved in whole when a Backend with cgroups adopts it; Stop removes the
// cgroup.
func TestCgroups(t *testing.T) {
	e := newEnv(t, "cg")
	parent := fmt.Sprintf("subsys-test-%d", os.Getpid())
	withCg := e.cfg
	withCg.Cgroup = parent
	b := New(withCg)
	if _, _, ok := b.DistroCgroup(); !ok {
		testenv.SkipOrFail(t, "no cgroup v2 hierarchy here")
	}
	t.Cleanup(func() { os.Remove(b.cg.dir) })
	want := "0::/" + parent + "/" + e.spec.ID + "\n"
	cgroupOf := func(c *agent.Client) string {
		return shOut(t, c, "cat /proc/self/cgroup | grep ^0::; cat /proc/1/cgroup | grep ^0::")
	}

	// Started without cgroups, then adopted by a Backend with them.
	c := e.start(t)
	shOut(t, c, "nohup sleep 1004 >/dev/null 2>&1 &")
	if got := cgroupOf(c); strings.Contains(got, parent) {
		t.Fatalf("a Backend without Cgroup put the distro in one: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c2, err := b.Connect(ctx, e.spec)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := shOut(t, c2, "for p in $(pidof sleep) 1; do grep ^0:: /proc/$p/cgroup; done"); got != want+want {
		t.Errorf("after adoption, the agent's and the sleeper's cgroups: %q, want %q twice", got, want)
	}
	e.b = b
	if err := b.Stop(ctx, e.spec); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.cg.dir, e.spec.ID)); !os.IsNotExist(err) {
		t.Errorf("the distro's cgroup outlived it: %v", err)
	}

	// Started by the Backend with cgroups: in it from the start.
	c3, err := b.Start(ctx, e.spec)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	// Inside, the distro's cgroup is the root of its cgroup namespace; the
	// host sees where it is.
	if got := cgroupOf(c3); got != "0::/\n0::/\n" {
		t.Errorf("a new distro's cgroups as it sees them: %q, want the namespace's root twice", got)
	}
	_, pidFile, _ := b.paths(e.spec.ID)
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), want) {
		t.Errorf("a new distro's agent's cgroup as the host sees it: %q, want %q", raw, want)
	}
}
