package vmm

import (
	"context"
	"sync"
	"time"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/archive"
)

// Usage is what a running distro's processes use right now, from its
// cgroup (memory.current, cpu.stat's usage_usec, pids.current,
// memory.events' oom_kill).
type Usage struct {
	Processes   int
	CPUSeconds  float64 // CPU time so far (the cgroup's, since it was made)
	MemoryBytes int64   // memory charged to the distro
	// OOMKills counts the processes the OOM killer ended in the distro's
	// cgroup since it was made.
	OOMKills int64
}

// UsageReporter is implemented by backends that can measure a running distro.
type UsageReporter interface {
	Usage(ctx context.Context, s Spec) (Usage, error)
}

// Sample is one point of a distro's resource history.
type Sample struct {
	T           time.Time `json:"t"`
	CPUPercent  float64   `json:"cpu_percent"`
	MemoryBytes int64     `json:"memory_bytes"`
	// Pids is the distro's processes and threads.
	Pids int64 `json:"pids,omitempty"`
}

// Metrics is a distro's resource history, oldest first.
type Metrics struct {
	IntervalS int      `json:"interval_s"`
	Samples   []Sample `json:"samples"`
}

const (
	sampleInterval = 5 * time.Second
	historyLength  = 120 // 10 minutes of samples
	diskInterval   = time.Minute
)

// usageState is the sampler's memory of one distro.
type usageState struct {
	lastCPU  float64
	lastAt   time.Time
	history  []Sample
	diskUsed int64
	diskAt   time.Time
	// diskMax and diskFree are a version 2 distro's disk size and the free
	// space in its file system (0: unknown).
	diskMax, diskFree int64
	// oomKills is the distro's OOM kill count as last sampled, lastOOMAt
	// when it last rose. oomKnown says oomKills is a baseline to compare
	// with: the distro was seen stopped (so its cgroup, and its count, are
	// new) or sampled before; a distro this server found running counts
	// the kills before it without events.
	oomKills  int64
	lastOOMAt time.Time
	oomKnown  bool
}

type sampler struct {
	mu     sync.Mutex
	states map[string]*usageState // by distro id
}

// runSampler measures every running distro each sampleInterval, and the disk use
// of every distro each diskInterval, until ctx ends.
func (m *Manager) runSampler(ctx context.Context) {
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		m.sampleOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Manager) sampleOnce(ctx context.Context) {
	rows, err := m.cfg.Store.Distros(ctx)
	if err != nil {
		return
	}
	now := time.Now()
	seen := map[string]bool{}
	for _, d := range rows {
		seen[d.ID] = true
		m.sampler.mu.Lock()
		st := m.sampler.states[d.ID]
		if st == nil {
			st = &usageState{}
			m.sampler.states[d.ID] = st
		}
		var oom *OOMEvent
		needDisk := now.Sub(st.diskAt) >= diskInterval && State(d.State) != StateInstalling
		m.sampler.mu.Unlock()
		if needDisk {
			m.measureDisk(ctx, d, st)
		}
		var sample Sample
		sample.T = now.UTC()
		if rep, ok := m.cfg.Backends[d.Version].(UsageReporter); ok && m.client(d.ID) != nil {
			if u, err := rep.Usage(ctx, m.spec(d)); err == nil {
				m.sampler.mu.Lock()
				if !st.lastAt.IsZero() && u.CPUSeconds >= st.lastCPU {
					sample.CPUPercent = 100 * (u.CPUSeconds - st.lastCPU) / now.Sub(st.lastAt).Seconds()
				}
				st.lastCPU, st.lastAt = u.CPUSeconds, now
				sample.MemoryBytes, sample.Pids = u.MemoryBytes, int64(u.Processes)
				if u.OOMKills > st.oomKills && st.oomKnown {
					st.lastOOMAt = now.UTC()
					oom = &OOMEvent{Distro: d.Name, ID: d.ID, OOMKills: u.OOMKills, At: st.lastOOMAt}
				}
				st.oomKills, st.oomKnown = u.OOMKills, true
				m.sampler.mu.Unlock()
			}
		} else {
			m.sampler.mu.Lock()
			st.lastAt = time.Time{}
			// Its next run has a new cgroup, counting from 0.
			st.oomKills, st.lastOOMAt, st.oomKnown = 0, time.Time{}, true
			m.sampler.mu.Unlock()
		}
		if oom != nil {
			m.log.Warn("out of memory: the kernel killed a process of the distro", "distro", d.Name, "oom_kills", oom.OOMKills)
			m.events.mu.Lock()
			m.send(Event{Type: "distro-oom", OOM: oom})
			m.events.mu.Unlock()
		}
		m.sampler.mu.Lock()
		st.history = append(st.history, sample)
		if len(st.history) > historyLength {
			st.history = st.history[len(st.history)-historyLength:]
		}
		m.sampler.mu.Unlock()
	}
	m.sampler.mu.Lock()
	for id := range m.sampler.states {
		if !seen[id] {
			delete(m.sampler.states, id)
		}
	}
	m.sampler.mu.Unlock()
	m.publishChanges(ctx)
}

