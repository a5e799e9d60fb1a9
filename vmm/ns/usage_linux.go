package ns

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/cgroup"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it is 100
// on every Linux architecture Go supports.
const clockTicks = 100

// Usage reads the distro's cgroup — its cgroup v1 hierarchies on a host
// whose cgroup v2 lacks the controllers (memory.usage_in_bytes,
// cpuacct.usage, pids.current, memory.oom_control's oom_kill), else: memory.current, cpu.stat's usage_usec,
// pids.current and memory.events' oom_kill, which count every process of it
// (in child cgroups too). Without a cgroup, or without its memory
// controller (a hybrid hierarchy), it sums over the processes whose PID
// namespace is the agent's from the host's /proc, as before cgroups.
func (b *Backend) Usage(ctx context.Context, s vmm.Spec) (vmm.Usage, error) {
	if err := b.check(s); err != nil {
		return vmm.Usage{}, err
	}
	if _, err := b.PIDNamespace(ctx, s); err != nil {
		return vmm.Usage{}, fmt.Errorf("usage of %s: %w", s.Name, err)
	}
	if b.legacy != nil && b.legacy.has("memory") {
		if st, err := b.legacy.read(s.ID); err == nil {
			return vmm.Usage{Processes: int(st.PidsCurrent), CPUSeconds: float64(st.CPUUsageUsec) / 1e6,
				MemoryBytes: st.MemoryCurrent, OOMKills: st.OOMKills}, nil
		}
	}
	if b.cg != nil {
		dir := filepath.Join(b.cg.dir, s.ID)
		st, err := cgroup.Read(dir)
		if err == nil && st.PidsCurrent > 0 {
			if _, merr := os.Stat(filepath.Join(dir, "memory.current")); merr == nil {
				return vmm.Usage{Processes: int(st.PidsCurrent), CPUSeconds: float64(st.CPUUsageUsec) / 1e6,
					MemoryBytes: st.MemoryCurrent, OOMKills: st.OOMKills}, nil
			}
		}
	}
	return b.procUsage(ctx, s)
}

// SetLimits writes s.Limits into the running distro's cgroup.
func (b *Backend) SetLimits(ctx context.Context, s vmm.Spec) error {
	if err := b.check(s); err != nil {
		return err
	}
	if _, err := b.PIDNamespace(ctx, s); err != nil {
		return err
	}
	return b.applyLimits(s.ID, s.Limits)
}

// procUsage sums CPU time and resident memory over every process of the
// distro: those whose PID namespace is the agent's.
func (b *Backend) procUsage(ctx context.Context, s vmm.Spec) (vmm.Usage, error) {
	want, err := b.PIDNamespace(ctx, s)
	if err != nil {
		return vmm.Usage{}, fmt.Errorf("usage of %s: %w", s.Name, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return vmm.Usage{}, err
	}
	page := int64(os.Getpagesize())
	var u vmm.Usage
	for _, e := range entries {
		if ctx.Err() != nil {
			return vmm.Usage{}, ctx.Err()
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || ns != want {
			continue
		}
		cpu, rss, ok := procStat(pid)
		if !ok {
			continue // exited meanwhile
		}
		u.Processes++
		u.CPUSeconds += float64(cpu) / clockTicks
		u.MemoryBytes += rss * page
	}
	return u, nil
}

// PIDNamespace returns the PID namespace of the distro's agent, which every
// process of the distro shares; it wraps vmm.ErrNotRunning when the distro is
// stopped.
func (b *Backend) PIDNamespace(ctx context.Context, s vmm.Spec) (string, error) {
	if err := b.check(s); err != nil {
		return "", err
	}
	_, pidFile, _ := b.paths(s.ID)
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return "", fmt.Errorf("distro %s: %w", s.Name, vmm.ErrNotRunning)
	}
	agentPID, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return "", fmt.Errorf("distro %s: bad pid file: %w", s.Name, err)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", agentPID))
	if err != nil {
		return "", fmt.Errorf("distro %s: %w", s.Name, vmm.ErrNotRunning)
	}
	return ns, nil
}

// procStat returns utime+stime (ticks) and RSS (pages) of pid from /proc/PID/stat.
func procStat(pid int) (cpu, rss int64, ok bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	return parseStat(string(raw))
}

// parseStat reads fields 14, 15 (utime, stime) and 24 (rss) of a /proc/PID/stat
// line. The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStat(s string) (cpu, rss int64, ok bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 22 {
		return 0, 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	r, err3 := strconv.ParseInt(f[21], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return ut + st, r, true
}
