package agent

import (
	"context"
	"fmt"

	"github.com/subsys-dev/subsys/vmm/cgroup"
)

// The utility VM's agent owns each version 2 distro's cgroup,
// /sys/fs/cgroup/distros/<id>: it applies the distro's limits there before
// the distro's agent is born in it (DistroRequest.Limits), changes them on
// a running distro (SetDistroLimits) and reads its figures (DistroCgroup).

// SetDistroLimits writes l into the running distro's cgroup in the VM
// (memory.max, cpu.max, pids.max; 0 removes a limit). The error wraps
// ErrDistroNotRunning when the distro is not running.
func (c *Client) SetDistroLimits(ctx context.Context, id string, l cgroup.Limits) error {
	return c.simple(ctx, request{Op: opSetLimits, ID: id, Limits: &l})
}

// DistroCgroup reads the running distro's cgroup in the VM: memory.current,
// cpu.stat's usage_usec, pids.current, memory.events' oom_kill and the
// limits in force. The figures come from the guest, so they are bounded
// (cgroup.Stats.Bound) before they are returned.
func (c *Client) DistroCgroup(ctx context.Context, id string) (cgroup.Stats, error) {
	st, _, rep, err := c.roundTrip(ctx, request{Op: opDistroCgroup, ID: id})
	if err != nil {
		return cgroup.Stats{}, err
	}
	st.Close()
	if rep.Cgroup == nil {
		return cgroup.Stats{}, fmt.Errorf("agent distro-cgroup: %w: no figures in the answer", ErrProtocol)
	}
	return rep.Cgroup.Bound(), nil
}
