package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// reclaimer gives the utility VM's page cache back to the host: by itself
// when the VM has been idle a while (run, in the mode the host set), or at
// once when the host asks (reclaim). Memory the guest frees reaches the host
// through the balloon's free page reporting; compacting it first makes the
// free blocks large enough to be reported.
type reclaimer struct {
	log        *slog.Logger
	procRoot   string // /proc
	cgroupRoot string // /sys/fs/cgroup

	mu        sync.Mutex
	mode      string
	reclaimed atomic.Int64
}

func newReclaimer(log *slog.Logger) *reclaimer {
	return &reclaimer{log: log, procRoot: "/proc", cgroupRoot: "/sys/fs/cgroup", mode: ReclaimGradual}
}

func (r *reclaimer) setMode(mode string) error {
	if !ValidReclaimMode(mode) {
		return fmt.Errorf("%w: reclaim mode %q: want gradual, dropcache or disabled", ErrBadRequest, mode)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mode != mode {
		r.log.Info("memory reclaim", "mode", mode)
	}
	r.mode = mode
	return nil
}

func (r *reclaimer) currentMode() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode
}

// info reads the VM's memory now.
func (r *reclaimer) info() (MemoryInfo, error) {
	b, err := os.ReadFile(filepath.Join(r.procRoot, "meminfo"))
	if err != nil {
		return MemoryInfo{}, fmt.Errorf("memory: %w", err)
	}
	m, err := parseMeminfo(b)
	if err != nil {
		return MemoryInfo{}, err
	}
	m.ReclaimedBytes, m.ReclaimMode = r.reclaimed.Load(), r.currentMode()
	return m, nil
}

// reclaim asks the kernel for step bytes of page cache through the root
// cgroup's memory.reclaim (drop_caches where the kernel has none), or for
// all of it (step < 0: drop_caches), then compacts memory. It returns the
// page cache it dropped.
func (r *reclaimer) reclaim(step int64) (int64, error) {
	before, err := r.info()
	if err != nil {
		return 0, err
	}
	dropAll := func() error {
		return os.WriteFile(filepath.Join(r.procRoot, "sys/vm/drop_caches"), []byte("1"), 0)
	}
	if step < 0 {
		err = dropAll()
	} else {
		err = os.WriteFile(filepath.Join(r.cgroupRoot, "memory.reclaim"), []byte(strconv.FormatInt(step, 10)), 0)
		if errors.Is(err, os.ErrNotExist) {
			err = dropAll()
		} else if errors.Is(err, syscall.EAGAIN) {
			err = nil // less than asked could be reclaimed: fine
		}
	}
	if err != nil {
		return 0, fmt.Errorf("memory reclaim: %w", err)
	}
	// Best effort: free pages in larger blocks are what gets reported.
	_ = os.WriteFile(filepath.Join(r.procRoot, "sys/vm/compact_memory"), []byte("1"), 0)
	after, err := r.info()
	if err != nil {
		return 0, err
	}
	dropped := max(0, before.CachedBytes-after.CachedBytes)
	r.reclaimed.Add(dropped)
	return dropped, nil
}

// run is the idle reclaim loop; it ends with ctx.
func (r *reclaimer) run(ctx context.Context) {
	t := time.NewTicker(reclaimTick)
	defer t.Stop()
	read := func() (cpuTimes, bool) {
		b, err := os.ReadFile(filepath.Join(r.procRoot, "stat"))
		if err != nil {
			return cpuTimes{}, false
		}
		c, err := parseCPUTimes(b)
		return c, err == nil
	}
	prev, _ := read()
	var idleSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur, ok := read()
			if !ok {
				continue
			}
			if busyShare(prev, cur) < reclaimIdleBusy {
				if idleSince.IsZero() {
					idleSince = now.Add(-reclaimTick) // idle since the last tick
				}
			} else {
				idleSince = time.Time{}
			}
			prev = cur
			if idleSince.IsZero() || now.Sub(idleSince) < reclaimIdleFor {
				continue
			}
			m, err := r.info()
			if err != nil {
				continue
			}
			if step := reclaimStep(r.currentMode(), m); step != 0 {
				dropped, err := r.reclaim(step)
				r.log.Info("memory reclaim: the VM is idle", "mode", r.currentMode(), "asked", step, "dropped", dropped, "err", err)
			}
		}
	}
}
