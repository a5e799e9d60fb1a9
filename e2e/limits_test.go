package e2e

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
)

// TestLimitsVersion1 runs the limits checks on a version 1 distro, whose
// cgroup is the host's /<cgroup>/<id> in its cgroup v2 hierarchy, or, on a
// host whose cgroup v2 lacks the controllers (a hybrid hierarchy), in each of
// its cgroup v1 hierarchies of memory, cpu, cpuacct and pids.
func TestLimitsVersion1(t *testing.T) {
	requireRoot(t)
	s := startServer(t, "")
	s.importTar("lim1", tinyRootfs(t))
	checkLimits(t, s, "lim1")
}

// TestLimitsVersion2 runs the same checks on a version 2 distro, whose
// cgroup is /sys/fs/cgroup/distros/<id> in the utility VM: one VM boot.
func TestLimitsVersion2(t *testing.T) {
	s := startV2Server(t)
	s.importV2("lim2", tinyRootfs(t))
	checkLimits(t, s, "lim2")
}

// eventLog collects the server's distro-oom events from the start of a test.
type eventLog struct {
	mu   sync.Mutex
	ooms []api.OOMEvent
}

func (l *eventLog) oomsOf(name string) []api.OOMEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []api.OOMEvent
	for _, e := range l.ooms {
		if e.Distro == name {
			out = append(out, e)
		}
	}
	return out
}

// limitsPatch PATCHes the distro's limits and checks they are answered.
func limitsPatch(t *testing.T, s *server, name string, body map[string]any) api.Distro {
	t.Helper()
	var d api.Distro
	if st, raw := s.api("PATCH", "/distros/"+name, body, &d); st != http.StatusOK {
		t.Fatalf("PATCH %v = %d %s", body, st, raw)
	}
	return d
}

// timeCPUSeconds parses busybox time's user and sys lines.
func timeCPUSeconds(t *testing.T, out string) float64 {
	t.Helper()
	var total float64
	for _, f := range []string{"user", "sys"} {
		m := regexp.MustCompile(f + `\s+(\d+)m\s*([\d.]+)s`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %s time in %q", f, out)
		}
		min, _ := strconv.ParseFloat(m[1], 64)
		sec, _ := strconv.ParseFloat(m[2], 64)
		total += 60*min + sec
	}
	return total
}

