package qemu

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// usageTimeout bounds one read of a distro's cgroup through the VM's agent,
// so a stuck guest never holds the sampler up.
const usageTimeout = 5 * time.Second

var (
	_ vmm.LimitSetter   = (*Backend)(nil)
	_ vmm.UsageReporter = (*Backend)(nil)
)

// SetLimits implements vmm.LimitSetter: the VM's agent writes s.Limits
// into the running distro's cgroup in the VM, /sys/fs/cgroup/distros/<id>.
// A memory_max above the VM's own memory is written as it is: the VM's
// memory bounds the distro before it does.
func (b *Backend) SetLimits(ctx context.Context, s vmm.Spec) error {
	_, ac, _, ok := b.runningDisk(s)
	if !ok {
		return fmt.Errorf("distro %s: %w", s.Name, vmm.ErrNotRunning)
	}
	if err := ac.SetDistroLimits(ctx, s.ID, s.Limits); err != nil {
		if errors.Is(err, agent.ErrDistroNotRunning) {
			return fmt.Errorf("distro %s: %w", s.Name, vmm.ErrNotRunning)
		}
		return fmt.Errorf("limits of %s in the VM: %w", s.Name, err)
	}
	return nil
}

// Usage implements vmm.UsageReporter from the distro's cgroup in the VM,
// read by the VM's agent (its figures bounded: they come from the guest).
func (b *Backend) Usage(ctx context.Context, s vmm.Spec) (vmm.Usage, error) {
	_, ac, _, ok := b.runningDisk(s)
	if !ok {
		return vmm.Usage{}, fmt.Errorf("distro %s: %w", s.Name, vmm.ErrNotRunning)
	}
	ctx, cancel := context.WithTimeout(ctx, usageTimeout)
	defer cancel()
	st, err := ac.DistroCgroup(ctx, s.ID)
	if err != nil {
		return vmm.Usage{}, fmt.Errorf("usage of %s in the VM: %w", s.Name, err)
	}
	return vmm.Usage{Processes: int(min(st.PidsCurrent, 1<<31-1)), CPUSeconds: float64(st.CPUUsageUsec) / 1e6,
		MemoryBytes: st.MemoryCurrent, OOMKills: st.OOMKills}, nil
}
