//go:build linux

package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// debianTarball returns the cached mmdebstrap minbase tarball (make rootfs), or
// skips (fails under SUBSYS_TEST_STRICT=1) when it is not there.
func debianTarball(t testing.TB) string {
	p := os.Getenv("SUBSYS_ROOTFS_TAR")
	if p == "" {
		p = "/var/cache/subsys-test/debian-bookworm-minbase.tar"
	}
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		testenv.SkipOrFailf(t, "no Debian root file system tarball at %s: run `make rootfs`", p)
	}
	return p
}

// TestDebianDistro imports a real Debian root file system from a server-side path
// and checks what a user of a WSL 1 distro relies on.
func TestDebianDistro(t *testing.T) {
	tarball := debianTarball(t)
	s := startServer(t, "")
	var op operation
	if st, raw := s.api("POST", "/distros", map[string]any{"name": "debian", "version": 1, "source": map[string]string{"path": tarball}}, &op); st != 202 {
		t.Fatalf("import = %d %s", st, raw)
	}
	op = s.waitOp(op.ID)
	if op.Progress.Total == 0 || op.Progress.Done != op.Progress.Total {
		t.Errorf("progress = %+v, want done == total > 0", op.Progress)
	}
	checks := []struct {
		name   string
		script string
		want   string
	}{
		{"os-release", ". /etc/os-release; echo $ID $VERSION_CODENAME", "debian bookworm\n"},
		{"pid 1 is the agent", "ps -o comm= -p 1", "subsys-agent\n"},
		{"ps sees only the distro", "ps -e -o comm= > /tmp/ps.out; grep -v -x -e ps -e bash /tmp/ps.out", "subsys-agent\n"},
		{"hostname", "hostname", "debian\n"},
		{"mounts", "for m in /proc /sys /dev /dev/pts /dev/shm /tmp /run /mnt/host; do mountpoint -q $m && printf '%s ' $m; done", "/proc /sys /dev /dev/pts /dev/shm /tmp /run /mnt/host "},
		{"host files", "test -f /mnt/host/etc/os-release && echo ok", "ok\n"},
		{"resolv.conf", "test -s /etc/resolv.conf && echo ok", "ok\n"},
		{"hosts", "getent hosts localhost | head -1 | cut -d' ' -f1; getent hosts debian >/dev/null && echo named", "127.0.0.1\nnamed\n"},
		{"network is the host's", "test \"$(readlink /proc/1/ns/net)\" = \"$(readlink /mnt/host/proc/1/ns/net 2>/dev/null || readlink /proc/1/ns/net)\" && ip -o link | grep -c ' lo:'", "1\n"},
		{"fds", "ls /proc/self/fd | tr '\\n' ' '", "0 1 2 3 "},
		{"useradd and su", "useradd -m -s /bin/bash bob && su - bob -c 'id -un; pwd'", "bob\n/home/bob\n"},
		{"tty devices", "test -c /dev/tty && test -c /dev/ptmx && test -c /dev/null && echo ok", "ok\n"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			res := s.exec("debian", map[string]any{"argv": []string{"/bin/bash", "-c", c.script}})
			if res.Stdout != c.want || res.ExitCode != 0 {
				t.Errorf("%s: got code %d out %q err %q, want %q", c.script, res.ExitCode, res.Stdout, res.Stderr, c.want)
			}
		})
	}
	// A daemon started with nohup keeps running after the call returns.
	s.exec("debian", map[string]any{"argv": []string{"/bin/sh", "-c", "nohup sleep 1000 >/dev/null 2>&1 &"}})
	s.exec("debian", map[string]any{"argv": []string{"/bin/sh", "-c", "nohup sleep 1001 &"}})
	// The shell has forked them when exec returns, but nohup may not have
	// run sleep yet: wait for both to be sleep, then for them to stay.
	count := func() string {
		return s.exec("debian", map[string]any{"argv": []string{"pgrep", "-c", "-f", "^sleep 100[01]$"}}).Stdout
	}
	waitFor(t, 5*time.Second, "both nohup daemons running sleep", func() bool { return count() == "2\n" })
	if got := count(); got != "2\n" {
		t.Errorf("nohup daemons after exec returned: pgrep says %q", got)
	}
	if res := s.exec("debian", map[string]any{"argv": []string{"id", "-un"}, "user": "bob"}); res.Stdout != "bob\n" {
		t.Errorf("exec -u bob = %+v", res)
	}
	// A login shell through the streaming endpoint (the CLI's `run` without a command).
	out, _, code := s.cli(strings.NewReader("echo $0; exit 7\n"), "run", "-d", "debian", "-u", "bob")
	if code != 7 || !strings.Contains(out, "-bash") {
		t.Errorf("login shell: code %d out %q, want exit 7 from -bash", code, out)
	}
}