// checkLimits: limits are refused out of bounds, applied at once to the
// running distro (memory: an allocation past it is OOM-killed, an event and
// a count on the distro say so; pids: a fork loop stops at the limit, and
// raising it lets the loop through; cpu: a busy loop gets about the limit),
// kept across a restart, and the distro's memory use is its cgroup's (a
// tmpfs file counts).
func checkLimits(t *testing.T, s *server, name string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := s.client().Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	var log eventLog
	go func() {
		for e := range events.C {
			if e.Type == api.EventDistroOOM {
				log.mu.Lock()
				log.ooms = append(log.ooms, *e.OOM)
				log.mu.Unlock()
			}
		}
	}()
	if res := s.sh(name, "true"); res.ExitCode != 0 {
		t.Fatalf("start: %+v", res)
	}

	t.Run("validation", func(t *testing.T) {
		for _, body := range []map[string]any{
			{"memory_max": 1 << 20}, {"memory_max": -1}, {"cpu_max": 0.001}, {"cpu_max": 2000}, {"pids_max": 5}, {"pids_max": -1},
		} {
			var e apiErr
			if st, raw := s.api("PATCH", "/distros/"+name, body, &e); st != http.StatusBadRequest || e.Error.Code != api.CodeInvalid {
				t.Errorf("PATCH %v = %d %s, want 400 %s", body, st, raw, api.CodeInvalid)
			}
		}
		var d api.Distro
		s.api("GET", "/distros/"+name, nil, &d)
		if d.MemoryMax != 0 || d.CPUMax != 0 || d.PidsMax != 0 {
			t.Errorf("refused limits were stored: %+v", d)
		}
	})

	t.Run("cli", func(t *testing.T) {
		out, errOut, code := s.cli(nil, "limits", name, "--memory-max", "128M", "--cpu-max", "0.5", "--pids-max", "100")
		if code != 0 || !strings.Contains(out, "128.0 MiB") || !strings.Contains(out, "0.5 cores") || !strings.Contains(out, "pids     100") {
			t.Errorf("subsys limits --memory-max 128M --cpu-max 0.5 --pids-max 100 = %d %q %q", code, out, errOut)
		}
		var d api.Distro
		s.api("GET", "/distros/"+name, nil, &d)
		if d.MemoryMax != 128<<20 || d.CPUMax != 0.5 || d.PidsMax != 100 {
			t.Errorf("after the CLI set them: %+v", d)
		}
		if _, errOut, code := s.cli(nil, "limits", name, "--memory-max", "1M"); code == 0 || !strings.Contains(errOut, "32 MiB") {
			t.Errorf("subsys limits --memory-max 1M = %d %q, want the server's refusal", code, errOut)
		}
		out, errOut, code = s.cli(nil, "limits", name, "--memory-max", "none", "--cpu-max", "0", "--pids-max", "none")
		if code != 0 || strings.Count(out, "none") != 3 {
			t.Errorf("subsys limits with every limit removed = %d %q %q", code, out, errOut)
		}
		if out, _, code := s.cli(nil, "limits", name); code != 0 || !strings.Contains(out, "memory") || !strings.Contains(out, "of a core") {
			t.Errorf("subsys limits %s = %d %q", name, code, out)
		}
	})

	t.Run("memory use is the cgroup's", func(t *testing.T) {
		// A tmpfs file is charged to the cgroup that wrote it, and is in no
		// process's resident memory: only a cgroup's figure counts it.
		var before api.Distro
		waitFor(t, 30*time.Second, "a memory sample", func() bool {
			s.api("GET", "/distros/"+name, nil, &before)
			return before.MemoryBytes > 0
		})
		if res := s.sh(name, "head -c 104857600 /dev/zero > /tmp/held && echo ok"); res.Stdout != "ok\n" {
			t.Fatalf("write /tmp/held: %+v", res)
		}
		var d api.Distro
		waitFor(t, 30*time.Second, "memory_bytes to count the 100 MiB tmpfs file", func() bool {
			s.api("GET", "/distros/"+name, nil, &d)
			return d.MemoryBytes >= before.MemoryBytes+90<<20
		})
		if d.Pids <= 0 {
			t.Errorf("pids = %d, want the distro's processes", d.Pids)
		}
		s.sh(name, "rm -f /tmp/held")
		waitFor(t, 30*time.Second, "memory_bytes to fall after the file goes", func() bool {
			s.api("GET", "/distros/"+name, nil, &d)
			return d.MemoryBytes < before.MemoryBytes+50<<20
		})
	})

	t.Run("memory_max", func(t *testing.T) {
		d := limitsPatch(t, s, name, map[string]any{"memory_max": 64 << 20})
		if d.MemoryMax != 64<<20 {
			t.Errorf("PATCH answered memory_max %d", d.MemoryMax)
		}
		// tail keeps the endless line it reads: 200 MB past a 64 MiB limit.
		res := s.sh(name, "head -c 200000000 /dev/zero | busybox tail > /dev/null; echo status $?")
		if !strings.Contains(res.Stdout, "status 137") {
			t.Errorf("200 MB under memory_max 64 MiB: %+v, want tail killed (137)", res)
		}
		waitFor(t, 30*time.Second, "a distro-oom event", func() bool { return len(log.oomsOf(name)) > 0 })
		if e := log.oomsOf(name)[0]; e.OOMKills < 1 || e.At.IsZero() {
			t.Errorf("oom event %+v", e)
		}
		var got api.Distro
		waitFor(t, 10*time.Second, "oom_kills on the distro", func() bool {
			s.api("GET", "/distros/"+name, nil, &got)
			return got.OOMKills >= 1 && !got.LastOOMAt.IsZero()
		})
		// Without the limit the same allocation succeeds: the probe could see it pass.
		limitsPatch(t, s, name, map[string]any{"memory_max": 0})
		if res := s.sh(name, "head -c 200000000 /dev/zero | busybox tail > /dev/null; echo status $?"); !strings.Contains(res.Stdout, "status 0") {
			t.Errorf("200 MB with no limit: %+v", res)
		}
	})

	// The sleeps a refused loop leaves are killed by a later exec (a kill
	// in the loop's own script could not fork either).
	forkLoop := "for i in $(seq 100); do sleep 30 >/dev/null 2>&1 & done; echo started; pidof sleep | wc -w"
	killSleeps := func() { s.sh(name, "kill $(pidof sleep) 2>/dev/null; true") }
	sleeps := func(res api.ExecResult) int {
		f := strings.Fields(res.Stdout)
		if len(f) == 0 {
			return -1
		}
		n, _ := strconv.Atoi(f[len(f)-1])
		return n
	}
	t.Run("pids_max", func(t *testing.T) {
		limitsPatch(t, s, name, map[string]any{"pids_max": 20})
		res := s.sh(name, forkLoop)
		if !strings.Contains(res.Stderr, "Resource temporarily unavailable") {
			t.Errorf("100 sleeps under pids_max 20: %+v, want fork refused", res)
		}
		limitsPatch(t, s, name, map[string]any{"pids_max": 500})
		if n := sleeps(s.sh(name, "pidof sleep | wc -w")); n >= 20 || n <= 0 {
			t.Errorf("%d sleeps ran under pids_max 20, want some and fewer than 20", n)
		}
		killSleeps()
		res = s.sh(name, forkLoop)
		if strings.Contains(res.Stderr, "Resource temporarily unavailable") {
			t.Errorf("100 sleeps under pids_max 500: %+v, want all of them", res)
		}
		// The loop's children may not all have become sleep yet.
		waitFor(t, 20*time.Second, "100 sleeps under pids_max 500", func() bool {
			return sleeps(s.sh(name, "pidof sleep | wc -w")) == 100
		})
		killSleeps()
	})

	t.Run("cpu_max", func(t *testing.T) {
		busy := "busybox time timeout 3 sh -c 'while :; do :; done' 2>&1; true"
		// A busy host gives an unlimited loop little CPU too, and then the
		// probe cannot tell: the pair is measured again, up to 3 times,
		// until the unlimited loop gets clearly more than the limit allows.
		var free, limited float64
		for attempt := 1; attempt <= 3; attempt++ {
			limitsPatch(t, s, name, map[string]any{"cpu_max": 0})
			free = timeCPUSeconds(t, s.sh(name, busy).Stdout)
			limitsPatch(t, s, name, map[string]any{"cpu_max": 0.5})
			limited = timeCPUSeconds(t, s.sh(name, busy).Stdout)
			t.Logf("a 3 s busy loop: %.2f s of CPU without a limit, %.2f s under cpu_max 0.5", free, limited)
			if free > 0.6*3+0.2 {
				break
			}
		}
		if limited > 0.6*3+0.2 {
			t.Errorf("under cpu_max 0.5 a 3 s busy loop used %.2f s of CPU, want at most ~1.8 s", limited)
		}
		if free <= limited {
			t.Errorf("without a limit the loop used %.2f s, no more than under it (%.2f s): the probe sees no limit", free, limited)
		}
	})

	t.Run("kept across a restart", func(t *testing.T) {
		limitsPatch(t, s, name, map[string]any{"pids_max": 20, "memory_max": 96 << 20, "cpu_max": 1.5})
		if st, raw := s.api("POST", "/distros/"+name+"/terminate", nil, nil); st/100 != 2 {
			t.Fatalf("terminate: %d %s", st, raw)
		}
		var d api.Distro
		s.api("GET", "/distros/"+name, nil, &d)
		if d.PidsMax != 20 || d.MemoryMax != 96<<20 || d.CPUMax != 1.5 || d.OOMKills != 0 || d.State != api.StateStopped {
			t.Errorf("stopped distro: %+v, want its limits and no OOM kills", d)
		}
		res := s.sh(name, forkLoop) // starts it
		if !strings.Contains(res.Stderr, "Resource temporarily unavailable") {
			t.Errorf("after a restart, 100 sleeps under pids_max 20: %+v, want fork refused", res)
		}
		var after api.Distro
		s.api("GET", "/distros/"+name, nil, &after)
		if after.OOMKills != 0 || after.PidsMax != 20 {
			t.Errorf("restarted distro: %+v, want its limits and no OOM kills of the run before", after)
		}
		limitsPatch(t, s, name, map[string]any{"pids_max": 0, "memory_max": 0, "cpu_max": 0})
		killSleeps()
		var removed api.Distro
		s.api("GET", "/distros/"+name, nil, &removed)
		if removed.PidsMax != 0 || removed.MemoryMax != 0 || removed.CPUMax != 0 {
			t.Errorf("limits removed: %+v", removed)
		}
	})
}
