package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/vmm"
)

func TestFindKernel(t *testing.T) {
	dir := t.TempDir()
	pkg := filepath.Join(dir, "pkg")
	mods := filepath.Join(pkg, "lib/modules/6.1.0-9-amd64")
	os.MkdirAll(filepath.Join(pkg, "boot"), 0o755)
	os.MkdirAll(mods, 0o755)
	os.WriteFile(filepath.Join(pkg, "boot/vmlinuz-6.1.0-9-amd64"), []byte("k"), 0o644)
	noDep := filepath.Join(dir, "nodep")
	os.MkdirAll(filepath.Join(noDep, "boot"), 0o755)
	os.MkdirAll(filepath.Join(noDep, "lib/modules/6.1.0-9-amd64"), 0o755)
	os.WriteFile(filepath.Join(noDep, "boot/vmlinuz-6.1.0-9-amd64"), []byte("k"), 0o644)
	bare := filepath.Join(dir, "bzImage")
	os.WriteFile(bare, []byte("k"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	os.WriteFile(filepath.Join(mods, "modules.dep"), nil, 0o644)

	tests := []struct {
		name, setting, def string
		image, modules     string
		err                error
		says               string
	}{
		{name: "default package", def: pkg, image: filepath.Join(pkg, "boot/vmlinuz-6.1.0-9-amd64"), modules: mods},
		{name: "setting wins", setting: pkg, def: empty, image: filepath.Join(pkg, "boot/vmlinuz-6.1.0-9-amd64"), modules: mods},
		{name: "bare image", setting: bare, def: pkg, image: bare},
		{name: "no default", def: filepath.Join(dir, "missing"), err: vmm.ErrUnsupported, says: "make deps"},
		{name: "missing setting", setting: filepath.Join(dir, "missing"), def: pkg, err: vmm.ErrInvalid},
		{name: "no image in the directory", setting: empty, err: vmm.ErrInvalid, says: "vmlinuz"},
		{name: "no modules.dep", setting: noDep, err: vmm.ErrInvalid, says: "depmod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			image, modules, err := findKernel(tt.setting, tt.def)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.says) {
					t.Fatalf("err = %v, want %v saying %q", err, tt.err, tt.says)
				}
				return
			}
			if err != nil || image != tt.image || modules != tt.modules {
				t.Fatalf("findKernel = %q, %q, %v; want %q, %q", image, modules, err, tt.image, tt.modules)
			}
		})
	}
}

func TestVMSize(t *testing.T) {
	half := int(hostMemory()/2>>20) &^ 63
	tests := []struct {
		name      string
		st        vmm.Settings
		mem, cpus int
	}{
		{"defaults: half the memory, every processor", vmm.Settings{}, max(half, 512), runtime.NumCPU()},
		{"settings", vmm.Settings{VMMemoryMiB: 2048, VMProcessors: 1}, 2048, 1},
	}
	for _, tt := range tests {
		mem, cpus := vmSize(tt.st)
		if mem != tt.mem || cpus != tt.cpus {
			t.Errorf("%s: vmSize = %d MiB, %d CPUs; want %d, %d", tt.name, mem, cpus, tt.mem, tt.cpus)
		}
	}
}

func newTestBackend(t *testing.T) *Backend {
	t.Helper()
	dir := t.TempDir()
	b, err := NewBackend(BackendConfig{Dir: filepath.Join(dir, "vm"), RunDir: filepath.Join(dir, "run"),
		Agent:    func() ([]byte, error) { return []byte("agent"), nil },
		Settings: func(context.Context) (vmm.Settings, error) { return vmm.DefaultSettings, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// The accelerator decision survives the backend (a server restart), and a
// file that says something else is ignored.
func TestAccelRemembered(t *testing.T) {
	b := newTestBackend(t)
	if b.accel != "" {
		t.Fatalf("fresh backend: accel %q, want undecided", b.accel)
	}
	b.saveAccel("tcg", "KVM did not boot")
	again, err := NewBackend(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.accel != "tcg" || again.accelNote != "KVM did not boot" {
		t.Errorf("after a restart: %q %q", again.accel, again.accelNote)
	}
	os.WriteFile(filepath.Join(b.cfg.Dir, accelFile), []byte(`{"accel":"kvm,evil=1"}`), 0o600)
	third, _ := NewBackend(b.cfg)
	defer third.Close()
	if third.accel != "" {
		t.Errorf("a bad accel file gives %q, want it ignored", third.accel)
	}
}

// Targets go round robin, so one just given back is not reused at once, and
// run out with a clear error.
func TestTakeTarget(t *testing.T) {
	b := newTestBackend(t)
	t0, _ := b.takeTarget("a")
	t1, _ := b.takeTarget("b")
	b.dropTarget("a", t0)
	t2, _ := b.takeTarget("c")
	if t0 != 0 || t1 != 1 || t2 != 2 {
		t.Errorf("targets = %d %d %d, want 0 1 2", t0, t1, t2)
	}
	for i := 0; i < MaxDiskTarget-1; i++ {
		if _, err := b.takeTarget("x" + string(rune('a'+i%26)) + strings.Repeat("y", i)); err != nil {
			t.Fatalf("target %d: %v", i, err)
		}
	}
	if _, err := b.takeTarget("one-too-many"); !errors.Is(err, vmm.ErrBusy) {
		t.Errorf("with every target taken: %v, want ErrBusy", err)
	}
}

func TestConsoleTail(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "(the console is empty)",
		"a\nb\nc\nd\ne\n":            `"c\nd\ne"`,
		"Kernel panic - not syncing": "Kernel panic",
	} {
		if got := consoleTail([]byte(in)); !strings.Contains(got, want) {
			t.Errorf("consoleTail(%q) = %q, want it to contain %q", in, got, want)
		}
	}
}
