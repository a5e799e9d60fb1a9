package agent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/yamux"

	"github.com/subsys-dev/subsys/vmm/cgroup"
)

// fakeCgroup makes dir/id shaped like a cgroup v2 directory: the files
// exist, as the kernel's do, with the figures given.
func fakeCgroup(t *testing.T, dir, id string) string {
	t.Helper()
	cg := filepath.Join(dir, id)
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{
		"cpu.stat": "usage_usec 2500000\nuser_usec 2000000\n", "memory.current": "1048576\n", "pids.current": "4\n",
		"memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n", "memory.max": "max\n", "cpu.max": "max 100000\n", "pids.max": "max\n",
	} {
		if err := os.WriteFile(filepath.Join(cg, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return cg
}

// TestVMDistroLimits: set-limits writes the running distro's cgroup files
// and distro-cgroup reads them back with its figures; a bad id or limit is
// a bad request, a distro that is not running says so.
func TestVMDistroLimits(t *testing.T) {
	f := newVMFixture(t)
	ctx := context.Background()
	f.h.cgroupDir = t.TempDir()
	cg := fakeCgroup(t, f.h.cgroupDir, "d1")

	l := cgroup.Limits{MemoryMax: 64 << 20, CPUMax: 0.5, PidsMax: 20}
	if err := f.c.SetDistroLimits(ctx, "d1", l); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"memory.max": "67108864", "cpu.max": "50000 100000", "pids.max": "20"} {
		if raw, _ := os.ReadFile(filepath.Join(cg, file)); string(raw) != want {
			t.Errorf("%s = %q, want %q", file, raw, want)
		}
	}
	st, err := f.c.DistroCgroup(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	want := cgroup.Stats{MemoryCurrent: 1 << 20, CPUUsageUsec: 2500000, PidsCurrent: 4, OOMKills: 1, Limits: l}
	if st != want {
		t.Errorf("DistroCgroup = %+v, want %+v", st, want)
	}
	for _, tc := range []struct {
		id   string
		l    cgroup.Limits
		want error
	}{
		{"../d1", l, ErrBadRequest},
		{"d1", cgroup.Limits{MemoryMax: 1}, ErrBadRequest},
		{"d2", l, ErrDistroNotRunning},
	} {
		if err := f.c.SetDistroLimits(ctx, tc.id, tc.l); !errors.Is(err, tc.want) {
			t.Errorf("SetDistroLimits(%q, %+v) = %v, want %v", tc.id, tc.l, err, tc.want)
		}
	}
	if _, err := f.c.DistroCgroup(ctx, "d2"); !errors.Is(err, ErrDistroNotRunning) {
		t.Errorf("DistroCgroup(d2) = %v, want ErrDistroNotRunning", err)
	}
	if _, err := f.c.DistroCgroup(ctx, "a/b"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("DistroCgroup(a/b) = %v, want ErrBadRequest", err)
	}
}

// TestVMDistroCgroupLimitsAtStart: the cgroup a distro's agent is born in
// gets its limits first, and a start without limits clears what a run
// before left there.
func TestVMDistroCgroupLimitsAtStart(t *testing.T) {
	h := newVMHost(testLogger(t))
	h.cgroupDir = filepath.Join(t.TempDir(), "distros")
	cg := fakeCgroup(t, h.cgroupDir, "d3")
	f, err := h.cgroup("d3", &cgroup.Limits{PidsMax: 30})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if raw, _ := os.ReadFile(filepath.Join(cg, "pids.max")); string(raw) != "30" {
		t.Errorf("pids.max at start = %q, want 30", raw)
	}
	f, err = h.cgroup("d3", nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if raw, _ := os.ReadFile(filepath.Join(cg, "pids.max")); string(raw) != "max" {
		t.Errorf("pids.max at a start without limits = %q, want max", raw)
	}
}

// TestDistroCgroupBoundsHostileReply: the figures of a distro-cgroup reply
// come from the guest; negative or absurd ones are bounded before the host
// uses them.
func TestDistroCgroupBoundsHostileReply(t *testing.T) {
	a, b := socketPair(t)
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	sess, err := yamux.Server(a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	go func() {
		for {
			st, err := sess.Accept()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				bufio.NewReader(st).ReadString('\n')
				io.WriteString(st, `{"ok":true,"cgroup":{"memory_current":-5,"cpu_usage_usec":9223372036854775807,"pids_current":-1,"oom_kills":-7,`+
					`"limits":{"memory_max":-1,"cpu_max":1e300,"pids_max":9223372036854775807}}}`+"\n")
			}()
		}
	}()
	c, err := NewClient(b)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.DistroCgroup(context.Background(), "d1")
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryCurrent != 0 || st.PidsCurrent != 0 || st.OOMKills != 0 || st.CPUUsageUsec != 1<<53 ||
		st.Limits.MemoryMax != 0 || st.Limits.CPUMax != cgroup.MaxCPUMax || st.Limits.PidsMax != 1<<53 {
		t.Errorf("hostile figures not bounded: %+v", st)
	}
}
