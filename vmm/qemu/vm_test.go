package qemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// bootMarker is what the test initramfs's /init prints once it runs.
const bootMarker = "SUBSYS-QEMU-TEST-INIT-REACHED"

// testKernel returns the kernel image in $SUBSYS_KERNEL_DIR (`make kernel`
// unpacks Debian's there), or stops the test when there is none.
func testKernel(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SUBSYS_KERNEL_DIR")
	if dir == "" {
		dir = "/var/cache/subsys-test/kernel"
	}
	m, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(m) == 0 {
		testenv.SkipOrFailf(t, "no kernel in %s/boot (make kernel)", dir)
	}
	return m[len(m)-1]
}

// buildInitramfs writes a gzip-less newc cpio holding busybox and an /init
// that mounts devtmpfs (the archive has no /dev/console, and making one needs
// root), prints bootMarker on the console and sleeps, so the VM stays up
// until Quit.
func buildInitramfs(t *testing.T) string {
	t.Helper()
	busybox := testenv.RequireCommand(t, "busybox", "make deps (busybox-static)")
	cpio := testenv.RequireCommand(t, "cpio", "make deps")
	root := t.TempDir()
	for _, d := range []string{"bin", "dev", "proc"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	initScript := `#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec >/dev/console 2>&1 </dev/console
/bin/busybox mount -t proc proc /proc
/bin/busybox echo ` + bootMarker + ` $(/bin/busybox cut -d' ' -f1 /proc/uptime)
exec /bin/busybox sleep 3600
`
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(initScript), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "initrd.cpio")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(cpio, "--quiet", "-o", "-H", "newc")
	cmd.Dir = root
	cmd.Stdin = strings.NewReader("bin\nbin/busybox\ndev\nproc\ninit\n")
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpio: %v: %s", err, stderr.Bytes())
	}
	return out
}

// runDir is a short run directory for the sockets (t.TempDir's paths can be
// long for a unix socket address).
func runDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "qemu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "run")
}

// qemuProcesses returns the pids of processes whose command line mentions s.
func qemuProcesses(t *testing.T, s string) []string {
	t.Helper()
	var pids []string
	m, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(s)) && bytes.Contains(b, []byte("qemu")) {
			pids = append(pids, filepath.Base(filepath.Dir(p)))
		}
	}
	return pids
}

func checkGone(t *testing.T, v *VM, run string) {
	t.Helper()
	select {
	case <-v.Done():
	default:
		t.Error("VM not done")
	}
	for _, p := range []string{QMPSocketName, ConsoleSocketName} {
		if _, err := os.Lstat(filepath.Join(run, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	if pids := qemuProcesses(t, run); len(pids) > 0 {
		t.Errorf("QEMU processes left: %v", pids)
	}
}

func TestBootToInitAndQuit(t *testing.T) {
	testenv.SkipIfShort(t, "boots a kernel under TCG: tens of seconds")
	testenv.RequireCommand(t, DefaultBinary, "make deps (qemu-system-x86)")
	kernel := testKernel(t)
	initrd := buildInitramfs(t)
	run := runDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	began := time.Now()
	v, err := Start(ctx, Config{
		Kernel: kernel, Initrd: initrd, RunDir: run,
		Append: "console=ttyS0 quiet panic=-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.proc.Kill(); <-v.Done() })
	t.Logf("QMP up after %v", time.Since(began).Round(time.Millisecond))
	if fi, err := os.Stat(run); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("run directory: %v, %v", fi.Mode(), err)
	}

	// 90 s: TCG on a loaded two-core machine; an idle one takes a few.
	bootCtx, cancelBoot := context.WithTimeout(ctx, 90*time.Second)
	defer cancelBoot()
	if err := v.WaitConsole(bootCtx, func(b []byte) bool { return bytes.Contains(b, []byte(bootMarker)) }); err != nil {
		t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, v.Console(), v.Stderr())
	}
	line := v.Console()[bytes.Index(v.Console(), []byte(bootMarker)):]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	t.Logf("marker after %v wall: %q (guest uptime)", time.Since(began).Round(time.Millisecond), bytes.TrimSpace(line))

	st, err := v.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.Status != "running" {
		t.Errorf("status %+v, want running", st)
	}

	// Nothing in the guest answers the power button, so Quit goes on to quit.
	v.PowerdownTimeout = time.Second
	quitAt := time.Now()
	if err := v.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Quit took %v", time.Since(quitAt).Round(time.Millisecond))
	if err := v.Wait(ctx); err != nil {
		t.Errorf("Wait after quit: %v (QEMU exits 0 on quit)", err)
	}
	checkGone(t, v, run)
	if _, err := v.Status(ctx); err == nil {
		t.Error("Status after Quit succeeded")
	}
}

func TestStartFailsOnAKernelThatDoesNotLoad(t *testing.T) {
	testenv.RequireCommand(t, DefaultBinary, "make deps (qemu-system-x86)")
	kernel := filepath.Join(t.TempDir(), "empty-vmlinuz")
	if err := os.WriteFile(kernel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	run := runDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v, err := Start(ctx, Config{Kernel: kernel, RunDir: run})
	if err == nil {
		v.Quit(ctx)
		t.Fatal("Start with an empty kernel succeeded")
	}
	t.Logf("error: %v", err)
	// QEMU's own words must be in the error, not only "it exited".
	if !strings.Contains(err.Error(), "qemu stderr:") || !strings.Contains(err.Error(), "exited") {
		t.Errorf("error lacks QEMU's exit or its stderr: %v", err)
	}
	if pids := qemuProcesses(t, run); len(pids) > 0 {
		t.Errorf("QEMU processes left: %v", pids)
	}
	for _, p := range []string{QMPSocketName, ConsoleSocketName} {
		if _, err := os.Lstat(filepath.Join(run, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
}

func TestStartHonoursContext(t *testing.T) {
	// A "QEMU" that never opens its sockets: Start must give up with ctx and
	// leave no process.
	run := runDir(t)
	fake := filepath.Join(t.TempDir(), "fake-qemu")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho fake qemu here >&2\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Start(ctx, Config{Binary: fake, Kernel: "/nonexistent", RunDir: run})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "fake qemu here") {
		t.Fatalf("Start: %v", err)
	}
}
