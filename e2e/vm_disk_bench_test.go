//go:build linux

package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// BenchmarkVersion2DiskCompact: a version 2 Debian distro's image, as the
// host allocates it, before a GiB of random data is written in the guest,
// after it, and after it is deleted and `subsys compact` has run; the goal
// is the last within 1.05× of the first. Then the same with the distro
// stopped (the compact mounts the disk in the VM), and the time each
// `subsys compact` and an online `subsys resize` take through the CLI.
func BenchmarkVersion2DiskCompact(b *testing.B) {
	kdir := kernelDir(b)
	tarball := debianTarball(b)
	s := startV2ServerEnv(b, kdir)
	const name = "compact"
	var op api.Operation
	if st, raw := s.api("POST", "/distros", map[string]any{"name": name, "version": 2, "source": map[string]string{"path": tarball}}, &op); st != 202 {
		b.Fatalf("import: %d %s", st, raw)
	}
	s.waitOp(op.ID)
	allocated := func() int64 {
		var d api.Distro
		s.api("GET", "/distros/"+name, nil, &d)
		_, a, err := disk.Usage(filepath.Join(d.Location, "disk.img"))
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
	cli := func(args ...string) time.Duration {
		began := time.Now()
		if out, errOut, code := s.cli(nil, args...); code != 0 {
			b.Fatalf("subsys %v: %d\n%s%s", args, code, out, errOut)
		}
		return time.Since(began)
	}
	s.sh(name, "sync")
	for _, stopped := range []bool{false, true} {
		before := allocated()
		if res := s.sh(name, "dd if=/dev/urandom of=/root/big bs=1M count=1024 status=none && sync"); res.ExitCode != 0 {
			b.Fatalf("write 1 GiB: %+v", res)
		}
		written := allocated()
		s.sh(name, "rm /root/big && sync")
		deleted := allocated()
		how := "running"
		if stopped {
			how = "stopped"
			cli("terminate", name)
		}
		took := cli("compact", name)
		after := allocated()
		b.Logf("compact of a %s distro: allocated %d MiB before the write, %d after it, %d after the delete (discard), %d after `subsys compact` (%v): %.3f× before (goal ≤ 1.05×)",
			how, before>>20, written>>20, deleted>>20, after>>20, took.Round(time.Millisecond), float64(after)/float64(before))
		b.ReportMetric(float64(after)/float64(before), "ratio_"+how)
		if stopped {
			s.sh(name, "true") // start it again
		}
	}
	var d api.Distro
	s.api("GET", "/distros/"+name, nil, &d)
	took := cli("resize", name, "300G")
	b.Logf("online grow %d → 300 GiB through `subsys resize`: %v", d.DiskMaxBytes>>30, took.Round(time.Millisecond))
	cli("terminate", name)
	took = cli("resize", name, "4G")
	b.Logf("offline shrink 300 GiB → 4 GiB (e2fsck + resize2fs in the VM) through `subsys resize`: %v", took.Round(time.Millisecond))
}
