package vmm

import (
	"context"
	"fmt"
	"time"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/cgroup"
)

// Limits are a distro's resource limits, applied through its cgroup (see
// package vmm/cgroup); 0 means none.
type Limits = cgroup.Limits

// LimitSetter is implemented by backends that can change a running
// distro's limits: SetLimits writes s.Limits into its cgroup. (Every
// backend applies Spec.Limits at Start, before the distro's first process.)
type LimitSetter interface {
	SetLimits(ctx context.Context, s Spec) error
}

// ErrLimits wraps a failure to apply limits: the kernel lacks a controller,
// or the cgroup refused a value.
var ErrLimits = fmt.Errorf("%w: cannot apply the limits", ErrUnsupported)

// OOMEvent is the data of a "distro-oom" event: the kernel's OOM killer
// ended a process of a running distro because it was at its memory_max.
type OOMEvent struct {
	Distro string `json:"distro"`
	ID     string `json:"id"`
	// OOMKills counts the processes killed since the distro started.
	OOMKills int64 `json:"oom_kills"`
	// At is when the sampler saw the count rise.
	At time.Time `json:"at"`
}

func limitsOf(d store.Distro) Limits {
	return Limits{MemoryMax: d.MemoryMax, CPUMax: d.CPUMax, PidsMax: d.PidsMax}
}

// limitsUpdate returns the limits d has after u, and whether u changes any.
// A limit out of bounds is ErrInvalid, with a message naming it.
func limitsUpdate(d store.Distro, u Update) (Limits, bool, error) {
	l := limitsOf(d)
	if u.MemoryMax == nil && u.CPUMax == nil && u.PidsMax == nil {
		return l, false, nil
	}
	if u.MemoryMax != nil {
		l.MemoryMax = *u.MemoryMax
	}
	if u.CPUMax != nil {
		l.CPUMax = *u.CPUMax
	}
	if u.PidsMax != nil {
		l.PidsMax = *u.PidsMax
	}
	if err := l.Validate(); err != nil {
		return Limits{}, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return l, l != limitsOf(d), nil
}

// setLimits stores distro d's new limits and, when it runs, applies them at
// once. It holds the distro's start lock, so a start that races it applies
// either the old limits and then sees these applied, or these.
func (m *Manager) setLimits(ctx context.Context, d store.Distro, l Limits) error {
	lock := m.startLock(d.ID)
	lock.Lock()
	defer lock.Unlock()
	if err := m.cfg.Store.SetDistroLimits(ctx, d.ID, l.MemoryMax, l.CPUMax, l.PidsMax); err != nil {
		return err
	}
	m.audit(ctx, "set-limits", d.Name, fmt.Sprintf("memory_max=%d cpu_max=%g pids_max=%d", l.MemoryMax, l.CPUMax, l.PidsMax))
	if m.client(d.ID) == nil {
		return nil
	}
	ls, ok := m.cfg.Backends[d.Version].(LimitSetter)
	if !ok {
		return fmt.Errorf("%w: version %d distros have no limits while they run (stored; they apply at the next start)", ErrUnsupported, d.Version)
	}
	s := m.spec(d)
	s.Limits = l
	if err := ls.SetLimits(ctx, s); err != nil {
		return fmt.Errorf("%w of running distro %s (stored; the next start applies them): %w", ErrLimits, d.Name, err)
	}
	return nil
}
