package qemu

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// memoryHistoryLen is how many samples the VM's memory history keeps: 15
// minutes at vmm.MemorySampleInterval.
const memoryHistoryLen = 90

// watchMemory samples the VM's memory while v runs (QEMU's RSS, the guest's
// used and cached memory), for the status and its chart, and keeps the
// agent's idle reclaim in the mode the memory_reclaim setting says, from the
// first sample on (so a changed setting applies within a sample). With
// hot-pluggable memory it also plugs and unplugs it (adjustPlug): it then
// looks every plugWatchTick at QEMU's CPU time, on the host, and asks the
// guest as soon as QEMU was busy or the guest short of memory, so that an
// allocation burst gets memory within about a second while an idle VM is
// not woken more than every sample interval.
func (b *Backend) watchMemory(v *VM) {
	ctx, cancel := b.vmContext(v)
	defer cancel()
	sent := ""
	var asked, recorded time.Time
	hotplug, short := false, false
	lastCPU := processCPU(v.PID())
	t := time.NewTicker(plugWatchTick)
	defer t.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		cpu := processCPU(v.PID())
		busy := cpu-lastCPU > plugBusyCPU
		lastCPU = cpu
		if !first && time.Since(asked) < vmm.MemorySampleInterval && !(hotplug && (busy || short)) {
			continue
		}
		ac := b.agentOf(v)
		if ac == nil {
			continue
		}
		asked = time.Now()
		mode := ""
		if st, err := b.cfg.Settings(ctx); err == nil && st.MemoryReclaim != sent {
			mode = st.MemoryReclaim
		}
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		m, _, err := ac.Memory(sctx, false, mode)
		scancel()
		if err != nil {
			if ctx.Err() == nil {
				b.log.Debug("VM memory sample", "err", err)
			}
			continue
		}
		if mode != "" {
			sent = mode
		}
		// The history keeps one sample an interval, also while the
		// hot-plug watch looks more often.
		if time.Since(recorded) >= vmm.MemorySampleInterval-plugWatchTick {
			b.recordMemory(v, m)
			recorded = time.Now()
		}
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		hotplug, short = b.adjustPlug(qctx, v, m)
		qcancel()
	}
}

// plugWatchTick is how often watchMemory looks at QEMU's CPU time, and
// plugBusyCPU the CPU time in one tick above which the guest is asked for
// its memory at once. It is well above what an idle TCG guest and the ask
// itself cost together: a lower bound let the asks keep the guest from
// ever looking idle, so its idle reclaim never came. An allocation burst
// keeps a vCPU busy, far above it.
const (
	plugWatchTick = time.Second
	plugBusyCPU   = 250 * time.Millisecond
)

// recordMemory keeps m as the VM's memory now and appends a sample.
func (b *Backend) recordMemory(v *VM, m agent.MemoryInfo) {
	s := vmm.MemorySample{T: time.Now().UTC(), RSSBytes: processRSS(v.PID()), UsedBytes: m.UsedBytes, CachedBytes: m.CachedBytes}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.vm != v {
		return
	}
	mem := vmMemory(m)
	b.memory, b.memoryMode = &mem, m.ReclaimMode
	b.memoryHistory = append(b.memoryHistory, s)
	if n := len(b.memoryHistory); n > memoryHistoryLen {
		b.memoryHistory = append(b.memoryHistory[:0:0], b.memoryHistory[n-memoryHistoryLen:]...)
	}
}

func vmMemory(m agent.MemoryInfo) vmm.VMMemory {
	return vmm.VMMemory{TotalBytes: m.TotalBytes, UsedBytes: m.UsedBytes, CachedBytes: m.CachedBytes,
		AvailableBytes: m.AvailableBytes, ReclaimedBytes: m.ReclaimedBytes}
}

// ReclaimVM implements vmm.VMBackend.
func (b *Backend) ReclaimVM(ctx context.Context) (vmm.VMReclaim, error) {
	v, ac := b.vmClient()
	if ac == nil {
		return vmm.VMReclaim{}, vmm.ErrNotRunning
	}
	m, dropped, err := ac.Memory(ctx, true, "")
	if err != nil {
		return vmm.VMReclaim{}, err
	}
	b.recordMemory(v, m)
	b.log.Info("VM memory reclaimed on request", "dropped", dropped)
	return vmm.VMReclaim{DroppedBytes: dropped, Memory: vmMemory(m), RSSBytes: processRSS(v.PID())}, nil
}

// processCPU is a process's CPU time so far (user and system), from
// /proc/PID/stat; 0 if unknown. Reading it costs the guest nothing.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
