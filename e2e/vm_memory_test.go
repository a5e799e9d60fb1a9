//go:build linux

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
)

const mib = 1 << 20

// cacheBurst makes the distro's guest read a 1 GiB file it wrote earlier,
// after its caches were dropped: a GiB of page cache, which QEMU's resident
// memory on the host grows by.
const cacheBurst = "sync; echo 3 > /proc/sys/vm/drop_caches; cat /root/big > /dev/null"

// qemuRSS reads QEMU's resident memory from /proc, as GET /vm does, without
// asking the server: a test's polling must not keep the guest busy (GET /vm
// asks the VM's agent), or the VM would never be idle enough to reclaim.
func qemuRSS(t testing.TB, s *server) int64 {
	t.Helper()
	pid := qemuPID(s.data)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("QEMU's status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil && len(f) == 2 && f[1] == "kB" {
				return n << 10
			}
		}
	}
	t.Fatalf("no VmRSS in QEMU's status")
	return 0
}

// waitRSS waits until QEMU's resident memory satisfies ok and returns it.
func waitRSS(t testing.TB, s *server, timeout time.Duration, what string, ok func(int64) bool) int64 {
	t.Helper()
	var rss int64
	waitFor(t, timeout, what, func() bool {
		rss = qemuRSS(t, s)
		return ok(rss)
	})
	return rss
}

// settledRSS waits until QEMU's resident memory holds still (three samples
// over 4 s within 2 %: longer than the 2 s the guest waits before reporting
// free pages) and returns it.
func settledRSS(t testing.TB, s *server) int64 {
	t.Helper()
	var samples []int64
	waitFor(t, 90*time.Second, "QEMU's resident memory to settle", func() bool {
		time.Sleep(2 * time.Second) // the samples' spacing, not a wait for a condition
		samples = append(samples, qemuRSS(t, s))
		if len(samples) < 3 {
			return false
		}
		w := samples[len(samples)-3:]
		lo, hi := min(w[0], w[1], w[2]), max(w[0], w[1], w[2])
		return lo > 0 && hi-lo <= hi/50
	})
	return samples[len(samples)-1]
}

// TestVersion2MemoryReclaim: a GiB of page cache in the guest costs the host
// a GiB of QEMU's memory, and POST /vm/reclaim gives it back: the guest drops
// its cache, the balloon reports the pages, and QEMU's resident memory falls
// to within 20 % of what it was before the burst. GET /vm shows the guest's
// memory and a history of samples; a bad memory_reclaim is refused.
func TestVersion2MemoryReclaim(t *testing.T) {
	s := startV2Server(t)
	if st, raw := s.api("PUT", "/settings", map[string]any{"memory_reclaim": "sometimes"}, nil); st != http.StatusBadRequest {
		t.Errorf("PUT memory_reclaim=sometimes: %d %s, want 400", st, raw)
	}
	// Only the reclaim asked for here: the idle loop stays out of it.
	if st, raw := s.api("PUT", "/settings", map[string]any{"memory_reclaim": "disabled"}, nil); st != 200 {
		t.Fatalf("PUT memory_reclaim=disabled: %d %s", st, raw)
	}
	s.importV2("mem", tinyRootfs(t))
	if res := s.sh("mem", "dd if=/dev/zero of=/root/big bs=1M count=1024 2>&1 && sync"); res.ExitCode != 0 {
		t.Fatalf("writing the file: %+v", res)
	}
	var r api.VMReclaim
	if st, raw := s.api("POST", "/vm/reclaim", nil, &r); st != 200 {
		t.Fatalf("POST /vm/reclaim: %d %s", st, raw)
	}
	before := settledRSS(t, s)

	if res := s.sh("mem", cacheBurst); res.ExitCode != 0 {
		t.Fatalf("the cache burst: %+v", res)
	}
	peak := qemuRSS(t, s)
	if peak < before+700*mib {
		t.Fatalf("QEMU's resident memory went from %d MiB to only %d MiB over a 1 GiB cache burst: the probe cannot see a reclaim", before/mib, peak/mib)
	}
	v := s.vm()
	if v.Memory == nil || v.Memory.CachedBytes < 900*mib || v.MemoryReclaim != "disabled" {
		t.Errorf("GET /vm after the burst: memory %+v, reclaim %q; want over 900 MiB cached, disabled", v.Memory, v.MemoryReclaim)
	}

	began := time.Now()
	if st, raw := s.api("POST", "/vm/reclaim", nil, &r); st != 200 {
		t.Fatalf("POST /vm/reclaim: %d %s", st, raw)
	}
	if r.DroppedBytes < 900*mib || r.Memory.CachedBytes > 100*mib {
		t.Errorf("POST /vm/reclaim = %+v; want over 900 MiB dropped", r)
	}
	after := waitRSS(t, s, 60*time.Second, "QEMU's resident memory to fall back within 20 % of its level before the burst", func(rss int64) bool {
		return rss <= before+before/5
	})
	t.Logf("QEMU's resident memory: %d MiB before the burst, %d MiB at its peak, %d MiB %v after POST /vm/reclaim",
		before/mib, peak/mib, after/mib, time.Since(began).Round(100*time.Millisecond))
	if h := s.vm().MemoryHistory; len(h) == 0 || h[len(h)-1].RSSBytes <= 0 {
		t.Errorf("GET /vm has no memory history: %+v", h)
	}
	// Reclaim never boots the VM.
	s.api("POST", "/shutdown", nil, nil)
	waitFor(t, 90*time.Second, "the VM to stop", func() bool { return s.vm().State == api.VMStopped })
	if st, raw := s.api("POST", "/vm/reclaim", nil, nil); st != http.StatusConflict {
		t.Errorf("POST /vm/reclaim with no VM: %d %s, want 409", st, raw)
	}
	if st := s.vm().State; st != api.VMStopped {
		t.Errorf("POST /vm/reclaim booted the VM: %s", st)
	}
}

