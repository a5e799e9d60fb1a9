//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// cliBenchRounds is how many times each command runs; the median is compared.
const cliBenchRounds = 50

// BenchmarkCLIRun: wall time of `subsys run -d NAME -- true` — the real CLI
// binary, over the server's unix socket, the distro already running — vs
// `runc exec ID true` into a running runc container of the same root file
// system (goal: ≤ 0.5×), and vs `lxc exec CONTAINER -- true` when lxc is
// installed and a container runs (goal: ≤ 0.25×; LXD is optional, so without
// it that part is only reported as not measured). Also `subsys version`
// (which asks the server for its version too) vs `runc --version`: the cost
// of starting each program. The commands take turns, so that a change in the
// machine's load hits them alike, and the medians are compared.
func BenchmarkCLIRun(b *testing.B) {
	tarball := debianTarball(b)
	runc := testenv.RequireCommand(b, "runc", "make deps")
	s := startServerLevel(b, "", "info")
	s.importPath(tarball, "bench")

	id := startRuncSleeper(b, runc, tarball)
	lxcName, lxcWhy := lxcContainer()

	// What each side runs, each once before timing: the distro starts, and
	// every binary is in the page cache.
	subsysRun := []string{subsysBin, "--data", s.data, "run", "-d", "bench", "--", "true"}
	runcExec := []string{runc, "exec", id, "true"}
	cmds := [][]string{subsysRun, runcExec}
	if lxcName != "" {
		cmds = append(cmds, []string{"lxc", "exec", lxcName, "--", "true"})
	}
	subsysVersion := []string{subsysBin, "--data", s.data, "version"}
	runcVersion := []string{runc, "--version"}
	for _, argv := range slices.Concat(cmds, [][]string{subsysVersion, runcVersion}) {
		runQuiet(b, argv)
	}

	load0 := loadAverage()
	times := make([][]time.Duration, len(cmds))
	for i := 0; i < cliBenchRounds; i++ {
		for j, argv := range cmds {
			times[j] = append(times[j], runQuiet(b, argv))
		}
	}
	var subsysV, runcV []time.Duration
	for i := 0; i < cliBenchRounds; i++ {
		subsysV = append(subsysV, runQuiet(b, subsysVersion))
		runcV = append(runcV, runQuiet(b, runcVersion))
	}
	load1 := loadAverage()

	subT, runcT := median(times[0]), median(times[1])
	runcRatio := float64(subT) / float64(runcT)
	b.ReportMetric(float64(subT.Microseconds()), "subsys_run_us")
	b.ReportMetric(float64(runcT.Microseconds()), "runc_exec_us")
	b.ReportMetric(runcRatio, "ratio_vs_runc_exec")
	fmt.Printf("run -d NAME -- true (median of %d, load %s → %s): subsys run %v, runc exec %v, ratio %.2f (goal <= 0.5)\n",
		cliBenchRounds, load0, load1, subT.Round(time.Microsecond), runcT.Round(time.Microsecond), runcRatio)
	if lxcName != "" {
		lxcT := median(times[2])
		lxcRatio := float64(subT) / float64(lxcT)
		b.ReportMetric(float64(lxcT.Microseconds()), "lxc_exec_us")
		b.ReportMetric(lxcRatio, "ratio_vs_lxc_exec")
		fmt.Printf("  vs lxc exec %s: %v, ratio %.2f (goal <= 0.25)\n", lxcName, lxcT.Round(time.Microsecond), lxcRatio)
	} else {
		fmt.Printf("  vs lxc exec: not measured (%s)\n", lxcWhy)
	}
	sv, rv := median(subsysV), median(runcV)
	b.ReportMetric(float64(sv.Microseconds()), "subsys_version_us")
	b.ReportMetric(float64(rv.Microseconds()), "runc_version_us")
	fmt.Printf("start-up (median of %d): subsys version %v (asks the server too), runc --version %v, ratio %.2f\n",
		cliBenchRounds, sv.Round(time.Microsecond), rv.Round(time.Microsecond), float64(sv)/float64(rv))
}

// importPath imports a tarball from a path on the server's side under name and
// waits until it is there (importTar uploads bytes instead).
func (s *server) importPath(tarball, name string) {
	s.t.Helper()
	var op operation
	if st, raw := s.api("POST", "/distros", map[string]any{"name": name, "source": map[string]string{"path": tarball}}, &op); st != 202 {
		s.t.Fatalf("import %s: %d %s", name, st, raw)
	}
	s.waitOp(op.ID)
}

// startRuncSleeper runs a detached runc container of tarball's root file
// system whose process sleeps, for `runc exec` to enter; it is killed and
// deleted when the benchmark ends. It returns the container's id.
func startRuncSleeper(b *testing.B, runc, tarball string) string {
	b.Helper()
	bundle := b.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", tarball, "-C", rootfs).CombinedOutput(); err != nil {
		b.Fatalf("tar: %v %s", err, out)
	}
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v %s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		b.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["args"] = []string{"sleep", "infinity"}
	proc["terminal"] = false
	if raw, err = json.Marshal(spec); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		b.Fatal(err)
	}
	id := fmt.Sprintf("subsys-cli-bench-%d", os.Getpid())
	// Detached, the container inherits runc's standard streams: /dev/null
	// and a file, never a pipe of this process, which the sleeper would hold
	// open and cmd.Run wait on for ever.
	errFile, err := os.Create(filepath.Join(bundle, "runc.err"))
	if err != nil {
		b.Fatal(err)
	}
	defer errFile.Close()
	// Registered first: a run that fails half way may leave the container.
	b.Cleanup(func() {
		if out, err := exec.Command(runc, "delete", "-f", id).CombinedOutput(); err != nil {
			b.Logf("runc delete -f %s: %v %s", id, err, out)
		}
	})
	run := exec.Command(runc, "run", "-d", "--bundle", bundle, id)
	run.Stderr = errFile
	if err := run.Run(); err != nil {
		msg, _ := os.ReadFile(errFile.Name())
		b.Fatalf("runc run -d: %v %s", err, msg)
	}
	return id
}

// lxcContainer names a running LXD container to compare with: the one in
// $SUBSYS_BENCH_LXC, else the first running one `lxc list` shows. "" and why
// when there is none, or no lxc.
func lxcContainer() (name, why string) {
	if _, err := exec.LookPath("lxc"); err != nil {
		return "", "lxc is not installed"
	}
	out, err := exec.Command("lxc", "list", "--format", "csv", "-c", "ns").Output()
	if err != nil {
		return "", fmt.Sprintf("lxc list: %v", err)
	}
	want := os.Getenv("SUBSYS_BENCH_LXC")
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		n, state, ok := strings.Cut(line, ",")
		if !ok || state != "RUNNING" {
			continue
		}
		if want == "" || n == want {
			return n, ""
		}
	}
	if want != "" {
		return "", fmt.Sprintf("no running LXD container %q", want)
	}
	return "", "no running LXD container (set SUBSYS_BENCH_LXC to name one)"
}

// runQuiet runs argv with its standard streams on /dev/null, except stderr,
// kept for the message should it fail, and returns how long it took.
func runQuiet(b *testing.B, argv []string) time.Duration {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v %s", strings.Join(argv, " "), err, errb.String())
	}
	return d
}
