// Package cgroup reads and writes the few cgroup v2 files that bound and
// measure a distro: memory.max, cpu.max and pids.max (Limits), and
// memory.current, cpu.stat, pids.current and memory.events (Stats). Both
// sides use it: vmm/ns on the host's /subsys/<id> for version 1 distros, the
// utility VM's agent on /sys/fs/cgroup/distros/<id> for version 2. It imports
// nothing of subsys.
//
// Every figure it parses is bounded: in the VM the files are the guest
// kernel's, and their figures reach the host through the agent, so the host
// treats them as untrusted input (Stats.Bound).
package cgroup

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The bounds of a limit. A smaller memory limit than MinMemoryMax leaves a
// distro's agent no room to start; fewer than MinPidsMax processes no room
// for a shell and a command; MaxCPUMax is far above any machine's cores.
const (
	MinMemoryMax = 32 << 20
	MinCPUMax    = 0.01
	MaxCPUMax    = 1024
	MinPidsMax   = 16
	// CPUPeriodUsec is the period cpu.max's quota is written against
	// (the kernel's default).
	CPUPeriodUsec = 100000
	// maxFigure bounds every parsed figure (2^53: exact in a float64, and
	// in JavaScript's numbers on the dashboard).
	maxFigure = 1 << 53
)

// Controllers are the cgroup v2 controllers the limits and figures need.
var Controllers = []string{"memory", "cpu", "pids"}

// Limits are a distro's resource limits; 0 means none.
type Limits struct {
	// MemoryMax is memory.max in bytes.
	MemoryMax int64 `json:"memory_max,omitempty"`
	// CPUMax is the CPU time the distro may use, in cores: cpu.max's
	// quota over its period.
	CPUMax float64 `json:"cpu_max,omitempty"`
	// PidsMax is pids.max: the most processes (and threads) at once.
	PidsMax int64 `json:"pids_max,omitempty"`
}

// Validate says why l cannot be applied, naming the field; nil when it can.
func (l Limits) Validate() error {
	if l.MemoryMax != 0 && (l.MemoryMax < MinMemoryMax || l.MemoryMax > maxFigure) {
		return fmt.Errorf("memory_max %d: use 0 (no limit) or at least %d bytes (32 MiB)", l.MemoryMax, MinMemoryMax)
	}
	if l.CPUMax != 0 && (math.IsNaN(l.CPUMax) || l.CPUMax < MinCPUMax || l.CPUMax > MaxCPUMax) {
		return fmt.Errorf("cpu_max %g: use 0 (no limit) or between %g and %d cores", l.CPUMax, MinCPUMax, MaxCPUMax)
	}
	if l.PidsMax != 0 && (l.PidsMax < MinPidsMax || l.PidsMax > maxFigure) {
		return fmt.Errorf("pids_max %d: use 0 (no limit) or at least %d", l.PidsMax, MinPidsMax)
	}
	return nil
}

// Stats are a cgroup's figures right now. Every figure counts the cgroup's
// whole subtree, so processes in child cgroups count too.
type Stats struct {
	// MemoryCurrent is memory.current: every page charged to the cgroup,
	// page cache and tmpfs included.
	MemoryCurrent int64 `json:"memory_current"`
	// CPUUsageUsec is cpu.stat's usage_usec: CPU time since the cgroup was made.
	CPUUsageUsec int64 `json:"cpu_usage_usec"`
	// PidsCurrent is pids.current (0 without the pids controller).
	PidsCurrent int64 `json:"pids_current"`
	// OOMKills is memory.events' oom_kill: processes the kernel's OOM
	// killer ended because the cgroup was at its memory.max.
	OOMKills int64 `json:"oom_kills"`
	// Limits are the limits in force, as the files say.
	Limits Limits `json:"limits"`
}

// Bound clamps every figure of s into what a real cgroup can report, so a
// hostile source cannot hand the host negative, NaN or absurd numbers.
func (s Stats) Bound() Stats {
	c := func(v int64) int64 { return min(max(v, 0), maxFigure) }
	s.MemoryCurrent, s.CPUUsageUsec, s.PidsCurrent, s.OOMKills = c(s.MemoryCurrent), c(s.CPUUsageUsec), c(s.PidsCurrent), c(s.OOMKills)
	s.Limits.MemoryMax, s.Limits.PidsMax = c(s.Limits.MemoryMax), c(s.Limits.PidsMax)
	if math.IsNaN(s.Limits.CPUMax) || s.Limits.CPUMax < 0 {
		s.Limits.CPUMax = 0
	}
	s.Limits.CPUMax = min(s.Limits.CPUMax, MaxCPUMax)
	return s
}

// ErrNoController says the cgroup lacks a controller a limit needs (the
// hierarchy does not have it, or the parent does not delegate it).
var ErrNoController = errors.New("cgroup controller not available")

