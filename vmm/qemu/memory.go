package qemu

import (
	"context"
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
// first sample on (so a changed setting applies within a sample).
func (b *Backend) watchMemory(v *VM) {
	ctx, cancel := b.vmContext(v)
	defer cancel()
	sent := ""
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(vmm.MemorySampleInterval)
		ac := b.agentOf(v)
		if ac == nil {
			continue
		}
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
		b.recordMemory(v, m)
	}
}

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
