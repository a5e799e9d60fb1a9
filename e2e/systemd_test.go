//go:build linux

package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/internal/testenv"
)

// systemdTarball returns the cached Debian minbase tarball with systemd (make
// rootfs), or skips (fails under SUBSYS_TEST_STRICT=1) when it is not there.
func systemdTarball(t testing.TB) string {
	p := os.Getenv("SUBSYS_ROOTFS_SYSTEMD_TAR")
	if p == "" {
		p = "/var/cache/subsys-test/debian-bookworm-systemd.tar"
	}
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		testenv.SkipOrFailf(t, "no Debian root file system tarball with systemd at %s: run `make rootfs`", p)
	}
	return p
}

// TestSystemd: a version 1 distro with systemd turned on boots it as its PID
// 1, with the agent beside it; a unit of the test's own starts at boot and is
// stopped at terminate; turned off, the agent is PID 1 again.
func TestSystemd(t *testing.T) {
	requireRoot(t)
	s := startServer(t, "")
	testSystemd(t, s, 1)
}

// TestVersion2Systemd is TestSystemd for a version 2 distro, in the VM.
func TestVersion2Systemd(t *testing.T) {
	s := startV2Server(t)
	testSystemd(t, s, 2)
}

// systemdUnit is the test's own service: it leaves a mark in /run when it
// starts and writes to the host (through /mnt/host) when systemd stops it.
const systemdUnit = `[Unit]
Description=subsys test service

[Service]
ExecStart=/bin/sh -c 'echo started > /run/subsys-test; exec sleep infinity'
ExecStop=/bin/sh -c 'echo stopped by systemd > /mnt/host%s'

[Install]
WantedBy=multi-user.target
`

func testSystemd(t *testing.T, s *server, version int) {
	tarball := systemdTarball(t)
	var op api.Operation
	if st, raw := s.api("POST", "/distros", map[string]any{"name": "sd", "version": version, "source": map[string]string{"path": tarball}}, &op); st != http.StatusAccepted {
		t.Fatalf("import = %d %s", st, raw)
	}
	s.waitOp(op.ID)
	var d api.Distro
	if st, raw := s.api("PATCH", "/distros/sd", map[string]any{"systemd": true}, &d); st != 200 || !d.Systemd {
		t.Fatalf("PATCH systemd=true = %d %s", st, raw)
	}

	// Boot, and wait (in the distro) until systemd says the boot is done.
	res := s.sh("sd", "timeout 300 systemctl is-system-running --wait; cat /proc/1/comm; hostname; systemctl --no-pager --failed --plain --no-legend")
	if res.Stdout != "running\nsystemd\nsd\n" {
		t.Fatalf("boot with systemd: %+v; want running, PID 1 systemd, hostname sd, no failed unit", res)
	}
	if res := s.sh("sd", "cat /proc/self/cgroup | grep '^0::'; test \"$(cat /proc/$PPID/comm)\" != systemd && echo agent-beside"); !strings.Contains(res.Stdout, "0::/subsys-agent\n") || !strings.Contains(res.Stdout, "agent-beside") {
		t.Errorf("processes the agent starts: %+v; want them in the cgroup subsys-agent, children of the agent", res)
	}
	// systemd owns the distro's cgroup tree, and only the distro's.
	if res := s.sh("sd", "test -d /sys/fs/cgroup/init.scope && test -d /sys/fs/cgroup/system.slice && ls /sys/fs/cgroup | grep -c -x subsys"); res.Stdout != "0\n" {
		t.Errorf("the distro's cgroup tree: %+v; want init.scope and system.slice, and no host cgroup subsys", res)
	}
	// The kernel's parameters are read-only in a distro with systemd.
	if res := s.sh("sd", "echo subsys > /proc/sys/kernel/domainname"); res.ExitCode == 0 {
		t.Errorf("writing /proc/sys with systemd succeeded: %+v", res)
	}

	// The test's own unit, enabled: it starts at the next boot and stops at
	// terminate, which it reports on the host.
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	mark := filepath.Join(dir, "stopped")
	unit := strings.ReplaceAll(strings.ReplaceAll(systemdUnit, "%s", mark), "'", `'"'"'`)
	if res := s.sh("sd", "printf '%s' '"+unit+"' > /etc/systemd/system/subsys-test.service && systemctl enable subsys-test.service 2>&1"); res.ExitCode != 0 {
		t.Fatalf("enable the test unit: %+v", res)
	}
	if st, raw := s.api("POST", "/distros/sd/terminate", nil, nil); st != 200 && st != 204 {
		t.Fatalf("terminate = %d %s", st, raw)
	}
	if res := s.sh("sd", "timeout 300 systemctl is-system-running --wait; systemctl is-active subsys-test; cat /run/subsys-test"); res.Stdout != "running\nactive\nstarted\n" {
		t.Fatalf("after a restart: %+v; want the test unit started at boot", res)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatalf("%s exists before the distro was terminated", mark)
	}
	cgroups := distroCgroups(t, s, "sd")
	if len(cgroups) == 0 && version == 1 {
		t.Errorf("no host cgroup of the running distro found")
	}
	if st, raw := s.api("POST", "/distros/sd/terminate", nil, nil); st != 200 && st != 204 {
		t.Fatalf("terminate = %d %s", st, raw)
	}
	if b, err := os.ReadFile(mark); err != nil || string(b) != "stopped by systemd\n" {
		t.Errorf("the test unit at terminate: %q %v; want its ExecStop to have run", b, err)
	}
	for _, cg := range cgroups {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("the distro's cgroup %s (a tree, with systemd) is left after terminate", cg)
		}
	}

	// Turned off, the agent is PID 1 again, and /proc/sys is as it was.
	if _, stderr, code := s.cli(nil, "set-systemd", "sd", "off"); code != 0 {
		t.Fatalf("subsys set-systemd sd off: %d %s", code, stderr)
	}
	var off api.Distro
	if st, raw := s.api("GET", "/distros/sd", nil, &off); st != 200 || off.Systemd {
		t.Fatalf("GET distro after set-systemd off = %d %s", st, raw)
	}
	// (The agent's comm is "exe" in the VM, which runs it as /proc/self/exe.)
	if res := s.sh("sd", "grep -q -e -socket= /proc/1/cmdline && echo agent; echo subsys > /proc/sys/kernel/domainname && echo wrote"); res.Stdout != "agent\nwrote\n" {
		t.Errorf("with systemd off: %+v; want the agent as PID 1 and /proc/sys writable", res)
	}
}

// distroCgroups lists the host's cgroup v2 directories of a version 1
// distro (there is one, under the cgroup2 mount, while it runs).
func distroCgroups(t *testing.T, s *server, name string) []string {
	t.Helper()
	var d api.Distro
	if st, raw := s.api("GET", "/distros/"+name, nil, &d); st != 200 {
		t.Fatalf("GET distro = %d %s", st, raw)
	}
	var out []string
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		p := filepath.Join(root, "subsys", d.ID)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			out = append(out, p)
		}
	}
	return out
}
