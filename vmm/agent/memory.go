package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Modes of the utility VM's idle memory reclaim (the memory_reclaim
// setting), as WSL's autoMemoryReclaim.
const (
	// ReclaimGradual gives page cache back in steps once the VM has been
	// idle for reclaimIdleFor (the default).
	ReclaimGradual = "gradual"
	// ReclaimDropCache drops the whole page cache at once when it has.
	ReclaimDropCache = "dropcache"
	// ReclaimDisabled never reclaims by itself; POST /vm/reclaim still does.
	ReclaimDisabled = "disabled"
)

// ValidReclaimMode says whether m names a reclaim mode.
func ValidReclaimMode(m string) bool {
	return m == ReclaimGradual || m == ReclaimDropCache || m == ReclaimDisabled
}

// The idle reclaim loop: every reclaimTick it samples the VM's CPU use; once
// the VM has stayed under reclaimIdleBusy for reclaimIdleFor it reclaims.
const (
	reclaimTick     = 10 * time.Second
	reclaimIdleFor  = 2 * time.Minute
	reclaimIdleBusy = 0.05 // of all CPUs
	// A gradual step asks the kernel for this share of the page cache, at
	// least reclaimStepMin, until the cache is under reclaimKeepBytes: a
	// GiB of cache is back in three steps, 20 s.
	reclaimStepShare = 0.5
	reclaimStepMin   = 256 << 20
	reclaimKeepBytes = 64 << 20
)

// MemoryInfo is the VM's memory as its kernel counts it (/proc/meminfo), and
// what reclaim has given back since the VM booted.
type MemoryInfo struct {
	TotalBytes     int64 `json:"total_bytes"`
	AvailableBytes int64 `json:"available_bytes"`
	// UsedBytes is memory neither free nor cache (Total - Free - Cached -
	// Buffers), CachedBytes the page cache and buffers.
	UsedBytes   int64 `json:"used_bytes"`
	CachedBytes int64 `json:"cached_bytes"`
	// ReclaimedBytes is the page cache reclaim has dropped since boot.
	ReclaimedBytes int64 `json:"reclaimed_bytes"`
	// ReclaimMode is the idle reclaim in force (a Reclaim* constant).
	ReclaimMode string `json:"reclaim_mode,omitempty"`
}

// parseMeminfo reads /proc/meminfo's text into a MemoryInfo.
func parseMeminfo(b []byte) (MemoryInfo, error) {
	kb := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 || n > 1<<50 {
			continue
		}
		kb[name] = n
	}
	for _, k := range []string{"MemTotal", "MemFree", "MemAvailable", "Cached", "Buffers"} {
		if _, ok := kb[k]; !ok {
			return MemoryInfo{}, fmt.Errorf("meminfo: no %s", k)
		}
	}
	m := MemoryInfo{TotalBytes: kb["MemTotal"] << 10, AvailableBytes: kb["MemAvailable"] << 10,
		CachedBytes: (kb["Cached"] + kb["Buffers"]) << 10}
	m.UsedBytes = max(0, m.TotalBytes-kb["MemFree"]<<10-m.CachedBytes)
	return m, nil
}

// cpuTimes are the all-CPU line of /proc/stat: busy and total jiffies.
type cpuTimes struct{ busy, total uint64 }

// parseCPUTimes reads /proc/stat's first line.
func parseCPUTimes(b []byte) (cpuTimes, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: no cpu line")
	}
	var t cpuTimes
	for i, s := range f[1:] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %w", err)
		}
		t.total += n
		// idle (3rd) and iowait (4th) are not busy.
		if i != 3 && i != 4 {
			t.busy += n
		}
	}
	return t, nil
}

// busyShare is the share of CPU time that was busy from a to b.
func busyShare(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total)
}

// reclaimStep is what one idle tick of mode asks the kernel to give back,
// given the memory now: 0 for nothing, -1 for the whole page cache.
func reclaimStep(mode string, m MemoryInfo) int64 {
	if m.CachedBytes <= reclaimKeepBytes {
		return 0
	}
	switch mode {
	case ReclaimGradual:
		return max(int64(float64(m.CachedBytes)*reclaimStepShare), reclaimStepMin)
	case ReclaimDropCache:
		return -1
	default:
		return 0
	}
}
