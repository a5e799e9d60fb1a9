//go:build linux

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/internal/lantest"
	"github.com/subsys-dev/subsys/internal/testenv"
)

// The version 2 tests boot Debian's kernel in QEMU under TCG (CI has no
// working KVM). `make kernel` unpacks it; SUBSYS_KERNEL_DIR overrides where.

// kernelDir returns the unpacked kernel package the VM boots.
func kernelDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SUBSYS_KERNEL_DIR")
	if dir == "" {
		dir = "/var/cache/subsys-test/kernel"
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "lib/modules/*/modules.dep")); len(m) == 0 {
		testenv.SkipOrFailf(t, "needs Debian's kernel unpacked with modules.dep in %s (make kernel)", dir)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testenv.SkipOrFailf(t, "needs qemu-system-x86_64 (make deps)")
	}
	return dir
}

// startV2Server starts a server whose data directory's vm/kernel is the
// test kernel, as `make deps` installs it for a real one.
func startV2Server(t *testing.T) *server {
	t.Helper()
	return startV2ServerWith(t)
}

// startV2ServerWith is startV2Server with env (NAME=value) added to the
// server's environment.
func startV2ServerWith(t *testing.T, env ...string) *server {
	t.Helper()
	requireRoot(t)
	kdir := kernelDir(t)
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "vm"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(kdir, filepath.Join(data, "vm", "kernel")); err != nil {
		t.Fatal(err)
	}
	s := startServerEnv(t, data, "debug", env...)
	t.Cleanup(func() {
		// Whatever happened, no QEMU outlives the test.
		if pid := qemuPID(data); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return s
}

// qemuPID is the pid of the data directory's QEMU, 0 when none runs.
func qemuPID(data string) int { return vmRunPID(data, "qemu.pid") }

// vmRunPID is the pid in the data directory's run/vm/name, 0 when there is
// none or it does not run.
func vmRunPID(data, name string) int {
	b, err := os.ReadFile(filepath.Join(data, "run", "vm", name))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// importV2 imports tarball as a version 2 distro and waits for it.
func (s *server) importV2(name string, tarball []byte) api.Operation {
	s.t.Helper()
	var op api.Operation
	st, raw := s.api("POST", "/distros?name="+name+"&version=2", tarball, &op)
	if st != http.StatusAccepted {
		s.t.Fatalf("import %s as version 2: status %d: %s", name, st, raw)
	}
	return s.waitOp(op.ID)
}

func (s *server) vm() api.VMStatus {
	s.t.Helper()
	var v api.VMStatus
	if st, raw := s.api("GET", "/vm", nil, &v); st != 200 {
		s.t.Fatalf("GET /vm: %d %s", st, raw)
	}
	return v
}

func hostBootID(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestVersion2 is a version 2 distro's life in one VM boot: import, the
// guest's own kernel, exec and terminals, two distros side by side, what v1
// cannot do, a server crash and re-adoption, shutdown.
func TestVersion2(t *testing.T) {
	s := startV2Server(t)
	tiny := tinyRootfs(t)
	s.importV2("alpha", tiny)
	var d api.Distro
	s.api("GET", "/distros/alpha", nil, &d)
	if d.Version != 2 || d.State != "Stopped" {
		t.Fatalf("alpha = %+v, want a stopped version 2 distro", d)
	}
	if fi, err := os.Stat(filepath.Join(d.Location, "disk.img")); err != nil || fi.Size() < 1<<30 {
		t.Fatalf("disk.img: %v (%v): want a sparse image of the default maximum size", fi, err)
	}
	if v := s.vm(); !v.Available || v.State != "Stopped" {
		t.Fatalf("VM before the first start = %+v, want available and stopped", v)
	}

	// The first command boots the VM.
	began := time.Now()
	res := s.sh("alpha", "uname -r; cat /proc/sys/kernel/random/boot_id; hostname")
	t.Logf("first command in a cold VM: %v", time.Since(began).Round(time.Millisecond))
	lines := strings.Fields(res.Stdout)
	if res.ExitCode != 0 || len(lines) != 3 {
		t.Fatalf("uname in alpha: %+v", res)
	}
	var host syscall.Utsname
	syscall.Uname(&host)
	hostRelease := utsString(host.Release[:])
	kernels, _ := filepath.Glob(filepath.Join(kernelDir(t), "lib/modules/*"))
	if lines[0] == hostRelease || len(kernels) != 1 || lines[0] != filepath.Base(kernels[0]) {
		t.Errorf("uname -r in alpha = %q; want the guest kernel %v, not the host's %q", lines[0], kernels, hostRelease)
	}
	if lines[1] == hostBootID(t) {
		t.Errorf("alpha has the host's boot id %s", lines[1])
	}
	if lines[2] != "alpha" {
		t.Errorf("hostname = %q, want alpha", lines[2])
	}
	v := s.vm()
	if v.State != "Running" || v.PID == 0 || v.Accel == "" || v.KernelRelease != lines[0] || len(v.Distros) != 1 {
		t.Errorf("VM = %+v, want running with one distro and the guest's kernel", v)
	}

	// A second distro in the same VM: its own root and hostname, the same kernel.
	s.importV2("beta", tiny)
	s.sh("alpha", "echo only-alpha > /root/mark")
	res = s.sh("beta", "cat /proc/sys/kernel/random/boot_id; hostname; cat /root/mark 2>/dev/null || echo no-mark")
	blines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(blines) != 3 || blines[0] != lines[1] || blines[1] != "beta" || blines[2] != "no-mark" {
		t.Errorf("beta: %q; want alpha's boot id %s, hostname beta and no /root/mark", res.Stdout, lines[1])
	}

	// What a version 1 distro cannot do: a network namespace of its own with
	// its own routes, a sysctl that leaves the host alone.
	res = s.sh("alpha", "unshare -n sh -c 'ip link set lo up && ip route add 10.99.0.0/16 dev lo && ip route show' && sysctl -w vm.swappiness=7 && cat /proc/sys/vm/swappiness")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "10.99.0.0/16") || !strings.HasSuffix(strings.TrimSpace(res.Stdout), "7") {
		t.Errorf("network namespace and sysctl in alpha: %+v", res)
	}
	if b, _ := os.ReadFile("/proc/sys/vm/swappiness"); strings.TrimSpace(string(b)) == "7" {
		t.Errorf("the host's vm.swappiness is 7: alpha's sysctl reached the host")
	}

	// A fresh ext4 image file, made on the host, mounted inside the distro
	// through a loop device of the VM's kernel.
	img := filepath.Join(t.TempDir(), "small.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", "/usr/share/doc/e2fsprogs", img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	raw, _ := os.ReadFile(img)
	var gz bytes.Buffer // mostly zeros: small enough for a JSON exec request
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	res = s.exec("alpha", api.ExecRequest{Argv: []string{"/bin/sh", "-c",
		"gunzip > /root/small.img && mkdir -p /root/m && mount -t ext4 -o loop /root/small.img /root/m && ls /root/m && grep ' /root/m ' /proc/mounts && umount /root/m"},
		Stdin: base64.StdEncoding.EncodeToString(gz.Bytes())})
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "copyright") || !strings.Contains(res.Stdout, "ext4") {
		t.Errorf("mount of an ext4 image in alpha: %+v", res)
	}

	// A terminal, dropped and reattached.
	tc := s.openTerminal("alpha", "cols=80&rows=24", autoAck)
	tc.send("echo term-''one\n")
	tc.waitOutput("term-one", 20*time.Second)
	tc.c.Close()
	<-tc.done
	again := s.openTerminal("alpha", "session="+tc.id, autoAck)
	again.waitOutput("term-one", 20*time.Second)
	again.send("echo term-''two\n")
	again.waitOutput("term-two", 20*time.Second)

	// The server dies; the VM and its distros do not. The next server
	// adopts them and exec works at once.
	pid := s.vm().PID
	s.kill9()
	if qemuPID(s.data) != pid {
		t.Fatalf("QEMU (pid %d) did not outlive the server", pid)
	}
	s.start()
	s.api("GET", "/distros/alpha", nil, &d)
	if d.State != "Running" {
		t.Errorf("alpha after the restart: %s, want Running (re-adopted)", d.State)
	}
	res = s.sh("alpha", "cat /root/mark; cat /proc/sys/kernel/random/boot_id")
	if !strings.Contains(res.Stdout, "only-alpha") || !strings.Contains(res.Stdout, lines[1]) {
		t.Errorf("alpha after the restart: %+v; want the same VM (boot id %s)", res, lines[1])
	}
	third := s.openTerminal("alpha", "session="+tc.id, autoAck)
	third.waitOutput("term-two", 20*time.Second)
	if v := s.vm(); v.PID != pid || v.State != "Running" {
		t.Errorf("VM after the restart = %+v, want the same QEMU %d", v, pid)
	}

	// Terminate one: its disk leaves the VM; the other runs on.
	if st, raw := s.api("POST", "/distros/beta/terminate", nil, nil); st >= 300 {
		t.Fatalf("terminate beta: %d %s", st, raw)
	}
	if v := s.vm(); len(v.Distros) != 1 {
		t.Errorf("VM distros after terminating beta = %v, want alpha's only", v.Distros)
	}
	res = s.sh("beta", "hostname")
	if strings.TrimSpace(res.Stdout) != "beta" {
		t.Errorf("beta restarted in the running VM: %+v", res)
	}

	// Shutdown stops the distros and QEMU.
	if st, raw := s.api("POST", "/shutdown", nil, nil); st >= 300 {
		t.Fatalf("shutdown: %d %s", st, raw)
	}
	waitFor(t, 30*time.Second, "QEMU to exit after shutdown", func() bool { return qemuPID(s.data) == 0 })
	if v := s.vm(); v.State != "Stopped" {
		t.Errorf("VM after shutdown = %+v", v)
	}
	s.api("GET", "/distros/alpha", nil, &d)
	if d.State != "Stopped" {
		t.Errorf("alpha after shutdown: %s", d.State)
	}
}

// TestVersion2IdleTimeout: with no version 2 distro running, the VM stops by
// itself after vm_idle_timeout_s.
func TestVersion2IdleTimeout(t *testing.T) {
	s := startV2Server(t)
	if st, raw := s.api("PUT", "/settings", map[string]any{"vm_idle_timeout_s": 2}, nil); st != 200 {
		t.Fatalf("settings: %d %s", st, raw)
	}
	s.importV2("idle", tinyRootfs(t))
	s.sh("idle", "true")
	if qemuPID(s.data) == 0 {
		t.Fatal("no QEMU runs after a command in a version 2 distro")
	}
	// The running distro holds the VM: it must still run after the timeout.
	time.Sleep(3 * time.Second) // the negative check needs the timeout to pass
	if qemuPID(s.data) == 0 {
		t.Fatal("the VM stopped while a distro ran")
	}
	if st, raw := s.api("POST", "/distros/idle/terminate", nil, nil); st >= 300 {
		t.Fatalf("terminate: %d %s", st, raw)
	}
	waitFor(t, 30*time.Second, "the idle VM to stop", func() bool { return qemuPID(s.data) == 0 })
	waitFor(t, 5*time.Second, "the VM to show stopped", func() bool { return s.vm().State == "Stopped" })
}

// TestVersion2KernelThatDoesNotBoot: a kernel with none of the drivers the
// agent needs panics at boot; the start fails with a clear error, the
// console is there to read, and the server stays up.
func TestVersion2KernelThatDoesNotBoot(t *testing.T) {
	s := startV2Server(t)
	images, _ := filepath.Glob(filepath.Join(kernelDir(t), "boot/vmlinuz-*"))
	if len(images) == 0 {
		t.Fatal("no kernel image")
	}
	// A bare image: no modules, so no virtio — the agent cannot reach the host.
	if st, raw := s.api("PUT", "/settings", map[string]any{"kernel": images[0]}, nil); st != 200 {
		t.Fatalf("settings: %d %s", st, raw)
	}
	s.importV2("broken", tinyRootfs(t))
	st, raw := s.api("POST", "/distros/broken/exec", api.ExecRequest{Argv: []string{"true"}}, nil)
	if st < 400 || !strings.Contains(string(raw), "console") {
		t.Fatalf("exec with a kernel that cannot boot: %d %s; want an error that points at the console", st, raw)
	}
	v := s.vm()
	if v.State != "Failed" || v.Error == "" {
		t.Errorf("VM = %+v, want Failed with an error", v)
	}
	code, console := s.api("GET", "/vm/console", nil, nil)
	if code != 200 || !strings.Contains(string(console), "virtio-serial port") || !strings.Contains(string(console), "Power down") {
		t.Errorf("console: %d, %q; want the agent's complaint and the power-off", code, console)
	}
	if st, _ := s.api("GET", "/version", nil, nil); st != 200 {
		t.Errorf("the server is down after a failed boot")
	}
	if qemuPID(s.data) != 0 {
		t.Errorf("a QEMU is left running after the failed boot")
	}
}

func utsString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// TestVersion2Conversion converts a distro 1→2→1 and compares the trees:
// names, types, modes, owners, link targets, device numbers, hard links,
// xattrs and contents survive.
func TestVersion2Conversion(t *testing.T) {
	s := startV2Server(t)
	base := tinyRootfs(t)
	extra := tarOf(t,
		tarEntry{h: tar.Header{Typeflag: tar.TypeReg, Name: "./home/alice/secret", Mode: 0o640, Uid: 1000, Gid: 50,
			PAXRecords: map[string]string{"SCHILY.xattr.user.note": "kept"}}, body: "alice's\n"},
		tarEntry{h: tar.Header{Typeflag: tar.TypeLink, Name: "./home/alice/hardlink", Linkname: "./home/alice/secret"}},
		tarEntry{h: tar.Header{Typeflag: tar.TypeSymlink, Name: "./home/alice/link", Linkname: "../../etc/passwd", Mode: 0o777}},
		tarEntry{h: tar.Header{Typeflag: tar.TypeChar, Name: "./dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		tarEntry{h: tar.Header{Typeflag: tar.TypeFifo, Name: "./home/alice/fifo", Mode: 0o600, Uid: 1000, Gid: 1000}},
		tarEntry{h: tar.Header{Typeflag: tar.TypeReg, Name: "./bin/setuid", Mode: 0o4755}, body: "#!/bin/sh\n"},
	)
	s.importTar("conv", concatTars(t, base, extra))
	var d api.Distro
	s.api("GET", "/distros/conv", nil, &d)
	before := treeManifest(t, filepath.Join(d.Location, "rootfs"))

	setVersion := func(v int) {
		t.Helper()
		var op api.Operation
		if st, raw := s.api("POST", "/distros/conv/set-version", map[string]int{"version": v}, &op); st != http.StatusAccepted {
			t.Fatalf("set-version %d: %d %s", v, st, raw)
		}
		s.waitOp(op.ID)
		s.api("GET", "/distros/conv", nil, &d)
		if d.Version != v {
			t.Fatalf("after set-version %d the distro is version %d", v, d.Version)
		}
	}
	setVersion(2)
	if _, err := os.Stat(filepath.Join(d.Location, "rootfs")); err == nil {
		t.Errorf("the version 1 tree is still there after the conversion to 2")
	}
	res := s.sh("conv", "uname -r; stat -c '%u:%g %a' /home/alice/secret; cat /home/alice/link | head -1")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "1000:50 640") || !strings.Contains(res.Stdout, "root:x:0:0") {
		t.Errorf("in the converted distro: %+v", res)
	}
	if st, raw := s.api("POST", "/distros/conv/terminate", nil, nil); st >= 300 {
		t.Fatalf("terminate: %d %s", st, raw)
	}

	// A raw ext4 image (as wsl --import --vhd) is a distro of its own that
	// runs: made here from the same tree, small (an exported image is as
	// long as its maximum size: 256 GiB by default).
	tree := t.TempDir()
	untar := exec.Command("tar", "-xzf", "-", "-C", tree)
	untar.Stdin = bytes.NewReader(base)
	if out, err := untar.CombinedOutput(); err != nil {
		t.Fatalf("untar: %v %s", err, out)
	}
	os.WriteFile(filepath.Join(tree, "root", "from-image"), []byte("made on the host\n"), 0o644)
	imgPath := filepath.Join(t.TempDir(), "tiny.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", tree, imgPath, "64M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	img, _ := os.ReadFile(imgPath)
	var op api.Operation
	if st, raw := s.request("POST", "/distros?name=fromimg", img, &op, http.Header{"Content-Type": {"application/x-raw-disk-image"}}); st != http.StatusAccepted {
		t.Fatalf("import of a raw image: %d %s", st, raw)
	}
	s.waitOp(op.ID)
	res = s.sh("fromimg", "hostname; cat /root/from-image")
	if res.ExitCode != 0 || res.Stdout != "fromimg\nmade on the host\n" {
		t.Errorf("the distro imported from a raw image: %+v", res)
	}
	setVersion(1)
	after := treeManifest(t, filepath.Join(d.Location, "rootfs"))
	for name, want := range before {
		if got, ok := after[name]; !ok {
			t.Errorf("%s is gone after 1→2→1", name)
		} else if got != want {
			t.Errorf("%s changed after 1→2→1:\n before %s\n after  %s", name, want, got)
		}
	}
	for name := range after {
		// The distro ran in between: its agent writes /etc/hosts (and
		// resolv.conf where the VM has one) at every start, as in v1.
		if _, ok := before[name]; !ok && name != "lost+found" && name != "etc/hosts" && name != "etc/resolv.conf" {
			t.Errorf("%s appeared after 1→2→1", name)
		}
	}
	if _, err := os.Stat(filepath.Join(d.Location, "disk.img")); err == nil {
		t.Errorf("the version 2 image is still there after the conversion back to 1")
	}
}

// treeManifest describes every entry under root (not following symlinks):
// type and mode, owner, size and hash, link target, device number, xattrs,
// and for hard links the first name of the group.
func treeManifest(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case fi.Mode()&(os.ModeDevice|os.ModeCharDevice) != 0:
			desc += fmt.Sprintf(" dev %d", st.Rdev)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %d %x", len(data), sha256.Sum256(data))
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					desc += " = " + first
				} else {
					inodes[st.Ino] = rel
				}
			}
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			buf := make([]byte, 4096)
			if n, err := syscall.Listxattr(p, buf); err == nil && n > 0 {
				for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
					v := make([]byte, 4096)
					m, _ := syscall.Getxattr(p, name, v)
					if m >= 0 {
						desc += fmt.Sprintf(" xattr %s=%q", name, v[:m])
					}
				}
			}
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestVersion2Network: a version 2 distro has the VM's network: IPv4 and
// IPv6 addresses, name servers, and the host's own services by the name
// host.subsys.internal (IPv4) and the host's IPv6 address on that network;
// with passt where it is installed, and with QEMU's slirp without it.
func TestVersion2Network(t *testing.T) {
	if _, err := exec.LookPath("passt"); err != nil {
		testenv.SkipOrFailf(t, "needs passt (make deps)")
	}
	for _, network := range []string{"passt", "slirp"} {
		t.Run(network, func(t *testing.T) {
			if network == "slirp" {
				t.Setenv("SUBSYS_PASST", "off")
			}
			testVersion2Network(t, network)
		})
	}
}

func testVersion2Network(t *testing.T, network string) {
	s := startV2Server(t)
	serve := func(network, addr string) string {
		ln, err := net.Listen(network, addr)
		if err != nil {
			testenv.SkipOrFailf(t, "listen %s %s: %v", network, addr, err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello from the host over "+network+"\n")
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		return port
	}
	p4 := serve("tcp4", "127.0.0.1:0")
	p6 := serve("tcp6", "[::1]:0")
	s.importV2("net", tinyRootfs(t))
	res := s.sh("net", "cat /etc/resolv.conf; grep host.subsys.internal /etc/hosts; wget -q -O - http://host.subsys.internal:"+p4+"/; wget -q -O - http://[fec0::2]:"+p6+"/")
	for _, want := range []string{"nameserver 10.0.2.3", "10.0.2.2\thost.subsys.internal", "hello from the host over tcp4", "hello from the host over tcp6"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("in a v2 distro: %q is missing from:\n%s\n%s", want, res.Stdout, res.Stderr)
		}
	}
	waitFor(t, 20*time.Second, "the VM to show an IPv4 and an IPv6 address", func() bool {
		a := strings.Join(s.vm().Addresses, " ")
		return strings.Contains(a, "10.0.2.15/24") && strings.Contains(a, "fec0::")
	})
	if got := s.vm().Network; got != network {
		t.Errorf("GET /vm says the network is %q, want %q", got, network)
	}
	res = s.sh("net", "ip -o addr show; ip route show; ip -6 route show")
	if !strings.Contains(res.Stdout, "10.0.2.15/24") || !strings.Contains(res.Stdout, "default via 10.0.2.2") || !strings.Contains(res.Stdout, "fec0::") {
		t.Errorf("the distro's view of the VM's network:\n%s", res.Stdout)
	}
}

// TestVersion2HostFiles: /mnt/host in a version 2 distro is the host's root,
// over virtio-fs where virtiofsd is installed and over 9p without it: host
// files read with their owners and modes, and files the distro writes land
// on the host with theirs.
func TestVersion2HostFiles(t *testing.T) {
	for _, transport := range []string{"virtio-fs", "9p"} {
		t.Run(transport, func(t *testing.T) {
			if transport == "9p" {
				t.Setenv("SUBSYS_VIRTIOFSD", "off")
			}
			testVersion2HostFiles(t, transport)
		})
	}
}

func testVersion2HostFiles(t *testing.T, transport string) {
	s := startV2Server(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	host := filepath.Join(dir, "from-host")
	if err := os.WriteFile(host, []byte("written on the host\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chown(host, 1000, 50)
	s.importV2("files", tinyRootfs(t))
	res := s.sh("files", "stat -c '%u:%g %a' /mnt/host"+host+"; cat /mnt/host"+host+
		"; echo written in the distro > /mnt/host"+dir+"/from-guest && chmod 600 /mnt/host"+dir+"/from-guest && chown 1000:1000 /mnt/host"+dir+"/from-guest"+
		"; grep ' /mnt/host ' /proc/mounts")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "1000:50 640") || !strings.Contains(res.Stdout, "written on the host") {
		t.Fatalf("reading a host file in a v2 distro: %+v", res)
	}
	fsType := map[string]string{"virtio-fs": " virtiofs ", "9p": " 9p "}[transport]
	if !strings.Contains(res.Stdout, fsType) {
		t.Errorf("/mnt/host is not %s: %q", transport, res.Stdout)
	}
	if got := s.vm().HostFiles; got != transport {
		t.Errorf("GET /vm says host files go over %q, want %q", got, transport)
	}
	fi, err := os.Stat(filepath.Join(dir, "from-guest"))
	if err != nil {
		t.Fatalf("the file the distro wrote: %v", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	data, _ := os.ReadFile(filepath.Join(dir, "from-guest"))
	if fi.Mode().Perm() != 0o600 || st.Uid != 1000 || st.Gid != 1000 || string(data) != "written in the distro\n" {
		t.Errorf("the file the distro wrote is %v %d:%d %q; want 0600 1000:1000 and its text", fi.Mode(), st.Uid, st.Gid, data)
	}
	if transport != "virtio-fs" {
		return
	}
	// The server crashes and comes back: virtiofsd, which outlives it with
	// the VM, still serves, and the new server watches it.
	pid := virtiofsdPID(s.data)
	s.kill9()
	s.start()
	res = s.sh("files", "cat /mnt/host"+host)
	if res.ExitCode != 0 || res.Stdout != "written on the host\n" {
		t.Errorf("reading a host file after a server restart: %+v", res)
	}
	if got := virtiofsdPID(s.data); got == 0 || got != pid {
		t.Errorf("virtiofsd was pid %d before the server restart and is %d after", pid, got)
	}
	if v := s.vm(); v.HostFiles != "virtio-fs" || v.HostFilesNote != "" {
		t.Errorf("GET /vm after a server restart: host files %q, note %q", v.HostFiles, v.HostFilesNote)
	}
}

// TestVersion2Ports: TCP servers in a version 2 distro, bound to 0.0.0.0,
// 127.0.0.1 and [::1] in the VM, are reached from host 127.0.0.1 and [::1]
// soon after they listen; the localhost toggle turns that off and on; a
// server that stops is gone from the host.
func TestVersion2Ports(t *testing.T) {
	s := startV2Server(t)
	ps := freePorts(t, 3)
	s.importV2("web", tinyRootfs(t))
	s.sh("web", "mkdir -p /root/www && echo served-from-the-vm > /root/www/index.html")
	binds := []string{"0.0.0.0", "127.0.0.1", "[::1]"}
	for i, b := range binds {
		if res := s.sh("web", fmt.Sprintf("httpd -p %s:%d -h /root/www", b, ps[i])); res.ExitCode != 0 {
			t.Fatalf("httpd on %s:%d: %+v", b, ps[i], res)
		}
	}
	get := func(host string, port uint16) (string, error) {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(fmt.Sprintf("http://%s/", net.JoinHostPort(host, strconv.Itoa(int(port)))))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for i, b := range binds {
		for _, host := range []string{"127.0.0.1", "::1"} {
			began := time.Now()
			waitFor(t, 20*time.Second, fmt.Sprintf("the guest's %s:%d on host %s", b, ps[i], host), func() bool {
				body, err := get(host, ps[i])
				return err == nil && body == "served-from-the-vm\n"
			})
			t.Logf("guest %s:%d reached on host %s after %v", b, ps[i], host, time.Since(began).Round(time.Millisecond))
		}
	}
	p, ok := s.port("web", "tcp", ps[0])
	if !ok || !p.Localhost || p.State != "local" || p.Process != "httpd" {
		t.Errorf("port %d = %+v, want a local port of httpd with localhost on", ps[0], p)
	}

	// localhost off: the host's listeners go; on again: they come back.
	s.expose("web", "tcp", ps[0], map[string]any{"localhost": false})
	waitFor(t, 10*time.Second, "the host listener to close", func() bool {
		_, err := get("127.0.0.1", ps[0])
		return err != nil
	})
	s.expose("web", "tcp", ps[0], map[string]any{"localhost": true})
	waitFor(t, 10*time.Second, "the host listener to open again", func() bool {
		body, err := get("127.0.0.1", ps[0])
		return err == nil && body == "served-from-the-vm\n"
	})

	// The server restarts (a crash): the VM is adopted and the port is
	// forwarded again.
	s.kill9()
	s.start()
	began := time.Now()
	waitFor(t, 10*time.Second, "the port to be forwarded again after a server restart", func() bool {
		body, err := get("::1", ps[0])
		return err == nil && body == "served-from-the-vm\n"
	})
	t.Logf("forwarded again %v after the restarted server answered", time.Since(began).Round(time.Millisecond))

	// A guest port whose host port another program holds is in conflict,
	// naming the holder; once the holder lets go, it is forwarded.
	pc := freePorts(t, 1)[0]
	holder, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), pc).String())
	if err != nil {
		t.Fatal(err)
	}
	s.sh("web", fmt.Sprintf("httpd -p 0.0.0.0:%d -h /root/www", pc))
	waitFor(t, 10*time.Second, "the guest port to be in conflict", func() bool {
		p, ok := s.port("web", "tcp", pc)
		return ok && p.State == "conflict"
	})
	if p, _ := s.port("web", "tcp", pc); !strings.Contains(p.Error, "in use") || !strings.Contains(p.Error, strconv.Itoa(os.Getpid())) {
		t.Errorf("conflict error %q does not name the holder (pid %d)", p.Error, os.Getpid())
	}
	holder.Close()
	waitFor(t, 10*time.Second, "the port to be forwarded once the holder let go", func() bool {
		body, err := get("127.0.0.1", pc)
		return err == nil && body == "served-from-the-vm\n"
	})

	// The server stops in the guest: gone from the host.
	s.sh("web", "pkill httpd || killall httpd")
	waitFor(t, 10*time.Second, "the stopped servers to be gone from the host", func() bool {
		for _, p := range append(ps[:len(binds):len(binds)], pc) {
			if _, err := get("127.0.0.1", p); err == nil {
				return false
			}
		}
		return true
	})

	// Terminating the distro closes its host listeners at once.
	s.sh("web", fmt.Sprintf("httpd -p 0.0.0.0:%d -h /root/www", pc))
	waitFor(t, 10*time.Second, "the port to be forwarded before the distro stops", func() bool {
		body, err := get("127.0.0.1", pc)
		return err == nil && body == "served-from-the-vm\n"
	})
	if st, raw := s.api("POST", "/distros/web/terminate", nil, nil); st >= 300 {
		t.Fatalf("terminate: %d %s", st, raw)
	}
	began = time.Now()
	waitFor(t, 5*time.Second, "the terminated distro's host listener to close", func() bool {
		_, err := get("127.0.0.1", pc)
		return err != nil
	})
	t.Logf("host listener closed %v after the terminate returned", time.Since(began).Round(time.Millisecond))
}

// TestVersion2UDPPorts: UDP servers in a version 2 distro, bound to 0.0.0.0
// and [::] in the VM, answer datagrams sent to host 127.0.0.1 and [::1].
func TestVersion2UDPPorts(t *testing.T) {
	s := startV2Server(t)
	ps := freePorts(t, 2)
	s.importV2("udp", echodRootfs(t))
	s.sh("udp", fmt.Sprintf("echod -udp 0.0.0.0:%d -udp [::]:%d </dev/null >/dev/null 2>&1 &", ps[0], ps[1]))
	for _, p := range ps {
		for _, host := range []string{"127.0.0.1", "::1"} {
			addr := net.JoinHostPort(host, strconv.Itoa(int(p)))
			waitFor(t, 20*time.Second, "a UDP echo from the guest through "+addr, func() bool {
				c, err := net.Dial("udp", addr)
				if err != nil {
					return false
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte("ping over " + addr)); err != nil {
					return false
				}
				buf := make([]byte, 256)
				n, err := c.Read(buf)
				return err == nil && strings.Contains(string(buf[:n]), "ping over "+addr)
			})
		}
	}
	if p, ok := s.port("udp", "udp", ps[0]); !ok || p.State != "local" || p.Process != "echod" || !p.Localhost {
		t.Errorf("udp port %d = %+v, want local and echod's", ps[0], p)
	}
}

// TestVersion2LAN: a version 2 distro's port reaches the LAN (the network
// tests' LAN host) only while its lan toggle is on, and only from sources
// its allowlist admits; localhost stays as it is.
func TestVersion2LAN(t *testing.T) {
	s := startV2Server(t)
	h := lantest.New(t)
	ps := freePorts(t, 2)
	p := ps[0]
	s.importV2("lan2", echodRootfs(t))
	s.sh("lan2", fmt.Sprintf("echod -tcp 0.0.0.0:%d </dev/null >/dev/null 2>&1 &", p))
	local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	waitFor(t, 20*time.Second, "the port on host localhost", func() bool {
		c, err := net.DialTimeout("tcp", local.String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	lan := netip.AddrPortFrom(h.Host4, p)
	// The probe can see a LAN listener: a port of this host's that listens
	// on every address answers the LAN host now.
	control, err := net.Listen("tcp", netip.AddrPortFrom(netip.IPv4Unspecified(), ps[1]).String())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := control.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	defer control.Close()
	if err := h.Ping(t, "tcp", netip.AddrPortFrom(h.Host4, ps[1]), 3*time.Second); err != nil {
		t.Fatalf("the LAN host cannot reach a host listener at all: %v", err)
	}
	if err := h.Ping(t, "tcp", lan, 2*time.Second); err == nil {
		t.Fatalf("the v2 port %d reaches the LAN with its toggle off", p)
	}
	s.expose("lan2", "tcp", p, map[string]any{"lan": true})
	waitFor(t, 10*time.Second, "the v2 port on the LAN", func() bool { return h.Ping(t, "tcp", lan, 2*time.Second) == nil })
	// An allowlist without the LAN host shuts it out.
	s.expose("lan2", "tcp", p, map[string]any{"lan": true, "allow": []string{"198.51.100.0/24"}})
	waitFor(t, 10*time.Second, "the allowlist to shut the LAN host out", func() bool { return h.Ping(t, "tcp", lan, 2*time.Second) != nil })
	s.expose("lan2", "tcp", p, map[string]any{"lan": false, "allow": []string{}})
	waitFor(t, 10*time.Second, "the port to leave the LAN", func() bool { return h.Ping(t, "tcp", lan, 2*time.Second) != nil })
	if c, err := net.DialTimeout("tcp", local.String(), time.Second); err != nil {
		t.Errorf("host localhost lost the port: %v", err)
	} else {
		c.Close()
	}
}
