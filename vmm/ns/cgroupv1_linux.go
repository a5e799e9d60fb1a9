package ns

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"

	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/cgroup"
)

// legacyCgroups are the host's cgroup v1 hierarchies of the memory, cpu,
// cpuacct and pids controllers. A hybrid host (systemd's "hybrid" mode, many
// container hosts) binds those controllers there, so its cgroup v2 hierarchy,
// which still holds each distro for the firewall and systemd, has none of
// them: a version 1 distro's limits and figures then go through these, in a
// cgroup <hierarchy>/<name>/<id> per distro in each.
type legacyCgroups struct {
	// dirs are the parents (<mount>/<name>) by controller; a controller
	// the host lacks is absent.
	dirs map[string]string
}

// legacyControllers are the v1 controllers the limits and figures need.
var legacyControllers = []string{"memory", "cpu", "cpuacct", "pids"}

// openLegacyCgroups finds the v1 hierarchies of the legacy controllers and
// creates the cgroup name under each; nil when the host has none of them.
func openLegacyCgroups(name string) (*legacyCgroups, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mounts, err := legacyMounts(f)
	if err != nil {
		return nil, err
	}
	l := &legacyCgroups{dirs: map[string]string{}}
	for ctrl, mount := range mounts {
		dir := filepath.Join(mount, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		l.dirs[ctrl] = dir
	}
	if len(l.dirs) == 0 {
		return nil, errors.New("no cgroup v1 hierarchy of memory, cpu or pids is mounted")
	}
	return l, nil
}

// legacyMounts maps each legacy controller to the mount point of the
// cgroup v1 hierarchy that has it (co-mounted ones, "cpu,cpuacct", share
// one), from a mountinfo table. Only hierarchies mounted at their root
// count: in a cgroup namespace the paths would not be the host's.
func legacyMounts(r io.Reader) (map[string]string, error) {
	infos, err := mountinfo.GetMountsFromReader(r, mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	out := map[string]string{}
	for _, m := range infos {
		if m.Root != "/" {
			continue
		}
		opts := strings.Split(m.VFSOptions, ",")
		for _, c := range legacyControllers {
			if _, seen := out[c]; !seen && slices.Contains(opts, c) {
				out[c] = m.Mountpoint
			}
		}
	}
	return out, nil
}

// has reports whether the host has every controller the limits need.
func (l *legacyCgroups) has(ctrl string) bool { _, ok := l.dirs[ctrl]; return ok }

// dir is the distro's cgroup in the hierarchy of ctrl, made if missing.
func (l *legacyCgroups) dir(ctrl, id string) (string, error) {
	parent, ok := l.dirs[ctrl]
	if !ok {
		return "", fmt.Errorf("%w: the host has no %s controller", cgroup.ErrNoController, ctrl)
	}
	d := filepath.Join(parent, id)
	if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create cgroup %s: %w", d, err)
	}
	return d, nil
}

// apply writes lim into the distro's v1 cgroups, creating them: the v1
// files' units and "no limit" values are -1 for memory and cpu quota, "max"
// for pids. A limit whose controller the host lacks fails with
// cgroup.ErrNoController; removing it is then nothing to do.
func (l *legacyCgroups) apply(id string, lim cgroup.Limits) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	var errs []error
	set := func(ctrl, file, value string, on bool) {
		d, err := l.dir(ctrl, id)
		if err != nil {
			if on {
				errs = append(errs, err)
			}
			return
		}
		if err := cgroup.WriteFile(filepath.Join(d, file), value); err != nil {
			errs = append(errs, fmt.Errorf("write %s %q: %w", filepath.Join(d, file), value, err))
		}
	}
	mem := "-1"
	if lim.MemoryMax > 0 {
		mem = strconv.FormatInt(lim.MemoryMax, 10)
	}
	set("memory", "memory.limit_in_bytes", mem, lim.MemoryMax > 0)
	quota := "-1"
	if lim.CPUMax > 0 {
		quota = strconv.FormatInt(max(int64(math.Round(lim.CPUMax*cgroup.CPUPeriodUsec)), 1000), 10)
		set("cpu", "cpu.cfs_period_us", strconv.Itoa(cgroup.CPUPeriodUsec), true)
	}
	set("cpu", "cpu.cfs_quota_us", quota, lim.CPUMax > 0)
	set("pids", "pids.max", cgroup.FormatMax(lim.PidsMax), lim.PidsMax > 0)
	return errors.Join(errs...)
}

// join moves pids into the distro's v1 cgroups, creating them. A process
// that exits meanwhile is no error.
func (l *legacyCgroups) join(id string, pids ...int) error {
	var errs []error
	for _, ctrl := range legacyControllers {
		if !l.has(ctrl) {
			continue
		}
		d, err := l.dir(ctrl, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, pid := range pids {
			err := cgroup.WriteFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid))
			if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("move %d into cgroup %s: %w", pid, d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// read returns the distro's figures and limits from its v1 cgroups; a
// controller the host lacks reads 0.
func (l *legacyCgroups) read(id string) (cgroup.Stats, error) {
	var s cgroup.Stats
	get := func(ctrl, file string) (string, bool) {
		parent, ok := l.dirs[ctrl]
		if !ok {
			return "", false
		}
		raw, err := os.ReadFile(filepath.Join(parent, id, file))
		return string(raw), err == nil
	}
	num := func(v string) int64 {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	if v, ok := get("memory", "memory.usage_in_bytes"); ok {
		s.MemoryCurrent = num(v)
	} else if l.has("memory") {
		return cgroup.Stats{}, fmt.Errorf("cgroup %s: %w", filepath.Join(l.dirs["memory"], id), os.ErrNotExist)
	}
	if v, ok := get("memory", "memory.oom_control"); ok {
		s.OOMKills = cgroup.ParseKeyed(v)["oom_kill"]
	}
	if v, ok := get("memory", "memory.limit_in_bytes"); ok {
		// "No limit" reads as a page-rounded huge number.
		if n := num(v); n < 1<<62 {
			s.Limits.MemoryMax = n
		}
	}
	if v, ok := get("cpuacct", "cpuacct.usage"); ok {
		s.CPUUsageUsec = num(v) / 1000
	}
	if v, ok := get("cpu", "cpu.cfs_quota_us"); ok {
		if q := strings.TrimSpace(v); q != "-1" {
			if p, ok := get("cpu", "cpu.cfs_period_us"); ok && num(p) > 0 {
				s.Limits.CPUMax = float64(num(q)) / float64(num(p))
			}
		}
	}
	if v, ok := get("pids", "pids.current"); ok {
		s.PidsCurrent = num(v)
	}
	if v, ok := get("pids", "pids.max"); ok {
		s.Limits.PidsMax, _ = cgroup.ParseMax(v)
	}
	return s.Bound(), nil
}

// remove deletes the distro's v1 cgroups (and any a distro made below them).
func (l *legacyCgroups) remove(id string) error {
	var errs []error
	done := map[string]bool{}
	for _, ctrl := range legacyControllers {
		parent, ok := l.dirs[ctrl]
		if !ok || done[parent] {
			continue
		}
		done[parent] = true
		if err := agent.RemoveCgroup(filepath.Join(parent, id)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