// Enable turns the memory, cpu and pids controllers on for the children of
// dir (its cgroup.subtree_control), one at a time so that one the kernel
// lacks does not keep the others off. It returns ErrNoController naming
// those it could not enable.
func Enable(dir string) error {
	raw, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", dir, err)
	}
	on := strings.Fields(string(raw))
	var missing []string
	for _, c := range Controllers {
		if contains(on, c) {
			continue
		}
		if err := WriteFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s in %s", ErrNoController, strings.Join(missing, ", "), dir)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Apply writes l into the cgroup at dir: memory.max, cpu.max and pids.max,
// "max" for a 0. A memory.max below what the cgroup uses is written all the
// same: the kernel reclaims, then OOM-kills, until the cgroup fits. A limit
// whose file is missing (its controller is off) fails with ErrNoController
// only when the limit is set; removing it is then nothing to do.
func Apply(dir string, l Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	var errs []error
	write := func(file, value string, set bool) {
		err := WriteFile(filepath.Join(dir, file), value)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrNotExist):
			if set {
				errs = append(errs, fmt.Errorf("%w: %s has no %s", ErrNoController, dir, file))
			}
		default:
			errs = append(errs, fmt.Errorf("write %s %q: %w", filepath.Join(dir, file), value, err))
		}
	}
	write("memory.max", FormatMax(l.MemoryMax), l.MemoryMax != 0)
	write("cpu.max", FormatCPUMax(l.CPUMax), l.CPUMax != 0)
	write("pids.max", FormatMax(l.PidsMax), l.PidsMax != 0)
	return errors.Join(errs...)
}

// WriteFile writes value to the existing file name: a cgroup's files are the kernel's, and
// a missing one means its controller is off, not a file to create.
func WriteFile(name, value string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Read reads the cgroup at dir. A figure whose controller is off reads 0;
// a cgroup that does not exist is an error wrapping os.ErrNotExist.
func Read(dir string) (Stats, error) {
	var s Stats
	raw, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return Stats{}, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	s.CPUUsageUsec = ParseKeyed(string(raw))["usage_usec"]
	read := func(file string) (string, bool) {
		raw, err := os.ReadFile(filepath.Join(dir, file))
		return string(raw), err == nil
	}
	if v, ok := read("memory.current"); ok {
		s.MemoryCurrent, _ = ParseMax(v)
	}
	if v, ok := read("memory.events"); ok {
		s.OOMKills = ParseKeyed(v)["oom_kill"]
	}
	if v, ok := read("pids.current"); ok {
		s.PidsCurrent, _ = ParseMax(v)
	}
	if v, ok := read("memory.max"); ok {
		s.Limits.MemoryMax, _ = ParseMax(v)
	}
	if v, ok := read("pids.max"); ok {
		s.Limits.PidsMax, _ = ParseMax(v)
	}
	if v, ok := read("cpu.max"); ok {
		s.Limits.CPUMax, _ = ParseCPUMax(v)
	}
	return s.Bound(), nil
}

// FormatMax is a memory.max or pids.max value: "max" for 0 (no limit).
func FormatMax(v int64) string {
	if v <= 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// FormatCPUMax is a cpu.max value for cores: "max 100000" for 0, else the
// quota in microseconds per CPUPeriodUsec (at least the kernel's 1 ms).
func FormatCPUMax(cores float64) string {
	if cores <= 0 {
		return "max " + strconv.Itoa(CPUPeriodUsec)
	}
	quota := max(int64(math.Round(cores*CPUPeriodUsec)), 1000)
	return strconv.FormatInt(quota, 10) + " " + strconv.Itoa(CPUPeriodUsec)
}

// ParseMax parses a single-value file (memory.max, pids.max,
// memory.current, pids.current): a number, or "max" for no limit (0).
func ParseMax(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("cgroup value %q: not a count", truncate(s))
	}
	return min(v, maxFigure), nil
}

// ParseCPUMax parses cpu.max ("QUOTA PERIOD", QUOTA "max" for none) into
// cores; 0 for no limit.
func ParseCPUMax(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, fmt.Errorf("cpu.max %q: want quota and period", truncate(s))
	}
	period, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || period <= 0 {
		return 0, fmt.Errorf("cpu.max %q: bad period", truncate(s))
	}
	if f[0] == "max" {
		return 0, nil
	}
	quota, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || quota <= 0 {
		return 0, fmt.Errorf("cpu.max %q: bad quota", truncate(s))
	}
	return min(float64(quota)/float64(period), MaxCPUMax), nil
}

// ParseKeyed parses a flat keyed file (cpu.stat, memory.events): lines of
// "key value". Lines that are not a key and a non-negative integer are
// skipped; a key's last value wins.
func ParseKeyed(s string) map[string]int64 {
	out := map[string]int64{}
	for line := range strings.SplitSeq(s, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || v < 0 {
			continue
		}
		out[f[0]] = min(v, maxFigure)
	}
	return out
}

// truncate keeps an error message about a file's content short.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
