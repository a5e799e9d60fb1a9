package qemu

import (
	"slices"
	"strings"
	"testing"
)

func TestMemoryLayout(t *testing.T) {
	for _, tc := range []struct {
		total      int
		can        bool
		boot, hot  int
		plug       int
		hotplugArg bool
	}{
		{512, true, 512, 0, 0, false},
		{2048, true, 2048, 0, 0, false},
		{2049, true, 512, 1537, 1536, true},
		{12032, true, 512, 11520, 1536, true},
		{12032, false, 12032, 0, 0, false},
	} {
		boot, hot, plug := memoryLayout(tc.total, tc.can)
		if boot != tc.boot || hot != tc.hot || plug != tc.plug {
			t.Errorf("memoryLayout(%d, %v) = %d, %d, %d; want %d, %d, %d", tc.total, tc.can, boot, hot, plug, tc.boot, tc.hot, tc.plug)
		}
		if boot+hot != tc.total {
			t.Errorf("memoryLayout(%d): %d + %d is not the total", tc.total, boot, hot)
		}
	}
}

func TestNextPlug(t *testing.T) {
	const gib, mib = int64(1) << 30, int64(1) << 20
	for _, tc := range []struct {
		name                        string
		available, requested, limit int64
		want                        int64
	}{
		{"enough", 2 * gib, gib, 10 * gib, gib},
		{"just above low", gib, gib, 10 * gib, gib},
		{"short: grow to leave 2 GiB", 512 * mib, gib, 10 * gib, gib + 1536*mib},
		{"grow rounds up to 128 MiB", gib - 1, 0, 10 * gib, gib + 128*mib},
		{"grow stops at the device's size", 100 * mib, 9 * gib, 10 * gib, 10 * gib},
		{"plenty: shrink to leave 2 GiB", 5 * gib, 4 * gib, 10 * gib, gib},
		{"shrink rounds down", 3*gib + 1, 2 * gib, 10 * gib, gib},
		{"shrink stops at 0", 6 * gib, gib, 10 * gib, 0},
		{"just below high", 3 * gib, 2 * gib, 10 * gib, 2 * gib},
	} {
		if got := nextPlug(tc.available, tc.requested, tc.limit); got != tc.want {
			t.Errorf("%s: nextPlug(%d MiB available, %d MiB requested, %d MiB) = %d MiB, want %d MiB",
				tc.name, tc.available/mib, tc.requested/mib, tc.limit/mib, got/mib, tc.want/mib)
		}
	}
}

func TestConfigHotplugArgs(t *testing.T) {
	args, err := Config{Kernel: "/k", RunDir: "/r", MemoryMiB: 1024, HotplugMiB: 3072, PlugMiB: 512}.Args()
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-m 1024M,maxmem=4096M",
		"-object memory-backend-memfd,id=vmem,share=on,size=3072M",
		"-device virtio-mem-pci,id=vmem0,memdev=vmem,requested-size=512M",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("args lack %q:\n%s", want, joined)
		}
	}
	plain, _ := Config{Kernel: "/k", RunDir: "/r", MemoryMiB: 1024}.Args()
	if i := slices.Index(plain, "-m"); i < 0 || plain[i+1] != "1024" || strings.Contains(strings.Join(plain, " "), "virtio-mem") {
		t.Errorf("without hot-plug: %v", plain)
	}
	if _, err := (Config{Kernel: "/k", RunDir: "/r", HotplugMiB: 100, PlugMiB: 200}).Args(); err == nil {
		t.Error("plugging more than the hot-pluggable memory: no error")
	}
}
