//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// BenchmarkInstallDebian: `subsys install --from debian:bookworm` (a
// minbase build on the server, streamed into a version 1 distro) vs
// mmdebstrap alone writing the same minbase tarball to a file, three
// rounds each, taking turns, medians. Goal: ≤ 1.2×.
func BenchmarkInstallDebian(b *testing.B) {
	mm := testenv.RequireCommand(b, "mmdebstrap", "Debian package mmdebstrap")
	s := startServerEnv(b, b.TempDir(), "info")
	var subsys, alone []time.Duration
	for i := range 3 {
		out := filepath.Join(b.TempDir(), "bookworm.tar")
		began := time.Now()
		if o, err := exec.Command(mm, "--quiet", "--format=tar", "--variant=minbase", "--", "bookworm", out).CombinedOutput(); err != nil {
			b.Fatalf("mmdebstrap: %v: %s", err, o)
		}
		alone = append(alone, time.Since(began))
		os.Remove(out)
		name := fmt.Sprintf("deb%d", i)
		began = time.Now()
		if o, e, code := s.cli(nil, "install", name, "--from", "debian:bookworm", "--version", "1"); code != 0 {
			b.Fatalf("subsys install: %d\n%s%s", code, o, e)
		}
		subsys = append(subsys, time.Since(began))
		s.cli(nil, "unregister", name)
	}
	slices.Sort(subsys)
	slices.Sort(alone)
	ratio := subsys[1].Seconds() / alone[1].Seconds()
	b.Logf("debian:bookworm minbase: subsys install %v (rounds %v) vs mmdebstrap to a tarball %v (rounds %v): %.2f× (goal ≤ 1.2×)",
		subsys[1].Round(100*time.Millisecond), subsys, alone[1].Round(100*time.Millisecond), alone, ratio)
	b.ReportMetric(ratio, "install/mmdebstrap")
}
