//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// median of durations.
func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func timeIt(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// BenchmarkImport: wall time of `subsys import` of the Debian tarball vs `tar -xf`
// of the same file into the same disk, measured in the same run (goal: ratio ≤ 1.25).
func BenchmarkImport(b *testing.B) {
	tarball := debianTarball(b)
	fi, _ := os.Stat(tarball)
	s := startServer(b, "")
	const rounds = 3
	var tarTimes, subsysTimes []time.Duration
	for i := 0; i < rounds; i++ {
		dst := filepath.Join(s.data, "tmp-bench-tar")
		os.MkdirAll(dst, 0o755)
		exec.Command("sync").Run()
		tarTimes = append(tarTimes, timeIt(func() {
			if out, err := exec.Command("tar", "-xf", tarball, "-C", dst).CombinedOutput(); err != nil {
				b.Fatalf("tar -xf: %v %s", err, out)
			}
			exec.Command("sync", "-f", dst).Run()
		}))
		os.RemoveAll(dst)

		name := fmt.Sprintf("bench%d", i)
		exec.Command("sync").Run()
		subsysTimes = append(subsysTimes, timeIt(func() {
			if out, errOut, code := s.cli(nil, "import", name, tarball); code != 0 {
				b.Fatalf("subsys import: %d %s %s", code, out, errOut)
			}
		}))
		s.api("DELETE", "/distros/"+name, nil, nil)
	}
	tarT, subT := median(tarTimes), median(subsysTimes)
	ratio := float64(subT) / float64(tarT)
	b.ReportMetric(ratio, "ratio_vs_tar")
	b.ReportMetric(float64(subT.Milliseconds()), "subsys_ms")
	b.ReportMetric(float64(tarT.Milliseconds()), "tar_ms")
	fmt.Printf("import %d MB tarball: subsys %v, tar -xf %v, ratio %.2f (goal <= 1.25)\n", fi.Size()>>20, subT.Round(time.Millisecond), tarT.Round(time.Millisecond), ratio)
}

// BenchmarkExecStart: POST exec {argv:["true"]} on a running distro and on a
// stopped one (cold) vs `runc run` of the same root file system running true
// (goals: running ≤ 0.5×, cold ≤ 1.5× of runc).
func BenchmarkExecStart(b *testing.B) {
	tarball := debianTarball(b)
	if _, err := exec.LookPath("runc"); err != nil {
		testenv.SkipOrFail(b, "runc not installed: make deps")
	}
	s := startServer(b, "")
	var op operation
	if st, raw := s.api("POST", "/distros", map[string]any{"name": "bench", "source": map[string]string{"path": tarball}}, &op); st != 202 {
		b.Fatalf("import: %d %s", st, raw)
	}
	s.waitOp(op.ID)

	// runc bundle with the same root file system.
	bundle := b.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	if out, err := exec.Command("tar", "-xf", tarball, "-C", rootfs).CombinedOutput(); err != nil {
		b.Fatalf("tar: %v %s", err, out)
	}
	if out, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v %s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	raw, _ := os.ReadFile(cfgPath)
	var spec map[string]any
	json.Unmarshal(raw, &spec)
	proc := spec["process"].(map[string]any)
	proc["args"] = []string{"true"}
	proc["terminal"] = false
	raw, _ = json.Marshal(spec)
	os.WriteFile(cfgPath, raw, 0o644)
	runcRun := func(i int) {
		cmd := exec.Command("runc", "run", "--bundle", bundle, fmt.Sprintf("subsys-bench-%d-%d", os.Getpid(), i))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("runc run: %v %s", err, out)
		}
	}
	runcRun(-1) // warm the page cache

	execTrue := func() {
		if res := s.exec("bench", map[string]any{"argv": []string{"true"}}); res.ExitCode != 0 {
			b.Fatalf("exec true: %+v", res)
		}
	}
	const coldRounds, warmRounds = 10, 100
	var runcTimes, coldTimes, warmTimes []time.Duration
	for i := 0; i < coldRounds; i++ {
		runcTimes = append(runcTimes, timeIt(func() { runcRun(i) }))
		s.api("POST", "/distros/bench/terminate", nil, nil)
		coldTimes = append(coldTimes, timeIt(execTrue))
	}
	for i := 0; i < warmRounds; i++ {
		warmTimes = append(warmTimes, timeIt(execTrue))
	}
	runcT, coldT, warmT := median(runcTimes), median(coldTimes), median(warmTimes)
	b.ReportMetric(float64(warmT.Microseconds()), "running_us")
	b.ReportMetric(float64(coldT.Microseconds()), "cold_us")
	b.ReportMetric(float64(runcT.Microseconds()), "runc_us")
	b.ReportMetric(float64(warmT)/float64(runcT), "running_ratio")
	b.ReportMetric(float64(coldT)/float64(runcT), "cold_ratio")
	fmt.Printf("exec true: running %v (%.2fx runc), cold %v (%.2fx runc), runc run %v (goals: running <= 0.5x, cold <= 1.5x)\n",
		warmT.Round(time.Microsecond), float64(warmT)/float64(runcT), coldT.Round(time.Microsecond), float64(coldT)/float64(runcT), runcT.Round(time.Microsecond))
}
