//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/internal/testenv"
)

// virtiofsdPID is the pid of the data directory's virtiofsd, 0 when none runs.
func virtiofsdPID(data string) int { return vmRunPID(data, "virtiofsd.pid") }

// countFDs counts pid's open descriptors.
func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("virtiofsd's descriptors: %v", err)
	}
	return len(ents)
}

// requireVirtiofsd fails (strict) or skips without virtiofsd.
func requireVirtiofsd(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"} {
		if _, err := os.Stat(p); err == nil {
			return
		}
	}
	testenv.SkipOrFailf(t, "needs virtiofsd (qemu-system-common)")
}

// TestVersion2HostFilesLimit: virtiofsd keeps a descriptor per host file the
// guest caches, and fails lookups past its limit on open files. A distro
// walks and reads a host tree of more files than that limit (lowered for the
// test; by default it is the host's fs.nr_open): every file is seen and read,
// nothing fails with "Too many open files", and virtiofsd ends below its
// limit, because the server had the VM let go of its cached host files.
func TestVersion2HostFilesLimit(t *testing.T) {
	requireVirtiofsd(t)
	const limit, dirs, perDir = 8192, 50, 200 // 10,000 files > 8192
	t.Setenv("SUBSYS_VIRTIOFSD_MAX_FILES", strconv.Itoa(limit))
	s := startV2Server(t)
	tree := t.TempDir()
	os.Chmod(tree, 0o755)
	var total int64
	for d := range dirs {
		dir := filepath.Join(tree, fmt.Sprintf("d%03d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range perDir {
			body := fmt.Sprintf("file %d of dir %d\n", f, d)
			total += int64(len(body))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.importV2("walker", tinyRootfs(t))
	s.sh("walker", "true")
	pid := virtiofsdPID(s.data)
	if pid == 0 {
		t.Fatal("no virtiofsd runs for the VM")
	}
	lim, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	want := fmt.Sprintf("Max open files %d %d files", limit, limit)
	if err != nil || !strings.Contains(strings.Join(strings.Fields(string(lim)), " "), want) {
		t.Fatalf("virtiofsd's limits (want %q): %s %v", want, lim, err)
	}
	before := countFDs(t, pid)

	script := fmt.Sprintf("find /mnt/host%[1]s -type f | wc -l; cat /mnt/host%[1]s/*/* | wc -c", tree)
	res := s.exec("walker", api.ExecRequest{Argv: []string{"/bin/sh", "-c", script}, TimeoutS: 300})
	lines := strings.Fields(res.Stdout)
	if res.ExitCode != 0 || len(lines) != 2 || lines[0] != strconv.Itoa(dirs*perDir) || lines[1] != strconv.FormatInt(total, 10) {
		t.Fatalf("walking %d host files (limit %d): exit %d, want %d files and %d bytes; stdout %q stderr %q",
			dirs*perDir, limit, res.ExitCode, dirs*perDir, total, res.Stdout, tail(res.Stderr, 2000))
	}
	if strings.Contains(res.Stderr, "Too many open files") {
		t.Errorf("lookups failed: %s", tail(res.Stderr, 2000))
	}
	// The walk cost descriptors, and the server gave them back: both seen.
	if !strings.Contains(s.log.String(), "virtiofsd neared its limit on open files") {
		t.Errorf("the server never trimmed virtiofsd's descriptors (it held %d before the walk)", before)
	}
	if n := countFDs(t, pid); n >= limit {
		t.Errorf("virtiofsd holds %d descriptors after the walk, its limit is %d", n, limit)
	}
	if v := s.vm(); v.HostFiles != "virtio-fs" || v.HostFilesNote != "" {
		t.Errorf("GET /vm after the walk: host files %q, note %q; want virtio-fs and no note", v.HostFiles, v.HostFilesNote)
	}
}

// TestVersion2VirtiofsdDies: when virtiofsd dies under a running VM, /mnt/host
// goes over 9p instead of hanging, in the distro that was running as in one
// started afterwards, and GET /vm says what happened.
func TestVersion2VirtiofsdDies(t *testing.T) {
	requireVirtiofsd(t)
	s := startV2Server(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	file := filepath.Join(dir, "host-file")
	if err := os.WriteFile(file, []byte("on the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.importV2("before", tinyRootfs(t))
	s.importV2("after", tinyRootfs(t))
	read := func(name string) api.ExecResult {
		return s.exec(name, api.ExecRequest{Argv: []string{"/bin/sh", "-c", "cat /mnt/host" + file + " /mnt/host" + dir + "/unseen; grep ' /mnt/host ' /proc/mounts"}, TimeoutS: 60})
	}
	// The probe sees a working /mnt/host first.
	if res := read("before"); !strings.Contains(res.Stdout, "on the host") || !strings.Contains(res.Stdout, " virtiofs ") {
		t.Fatalf("before virtiofsd dies: %+v", res)
	}
	pid := virtiofsdPID(s.data)
	if pid == 0 {
		t.Fatal("no virtiofsd runs for the VM")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var v api.VMStatus
	waitFor(t, 20*time.Second, "GET /vm to say virtiofsd is gone and 9p took over", func() bool {
		v = s.vm()
		return v.HostFilesNote != "" && v.HostFiles == "9p"
	})
	if !strings.Contains(v.HostFilesNote, "virtiofsd") || v.HostFiles != "9p" || v.State != api.VMRunning {
		t.Errorf("GET /vm after virtiofsd died: state %s, host files %q, note %q", v.State, v.HostFiles, v.HostFilesNote)
	}
	res := read("before")
	if !strings.Contains(res.Stdout, "on the host") || !strings.Contains(res.Stdout, " 9p ") {
		t.Errorf("the running distro after virtiofsd died: %+v; want /mnt/host over 9p", res)
	}
	res = read("after")
	if !strings.Contains(res.Stdout, "on the host") || !strings.Contains(res.Stdout, " 9p ") {
		t.Errorf("a distro started after virtiofsd died: %+v; want /mnt/host over 9p", res)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
