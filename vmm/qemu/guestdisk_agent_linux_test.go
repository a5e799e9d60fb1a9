package qemu

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/internal/testutil"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/qemu/initramfs"
)

// TestGuestDiskInVM boots the real utility VM under TCG with e2fsprogs in
// its initramfs and makes a distro's disk in it: FormatDisk and UnpackTree
// of Debian's minbase tarball on a hot-plugged blank image, then starts a
// distro from that disk and looks at its files, owners and modes from
// inside. FormatDisk refuses the disk once formatted, and a running
// distro's disk; a cancelled UnpackTree returns at once and the agent
// unmounts its disk.
func TestGuestDiskInVM(t *testing.T) {
	testenv.SkipIfShort(t, "boots a kernel under TCG: tens of seconds")
	testenv.RequireRoot(t, "the VM's disks and the distro's owners")
	testenv.RequireCommand(t, DefaultBinary, "make deps (qemu-system-x86)")
	if len(DiskTools()) != len(diskToolNames) {
		testenv.SkipOrFailf(t, "the host lacks some of %v (apt-get install e2fsprogs)", diskToolNames)
	}
	const tarball = "/var/cache/subsys-test/debian-bookworm-minbase.tar"
	if _, err := os.Stat(tarball); err != nil {
		testenv.SkipOrFailf(t, "no Debian rootfs: %v", err)
	}
	kernel := testKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	// The initramfs as the backend builds it: the agent, its modules and
	// e2fsprogs.
	ver := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	mods := filepath.Join(filepath.Dir(filepath.Dir(kernel)), "lib", "modules", ver)
	if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err != nil {
		testenv.SkipOrFailf(t, "no modules for %s: %v (make kernel)", ver, err)
	}
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := initramfs.Build(f, initramfs.Spec{Init: buildAgent(t), ModulesDir: mods,
		Modules: vmAgentModules, Optional: vmAgentOptional, Programs: DiskTools()}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	v, err := Start(ctx, Config{
		Kernel: kernel, Initrd: initrd, RunDir: runDir(t), MemoryMiB: 1024,
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
	hctx, hcancel := context.WithTimeout(ctx, 3*time.Minute)
	_, err = c.Hello(hctx)
	hcancel()
	if err != nil {
		t.Fatalf("hello: %v", err)
	}

	img := filepath.Join(t.TempDir(), "new.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 2<<30); err != nil {
		t.Fatal(err)
	}
	const target = 5
	if err := v.AttachDisk(ctx, Disk{Target: target, Path: img}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := c.FormatDisk(ctx, target); err != nil {
		t.Fatalf("format: %v", err)
	}
	t.Logf("formatted in %v", time.Since(began).Round(time.Millisecond))
	if err := c.FormatDisk(ctx, target); !errors.Is(err, agent.ErrBadRequest) {
		t.Errorf("second format: %v, want ErrBadRequest", err)
	}
	src, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	began = time.Now()
	res, err := c.UnpackTree(ctx, target, src)
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	st, _ := src.Stat()
	took := time.Since(began)
	t.Logf("unpacked %+v (%d warnings) in %v: %.1f MB/s of tarball", unpackSummary(res), len(res.Warnings), took.Round(time.Millisecond), float64(st.Size())/took.Seconds()/1e6)
	if res.Files < 1000 || res.Bytes < 50<<20 {
		t.Errorf("unpack result %+v, want Debian's thousands of files", unpackSummary(res))
	}
	if err := v.DetachDisk(ctx, target); err != nil {
		t.Fatalf("detach: %v", err)
	}

	// The disk is a distro's now.
	if err := v.AttachDisk(ctx, Disk{Target: target, Path: img}); err != nil {
		t.Fatal(err)
	}
	req := agent.DistroRequest{ID: "made-in-vm", Hostname: "made", DiskTarget: target}
	if err := c.StartDistro(ctx, req); err != nil {
		t.Fatalf("start the distro on the new disk: %v", err)
	}
	if err := c.FormatDisk(ctx, target); !errors.Is(err, agent.ErrBadRequest) {
		t.Errorf("format of a running distro's disk: %v, want ErrBadRequest", err)
	}
	dconn, err := c.OpenDistro(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := agent.NewClient(dconn)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"cat", "/etc/debian_version"}, ""},
		{[]string{"stat", "-c", "%U:%G %a", "/usr/bin/passwd"}, "root:root 4755"},
		{[]string{"stat", "-c", "%U:%G %a", "/var/mail"}, "root:mail 2775"},
		{[]string{"stat", "-c", "%U:%G %a", "/tmp"}, "root:root 1777"},
		{[]string{"sh", "-c", "findmnt -no FSTYPE / 2>/dev/null || awk '$2==\"/\"{print $3}' /proc/mounts | tail -1"}, "ext4"},
	} {
		got := run1(t, ctx, dc, tc.argv)
		if tc.want == "" && !strings.HasPrefix(got, "12") || tc.want != "" && got != tc.want {
			t.Errorf("%q printed %q, want %q", tc.argv, got, tc.want)
		}
	}
	dc.Close()
	if err := c.StopDistro(ctx, req.ID); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := v.DetachDisk(ctx, target); err != nil {
		t.Fatalf("detach: %v", err)
	}

	// A cancelled unpack: UnpackTree returns at once, and the agent
	// unmounts the disk (FormatDisk then finds it not blank, no longer
	// mounted).
	img2 := filepath.Join(t.TempDir(), "cancelled.img")
	os.WriteFile(img2, nil, 0o600)
	os.Truncate(img2, 1<<30)
	if err := v.AttachDisk(ctx, Disk{Target: target + 1, Path: img2}); err != nil {
		t.Fatal(err)
	}
	if err := c.FormatDisk(ctx, target+1); err != nil {
		t.Fatalf("format: %v", err)
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	uctx, ucancel := context.WithCancel(ctx)
	_, err = c.UnpackTree(uctx, target+1, &cancelAfter{r: src, left: 8 << 20, cancel: ucancel})
	ucancel()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled unpack: %v, want context.Canceled", err)
	}
	var ferr error
	testutil.WaitFor(t, time.Minute, "the cancelled unpack's disk unmounted", func() bool {
		ferr = c.FormatDisk(ctx, target+1)
		return ferr != nil && strings.Contains(ferr.Error(), "not blank")
	})
	if err := v.DetachDisk(ctx, target+1); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if err := c.PowerOff(ctx); err != nil {
		t.Fatalf("power off: %v", err)
	}
	v.Wait(ctx)
}

// cancelAfter reads r and cancels once left bytes have been read.
type cancelAfter struct {
	r      io.Reader
	left   int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.left -= int64(n); c.left <= 0 {
		c.cancel()
	}
	return n, err
}

// unpackSummary is res without its warnings, for logs.
func unpackSummary(res agent.UnpackResult) agent.UnpackResult {
	res.Warnings = nil
	return res
}
