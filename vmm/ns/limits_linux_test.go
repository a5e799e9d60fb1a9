package ns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/vmm/cgroup"
)

// TestCgroupLimits: a start writes the distro's limits into its cgroup
// before the agent joins it, SetLimits changes them while it runs, and
// Usage reads the cgroup's figures — the cgroup v2's, or on a host whose
// cgroup v2 lacks the controllers (a hybrid hierarchy) its cgroup v1
// hierarchies'. A host with neither refuses limits with
// cgroup.ErrNoController, and the rest is skipped (failed under
// SUBSYS_TEST_STRICT=1).
func TestCgroupLimits(t *testing.T) {
	e := newEnv(t, "lim")
	parent := fmt.Sprintf("subsys-test-%d", os.Getpid())
	withCg := e.cfg
	withCg.Cgroup = parent
	e.b = New(withCg)
	if e.b.cg == nil {
		testenv.SkipOrFail(t, "no cgroup v2 hierarchy here")
	}
	t.Cleanup(func() {
		os.Remove(e.b.cg.dir)
		if e.b.legacy != nil {
			for _, d := range e.b.legacy.dirs {
				os.Remove(d)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e.spec.Limits = cgroup.Limits{MemoryMax: 64 << 20, CPUMax: 0.5, PidsMax: 20}
	if e.b.cg.controllers != nil && e.b.legacy == nil {
		if _, err := e.b.Start(ctx, e.spec); !errors.Is(err, cgroup.ErrNoController) {
			t.Errorf("Start with limits and no controllers = %v, want ErrNoController", err)
		}
		e.spec.Limits = cgroup.Limits{}
		e.start(t)
		e.spec.Limits = cgroup.Limits{PidsMax: 20}
		if err := e.b.SetLimits(ctx, e.spec); !errors.Is(err, cgroup.ErrNoController) {
			t.Errorf("SetLimits with no controllers = %v, want ErrNoController", err)
		}
		testenv.SkipOrFailf(t, "the limits themselves: %v", e.b.cg.controllers)
		return
	}
	read := func() (cgroup.Stats, error) {
		if e.b.legacy != nil {
			return e.b.legacy.read(e.spec.ID)
		}
		return cgroup.Read(filepath.Join(e.b.cg.dir, e.spec.ID))
	}
	c := e.start(t)
	st, err := read()
	if err != nil || st.Limits != e.spec.Limits {
		t.Errorf("the cgroup after a start with limits %+v: %+v, %v", e.spec.Limits, st.Limits, err)
	}
	if e.b.legacy != nil {
		// Every process of the distro is in its v1 memory cgroup: the
		// agent, and what it starts.
		// (The path is relative to the distro's cgroup namespace, rooted
		// at the server's own cgroups.)
		want := fmt.Sprintf("/%s/%s", parent, e.spec.ID)
		got := shOut(t, c, "grep :memory: /proc/1/cgroup; sh -c 'grep :memory: /proc/self/cgroup'")
		lines := strings.Split(strings.TrimSpace(got), "\n")
		if len(lines) != 2 || !strings.HasSuffix(lines[0], want) || !strings.HasSuffix(lines[1], want) {
			t.Errorf("the distro's memory cgroups (v1): %q, want both in %s", got, want)
		}
	}
	e.spec.Limits = cgroup.Limits{MemoryMax: 128 << 20}
	if err := e.b.SetLimits(ctx, e.spec); err != nil {
		t.Fatal(err)
	}
	if st, err := read(); err != nil || st.Limits != e.spec.Limits {
		t.Errorf("the cgroup after SetLimits(%+v): %+v, %v", e.spec.Limits, st.Limits, err)
	}
	shOut(t, c, "head -c 33554432 /dev/zero > /tmp/held")
	u, err := e.b.Usage(ctx, e.spec)
	if err != nil {
		t.Fatal(err)
	}
	// The tmpfs file is in the cgroup's memory and in no process's.
	if u.MemoryBytes < 32<<20 || u.Processes < 1 || u.CPUSeconds <= 0 {
		t.Errorf("Usage = %+v, want at least the 32 MiB tmpfs file, a process and some CPU", u)
	}
}