// newRun forgets distro id's OOM kills when it starts or stops: a run has
// a new cgroup, which counts from 0, so every kill the sampler sees in it
// is news (an event), even one in its first seconds.
func (m *Manager) newRun(id string) {
	m.sampler.mu.Lock()
	defer m.sampler.mu.Unlock()
	if st := m.sampler.states[id]; st != nil {
		st.oomKills, st.lastOOMAt, st.oomKnown = 0, time.Time{}, true
	} else {
		m.sampler.states[id] = &usageState{oomKnown: true}
	}
}

// measureDisk measures the space distro d's files take (and, for version
// 2, its disk's size and free space) into st.
func (m *Manager) measureDisk(ctx context.Context, d store.Distro, st *usageState) {
	var used, size, free int64
	if d.Version == 2 {
		size, used, free = m.diskFigures(ctx, d)
	} else {
		used = m.storage(d.Version).usage(ctx, d)
	}
	m.sampler.mu.Lock()
	st.diskUsed, st.diskMax, st.diskFree, st.diskAt = used, size, free, time.Now()
	m.sampler.mu.Unlock()
}

// Metrics returns distro name's resource history.
func (m *Manager) Metrics(ctx context.Context, name string) (Metrics, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return Metrics{}, err
	}
	m.sampler.mu.Lock()
	defer m.sampler.mu.Unlock()
	out := Metrics{IntervalS: int(sampleInterval / time.Second), Samples: []Sample{}}
	if st := m.sampler.states[d.ID]; st != nil {
		out.Samples = append(out.Samples, st.history...)
	}
	return out, nil
}

// usageOf fills the live figures of a distro view.
func (m *Manager) usageOf(v *Distro) {
	m.sampler.mu.Lock()
	defer m.sampler.mu.Unlock()
	st := m.sampler.states[v.ID]
	if st == nil {
		return
	}
	v.DiskBytes, v.DiskMaxBytes, v.DiskFreeBytes = st.diskUsed, st.diskMax, st.diskFree
	if v.State == StateRunning && len(st.history) > 0 {
		last := st.history[len(st.history)-1]
		v.MemoryBytes, v.CPUPercent, v.Pids = last.MemoryBytes, last.CPUPercent, last.Pids
	}
	if v.State == StateRunning {
		v.OOMKills, v.LastOOMAt = st.oomKills, st.lastOOMAt
	}
}

// diskUsage is the space the tree at root takes on its file system (sparse
// files count what they use, hard links once); 0 when it cannot be told. A
// running distro changes its tree at will while the server, as root, walks
// it: a directory swapped for a symlink to / must not lead the walk to the
// host. So it walks as archive.DiskUsage does: by file descriptor, never
// following a symlink, on root's file system only, with a bounded number of
// descriptors however deep the tree. What vanishes during the walk, or what
// a directory moved mid-walk hides, is not counted.
func diskUsage(ctx context.Context, root string) int64 {
	u, _ := archive.DiskUsage(ctx, root)
	return u.Bytes
}