// TestVersion2MemoryReclaimGradual: with memory_reclaim gradual (the
// default), a VM left idle after a GiB of page cache gives it back by itself:
// QEMU's resident memory is within 20 % of its level before the burst within
// 3 minutes (2 of them the idle time the VM waits for).
func TestVersion2MemoryReclaimGradual(t *testing.T) {
	s := startV2Server(t)
	s.importV2("mem", tinyRootfs(t))
	if res := s.sh("mem", "dd if=/dev/zero of=/root/big bs=1M count=1024 2>&1 && sync"); res.ExitCode != 0 {
		t.Fatalf("writing the file: %+v", res)
	}
	if st, raw := s.api("POST", "/vm/reclaim", nil, nil); st != 200 {
		t.Fatalf("POST /vm/reclaim: %d %s", st, raw)
	}
	before := settledRSS(t, s)
	if res := s.sh("mem", cacheBurst); res.ExitCode != 0 {
		t.Fatalf("the cache burst: %+v", res)
	}
	burstEnd := time.Now()
	peak := qemuRSS(t, s)
	if peak < before+700*mib {
		t.Fatalf("QEMU's resident memory went from %d MiB to only %d MiB over a 1 GiB cache burst: the probe cannot see a reclaim", before/mib, peak/mib)
	}
	if m := s.vm().MemoryReclaim; m != "gradual" {
		t.Errorf("the VM's reclaim mode is %q, want gradual (the default)", m)
	}
	after := waitRSS(t, s, 3*time.Minute, "QEMU's resident memory to fall back within 20 % of its level before the burst by itself", func(rss int64) bool {
		return rss <= before+before/5
	})
	var reclaimed int64
	if m := s.vm().Memory; m != nil {
		reclaimed = m.ReclaimedBytes
	}
	t.Logf("QEMU's resident memory: %d MiB before the burst, %d MiB at its peak, %d MiB %v after it; the guest says reclaim gave back %d MiB",
		before/mib, peak/mib, after/mib, time.Since(burstEnd).Round(time.Second), reclaimed/mib)
}

// TestVersion2MemoryHotplug: a VM whose memory setting is large boots with
// part of it and gets the rest as its guest needs it (virtio-mem): an idle
// VM's guest has under 3 GiB; 3 GiB written to a tmpfs in a distro (memory
// nothing can reclaim) succeed, the guest's memory growing past them; once
// the file is gone the memory is unplugged again, and QEMU's resident
// memory falls back.
func TestVersion2MemoryHotplug(t *testing.T) {
	s := startV2Server(t)
	if st, raw := s.api("PUT", "/settings", map[string]any{"vm_memory_mib": 8192, "memory_reclaim": "disabled"}, nil); st != 200 {
		t.Fatalf("PUT vm_memory_mib: %d %s", st, raw)
	}
	s.importV2("hot", tinyRootfs(t))
	s.sh("hot", "true")
	v := s.vm()
	if v.MemoryMiB != 8192 || v.Memory == nil || v.Memory.TotalBytes > 3<<30 {
		t.Fatalf("GET /vm of an idle VM of 8 GiB: memory_mib %d, guest memory %+v; want under 3 GiB plugged", v.MemoryMiB, v.Memory)
	}
	idleTotal := v.Memory.TotalBytes
	before := settledRSS(t, s)

	res := s.sh("hot", "mkdir -p /fill && mount -t tmpfs -o size=4g tmpfs /fill && dd if=/dev/zero of=/fill/big bs=1M count=3072 2>&1")
	if res.ExitCode != 0 {
		t.Fatalf("writing 3 GiB to a tmpfs: %+v", res)
	}
	v = s.vm()
	if v.Memory == nil || v.Memory.TotalBytes < 3<<30 {
		t.Fatalf("after 3 GiB in a tmpfs the guest has %+v", v.Memory)
	}
	peak := qemuRSS(t, s)
	if peak < before+2500*mib {
		t.Fatalf("QEMU's resident memory went from %d to only %d MiB with 3 GiB in the guest's tmpfs: the probe cannot see memory given back", before/mib, peak/mib)
	}
	grown := v.Memory.TotalBytes
	s.sh("hot", "rm /fill/big && umount /fill")
	waitFor(t, 2*time.Minute, "the guest's memory to be unplugged", func() bool {
		m := s.vm().Memory
		return m != nil && m.TotalBytes < grown-2<<30
	})
	after := waitRSS(t, s, 2*time.Minute, "QEMU's resident memory to fall back within 20 % of its level before", func(rss int64) bool {
		return rss <= before+before/5
	})
	t.Logf("guest memory: %d MiB idle, %d MiB with 3 GiB in a tmpfs; QEMU's resident memory: %d MiB idle, %d MiB at the peak, %d MiB after",
		idleTotal/mib, grown/mib, before/mib, peak/mib, after/mib)
}
