package qemu

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/disk"
	"github.com/subsys-dev/subsys/vmm/qemu/initramfs"
)

// vmAgentModules are the modules the utility VM's initramfs carries for the
// agent: the virtio PCI transport, the agent's virtio-serial port, the distros'
// virtio-scsi disks (sd_mod) with ext4, and the balloon Start's machine has.
var (
	vmAgentModules  = []string{"virtio_pci", "virtio_console", "virtio_scsi", "sd_mod", "ext4", "virtio_balloon"}
	vmAgentOptional = []string{"virtio_rng", "crc32c_intel"}
)

// buildAgent builds the static agent, as the server embeds it.
func buildAgent(t *testing.T) []byte {
	t.Helper()
	gobin := testenv.RequireCommand(t, "go", "a Go toolchain")
	out := filepath.Join(t.TempDir(), "subsys-agent")
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/subsys-dev/subsys/vmm/agent/cmd/subsys-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildAgentInitramfs writes the utility VM's initramfs: the agent as /init
// and its modules.
func buildAgentInitramfs(t *testing.T, kernel string) string {
	t.Helper()
	// <dir>/boot/vmlinuz-<ver> → <dir>/lib/modules/<ver>
	ver := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	mods := filepath.Join(filepath.Dir(filepath.Dir(kernel)), "lib", "modules", ver)
	if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err != nil {
		testenv.SkipOrFailf(t, "no modules for %s: %v (make kernel)", ver, err)
	}
	out := filepath.Join(t.TempDir(), "initrd.cpio")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := initramfs.Build(f, initramfs.Spec{Init: buildAgent(t), ModulesDir: mods,
		Modules: vmAgentModules, Optional: vmAgentOptional})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initramfs modules: %s (absent: %v)", strings.Join(m.Modules, " "), m.Absent)
	return out
}

// debianDisk makes an ext4 image of Debian's minbase tree.
func debianDisk(t *testing.T, ctx context.Context) string {
	t.Helper()
	const tarball = "/var/cache/subsys-test/debian-bookworm-minbase.tar"
	f, err := os.Open(tarball)
	if err != nil {
		testenv.SkipOrFailf(t, "no Debian rootfs: %v", err)
	}
	defer f.Close()
	tree := t.TempDir()
	if _, err := archive.Extract(ctx, f, tree, archive.Limits{}); err != nil {
		t.Fatalf("extract %s: %v", tarball, err)
	}
	img := filepath.Join(t.TempDir(), "debian.ext4")
	if err := disk.Create(ctx, img, tree, 2<<30, disk.Options{}); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestAgentInVM boots the real utility VM under TCG: the static agent as
// /init of an initramfs with Debian's kernel and modules. Through the agent's
// virtio-serial port it starts a Debian distro on a hot-plugged disk, runs
// commands in it through OpenDistro, exports it, stops it, unplugs the disk
// and powers the VM off.
func TestAgentInVM(t *testing.T) {
	testenv.SkipIfShort(t, "boots a kernel under TCG: tens of seconds")
	testenv.RequireRoot(t, "extracts a rootfs with its owners and makes an ext4 image of it")
	testenv.RequireCommand(t, DefaultBinary, "make deps (qemu-system-x86)")
	kernel := testKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	initrd := buildAgentInitramfs(t, kernel)
	img := debianDisk(t, ctx)
	run := runDir(t)

	v, err := Start(ctx, Config{
		Kernel: kernel, Initrd: initrd, RunDir: run, MemoryMiB: 1024,
		Append: "console=ttyS0 panic=-1 quiet",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		qctx, qcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer qcancel()
		v.Quit(qctx)
	})
	defer func() {
		if t.Failed() {
			t.Logf("console:\n%s\nstderr:\n%s", v.Console(), v.Stderr())
		}
	}()

	conn, err := net.Dial("unix", v.Config().AgentSocket())
	if err != nil {
		t.Fatal(err)
	}
	c, err := agent.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The request waits in the socket until the agent serves the port.
	hctx, hcancel := context.WithTimeout(ctx, 3*time.Minute)
	info, err := c.Hello(hctx)
	hcancel()
	if err != nil {
		t.Fatalf("hello: %v", err)
	}
	t.Logf("VM agent: %+v", info)
	if info.Kernel == "" || info.PID != 1 {
		t.Errorf("hello = %+v, want a kernel release and PID 1", info)
	}
	if !bytes.Contains(v.Console(), []byte("subsys-agent: serving on /dev/vport")) {
		t.Errorf("console lacks the serving line")
	}
	if bytes.Contains(v.Console(), []byte("modules failed")) {
		t.Errorf("modules failed to load")
	}

	const target = 3
	if err := v.AttachDisk(ctx, Disk{Target: target, Path: img}); err != nil {
		t.Fatal(err)
	}
	req := agent.DistroRequest{ID: "deb-1", Hostname: "debian-vm", DiskTarget: target}
	began := time.Now()
	if err := c.StartDistro(ctx, req); err != nil {
		t.Fatalf("start distro: %v", err)
	}
	t.Logf("distro started in %v", time.Since(began).Round(time.Millisecond))
	if err := c.StartDistro(ctx, req); err != nil {
		t.Errorf("second start of a running distro: %v", err)
	}
	if ids, err := c.Distros(ctx); err != nil || len(ids) != 1 || ids[0] != req.ID {
		t.Errorf("Distros = %q, %v", ids, err)
	}

	// The host goes away (a server restart) and comes back: the VM and its
	// distro have kept running, and the agent serves the new connection.
	c.Close()
	if conn, err = net.Dial("unix", v.Config().AgentSocket()); err != nil {
		t.Fatal(err)
	}
	if c, err = agent.NewClient(conn); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hctx, hcancel = context.WithTimeout(ctx, time.Minute)
	_, err = c.Hello(hctx)
	hcancel()
	if err != nil {
		t.Fatalf("hello after reconnecting: %v", err)
	}
	if ids, err := c.Distros(ctx); err != nil || len(ids) != 1 || ids[0] != req.ID {
		t.Errorf("Distros after reconnecting = %q, %v", ids, err)
	}
	if _, err := c.OpenDistro(ctx, "nope"); !errors.Is(err, agent.ErrDistroNotRunning) {
		t.Errorf("OpenDistro of an unknown distro: %v, want ErrDistroNotRunning", err)
	}

	dconn, err := c.OpenDistro(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := agent.NewClient(dconn)
	if err != nil {
		t.Fatal(err)
	}
	dinfo, err := dc.Hello(ctx)
	if err != nil {
		t.Fatalf("distro hello: %v", err)
	}
	if dinfo.PID != 1 || dinfo.Hostname != req.Hostname {
		t.Errorf("distro hello = %+v", dinfo)
	}
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"uname", "-r"}, info.Kernel},
		{[]string{"hostname"}, req.Hostname},
		{[]string{"sh", "-c", "test -f /etc/debian_version && echo ok"}, "ok"},
	} {
		if got := run1(t, ctx, dc, tc.argv); got != tc.want {
			t.Errorf("%q printed %q, want %q", tc.argv, got, tc.want)
		}
	}
	dc.Close()

	// Export the running distro: a tar with its /etc/debian_version.
	rc, err := c.ExportTree(ctx, req, "tar")
	if err != nil {
		t.Fatal(err)
	}
	if !tarHas(t, rc, "etc/debian_version") {
		t.Error("export lacks etc/debian_version")
	}
	rc.Close()
	if _, err := c.ExportTree(ctx, req, "zip"); !errors.Is(err, agent.ErrBadRequest) {
		t.Errorf("export in an unknown format: %v, want ErrBadRequest", err)
	}

	if err := c.StopDistro(ctx, req.ID); err != nil {
		t.Fatalf("stop distro: %v", err)
	}
	if ids, err := c.Distros(ctx); err != nil || len(ids) != 0 {
		t.Errorf("Distros after stop = %q, %v", ids, err)
	}
	if err := c.StopDistro(ctx, req.ID); err != nil {
		t.Errorf("stop of a stopped distro: %v", err)
	}
	// Stopped: the export mounts the disk itself.
	rc, err = c.ExportTree(ctx, req, "tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	if !tarHas(t, gunzip(t, rc), "usr/bin/uname") {
		t.Error("export of the stopped distro lacks usr/bin/uname")
	}
	rc.Close()
	if err := v.DetachDisk(ctx, target); err != nil {
		t.Fatalf("detach: %v", err)
	}

	if err := c.PowerOff(ctx); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if err := v.Wait(ctx); err != nil {
		t.Errorf("QEMU after power-off: %v", err)
	}
	if !bytes.Contains(v.Console(), []byte("reboot: Power down")) {
		t.Logf("console lacks the kernel's power-down line")
	}
}

