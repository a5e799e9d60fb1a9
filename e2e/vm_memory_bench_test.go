//go:build linux

package e2e

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkVersion2MemoryReclaim: QEMU's resident memory on the host before,
// at the peak of, and 60 s and 180 s after a 1 GiB page-cache burst in a
// version 2 distro, with memory_reclaim gradual, dropcache and disabled, in
// one VM (a reclaim on request between them). The idle reclaim starts once
// the VM has been idle for 2 minutes, so 180 s shows it and 60 s does not.
func BenchmarkVersion2MemoryReclaim(b *testing.B) {
	kdir := kernelDir(b)
	s := startV2ServerEnv(b, kdir)
	s.importV2("mem", tinyRootfs(b))
	if res := s.sh("mem", "dd if=/dev/zero of=/root/big bs=1M count=1024 2>&1 && sync"); res.ExitCode != 0 {
		b.Fatalf("writing the file: %+v", res)
	}
	type row struct {
		mode                      string
		before, peak, at60, at180 int64
	}
	var rows []row
	for _, mode := range []string{"gradual", "dropcache", "disabled"} {
		if st, raw := s.api("PUT", "/settings", map[string]any{"memory_reclaim": mode}, nil); st != 200 {
			b.Fatalf("PUT memory_reclaim=%s: %d %s", mode, st, raw)
		}
		if st, raw := s.api("POST", "/vm/reclaim", nil, nil); st != 200 {
			b.Fatalf("POST /vm/reclaim: %d %s", st, raw)
		}
		r := row{mode: mode, before: settledRSS(b, s)}
		if res := s.sh("mem", cacheBurst); res.ExitCode != 0 {
			b.Fatalf("the cache burst: %+v", res)
		}
		end := time.Now()
		r.peak = qemuRSS(b, s)
		// Samples at fixed times after the burst: a measurement, not a
		// wait for something to happen. Nothing touches the guest meanwhile.
		time.Sleep(time.Until(end.Add(60 * time.Second)))
		r.at60 = qemuRSS(b, s)
		time.Sleep(time.Until(end.Add(180 * time.Second)))
		r.at180 = qemuRSS(b, s)
		rows = append(rows, r)
	}
	vm := s.vm()
	b.Logf("QEMU's resident memory around a 1 GiB page-cache burst in the guest (%s, %d CPUs, %d MiB), MiB:", vm.Accel, vm.CPUs, vm.MemoryMiB)
	b.Logf("  %-10s %8s %8s %8s %8s   %s", "reclaim", "before", "peak", "+60 s", "+180 s", "+180 s vs before")
	for _, r := range rows {
		b.Logf("  %-10s %8d %8d %8d %8d   %.2fx", r.mode, r.before/mib, r.peak/mib, r.at60/mib, r.at180/mib, float64(r.at180)/float64(r.before))
		b.ReportMetric(float64(r.at180/mib), fmt.Sprintf("%s_180s_MiB", r.mode))
		b.ReportMetric(float64(r.peak/mib), fmt.Sprintf("%s_peak_MiB", r.mode))
	}
}

// BenchmarkVersion2IdleMemory: QEMU's resident memory on the host for an
// idle VM of the default size (half the host's memory) with one small
// distro running, with its memory hot-pluggable (virtio-mem, the default)
// and with all of it at boot (SUBSYS_VIRTIO_MEM=off), each in its own VM
// in the same run. The goal is under 300 MiB under TCG.
func BenchmarkVersion2IdleMemory(b *testing.B) {
	kdir := kernelDir(b)
	type result struct {
		how           string
		rss, guestMiB int64
	}
	var out []result
	for _, c := range []struct{ how, env string }{{"virtio-mem", ""}, {"all at boot", "SUBSYS_VIRTIO_MEM=off"}} {
		var env []string
		if c.env != "" {
			env = append(env, c.env)
		}
		s := startV2ServerEnv(b, kdir, env...)
		s.importV2("idle", tinyRootfs(b))
		s.sh("idle", "true")
		rss := settledRSS(b, s)
		v := s.vm()
		guest := int64(0)
		if v.Memory != nil {
			guest = v.Memory.TotalBytes / mib
		}
		out = append(out, result{c.how, rss, guest})
		s.api("POST", "/shutdown", nil, nil)
		waitFor(b, 90*time.Second, "the VM to stop", func() bool { return s.vm().State == "Stopped" })
		b.Logf("%s: VM of %d MiB, the guest has %d MiB: QEMU's resident memory %d MiB (goal: under 300 MiB)", c.how, v.MemoryMiB, guest, rss/mib)
	}
	b.ReportMetric(float64(out[0].rss/mib), "hotplug_MiB")
	b.ReportMetric(float64(out[1].rss/mib), "atboot_MiB")
	b.Logf("idle VM: %d MiB with virtio-mem vs %d MiB with all memory at boot (%.2f×)", out[0].rss/mib, out[1].rss/mib, float64(out[0].rss)/float64(out[1].rss))
}
