//go:build linux

package e2e

import (
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
)

// BenchmarkVersion2GuestUnpack: importing Debian's minbase tarball (a
// server path, plain HTTP) as a version 2 distro with the disk made in the
// VM (SUBSYS_GUEST_UNPACK=1: mke2fs and the extraction in the guest, the
// tarball streamed over the agent), against the anchor, the host's own
// path (extraction on the host, mkfs.ext4 -d), measured in the same run.
// The VM has booted before the timed import.
func BenchmarkVersion2GuestUnpack(b *testing.B) {
	kdir := kernelDir(b)
	tarball := debianTarball(b)
	importV2 := func(s *server, name string) time.Duration {
		b.Helper()
		began := time.Now()
		var op api.Operation
		if st, raw := s.api("POST", "/distros", map[string]any{"name": name, "version": 2, "size": 8 << 30, "source": map[string]string{"path": tarball}}, &op); st != 202 {
			b.Fatalf("import: %d %s", st, raw)
		}
		s.waitOp(op.ID)
		return time.Since(began)
	}
	host := startV2ServerEnv(b, kdir)
	anchor := importV2(host, "host")

	guest := startV2ServerEnv(b, kdir, "SUBSYS_GUEST_UNPACK=1")
	importV2(guest, "boot") // boots the VM
	took := importV2(guest, "guest")
	if res := guest.sh("guest", "test -x /usr/bin/apt && echo ok"); res.Stdout != "ok\n" {
		b.Fatalf("the distro made in the VM: %+v", res)
	}
	b.Logf("Debian minbase as a version 2 distro: made on the host %v, made in the VM %v: %.2f× the host's time",
		anchor.Round(time.Millisecond), took.Round(time.Millisecond), took.Seconds()/anchor.Seconds())
	b.ReportMetric(took.Seconds()/anchor.Seconds(), "ratio_vs_host")
}