// run1 runs argv in the distro and returns its stdout, trimmed.
func run1(t *testing.T, ctx context.Context, c *agent.Client, argv []string) string {
	t.Helper()
	p, err := c.Exec(ctx, agent.ExecRequest{Argv: argv})
	if err != nil {
		t.Fatalf("exec %q: %v", argv, err)
	}
	defer p.Close()
	p.Stdin().Close()
	var stderr bytes.Buffer
	errDone := make(chan struct{})
	go func() { io.Copy(&stderr, p.Stderr()); close(errDone) }()
	out, err := io.ReadAll(p.Stdout())
	<-errDone
	if err != nil {
		t.Fatalf("exec %q: stdout: %v", argv, err)
	}
	st, err := p.Wait()
	if err != nil || st.Code != 0 {
		t.Errorf("exec %q: %+v, %v; stderr %q", argv, st, err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// tarHas reads a whole tar stream and reports whether it has name; a stream
// that ends in an error fails the test.
func tarHas(t *testing.T, r io.Reader, name string) bool {
	t.Helper()
	tr := tar.NewReader(r)
	found := false
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar after %d entries: %v", n, err)
		}
		n++
		if strings.TrimPrefix(h.Name, "./") == name {
			found = true
		}
	}
	// Everything after the tar's end, to the data-end frame.
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatalf("after the tar: %v", err)
	}
	t.Logf("tar: %d entries", n)
	return found
}

func gunzip(t *testing.T, r io.Reader) io.Reader {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	return zr
}
