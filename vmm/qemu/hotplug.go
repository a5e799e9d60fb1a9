package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/subsys-dev/subsys/vmm/agent"
)

// Memory hot-plug (virtio-mem). A guest's kernel keeps a page structure of
// 64 bytes for every 4 KiB page of its memory, 1.6 % of it, allocated and
// written at boot: for a 12 GiB VM, 188 MiB of the host's memory that free
// page reporting can never give back. So a VM of more than
// hotplugMinTotalMiB boots with bootMemoryMiB and gets the rest through a
// virtio-mem device, plugged as the guest needs it and unplugged when it
// no longer does: the memory setting is the most the VM may have, as in
// WSL, and an idle VM costs the host what a small one does.
const (
	// bootMemoryMiB is the plain memory of a VM with hot-pluggable memory.
	bootMemoryMiB = 512
	// hotplugMinTotalMiB: a VM this small gets all its memory at boot.
	hotplugMinTotalMiB = 2048
	// initialPlugMiB is what is plugged at boot, so a fresh VM has room
	// for a burst before the first sample: with the boot memory, 2 GiB.
	initialPlugMiB = 1536
	// The guest's available memory is kept between plugLow and plugHigh:
	// below plugLow the device grows, above plugHigh it shrinks, each
	// time to leave plugTarget available. The watch asks again every
	// second while available memory is below plugWatchFast (see
	// watchMemory), so a burst is met within about a second.
	plugLow       = 1 << 30
	plugTarget    = 2 << 30
	plugHigh      = 3 << 30
	plugWatchFast = 3 << 29
	// plugAlign is the granularity of requested sizes: Linux adds memory
	// in blocks of 128 MiB on x86.
	plugAlign = 128 << 20
)

// hotplugKernelArg makes the guest online hot-plugged memory at once
// (Debian's kernel leaves it offline by default).
const hotplugKernelArg = "memhp_default_state=online"

// memoryLayout splits a VM's memory setting into boot memory, hot-pluggable
// memory and what of it is plugged at boot (all MiB). Hot-plug is used when
// the VM is larger than hotplugMinTotalMiB and the kernel has virtio_mem.
func memoryLayout(totalMiB int, canHotplug bool) (boot, hotplug, plug int) {
	if !canHotplug || totalMiB <= hotplugMinTotalMiB {
		return totalMiB, 0, 0
	}
	hotplug = totalMiB - bootMemoryMiB
	return bootMemoryMiB, hotplug, min(initialPlugMiB, hotplug)
}

// nextPlug is the requested size (bytes) of the hot-pluggable memory that
// keeps the guest's available memory between plugLow and plugHigh, given
// what it has available now with requested plugged, and limit the
// device's size; requested itself when no change is needed.
func nextPlug(available, requested, limit int64) int64 {
	want := requested
	switch {
	case available < plugLow:
		want = requested + plugTarget - available
		want = (want + plugAlign - 1) / plugAlign * plugAlign
	case available > plugHigh:
		// Rounded up: unplug a little less, never leave less than
		// plugTarget.
		want = requested - (available - plugTarget)
		want = (want + plugAlign - 1) / plugAlign * plugAlign
	}
	return min(max(want, 0), limit)
}

// kernelHasModule reports whether the kernel's module tree has name as a
// module or built in.
func kernelHasModule(modules, name string) bool {
	if modules == "" {
		return false
	}
	for _, f := range []string{"modules.dep", "modules.builtin"} {
		b, err := os.ReadFile(filepath.Join(modules, f))
		if err == nil && strings.Contains(string(b), "/"+name+".ko") {
			return true
		}
	}
	return false
}

// PluggedMemory reports the virtio-mem device's plugged and requested
// sizes and its maximum, in bytes; an error when the VM has none.
func (v *VM) PluggedMemory(ctx context.Context) (plugged, requested, max int64, err error) {
	dev := "/machine/peripheral/" + HotplugDeviceID
	for _, p := range []struct {
		path, prop string
		out        *int64
	}{{dev, "size", &plugged}, {dev, "requested-size", &requested}, {"/objects/" + hotplugMemdev, "size", &max}} {
		if err := v.Execute(ctx, "qom-get", map[string]any{"path": p.path, "property": p.prop}, p.out); err != nil {
			return 0, 0, 0, fmt.Errorf("qemu: hot-pluggable memory: %w", err)
		}
	}
	return plugged, requested, max, nil
}

// SetPluggedMemory asks the guest to plug or unplug hot-pluggable memory
// until bytes are plugged.
func (v *VM) SetPluggedMemory(ctx context.Context, bytes int64) error {
	if err := v.Execute(ctx, "qom-set", map[string]any{"path": "/machine/peripheral/" + HotplugDeviceID, "property": "requested-size", "value": bytes}, nil); err != nil {
		return fmt.Errorf("qemu: plug %d bytes of memory: %w", bytes, err)
	}
	return nil
}

// adjustPlug resizes the VM's hot-pluggable memory after a sample m of the
// guest's memory. It reports whether the VM has hot-pluggable memory, and
// whether the guest is short of memory, so the watch looks again soon.
func (b *Backend) adjustPlug(ctx context.Context, v *VM, m agent.MemoryInfo) (hotplug, short bool) {
	_, requested, max, err := v.PluggedMemory(ctx)
	if err != nil {
		return false, false
	}
	want := nextPlug(m.AvailableBytes, requested, max)
	if want != requested {
		if err := v.SetPluggedMemory(ctx, want); err != nil {
			b.log.Warn("hot-pluggable memory", "err", err)
		} else {
			b.log.Debug("hot-pluggable memory", "available", m.AvailableBytes, "requested", requested, "now", want)
		}
	}
	return true, m.AvailableBytes < plugWatchFast && want < max
}
