package vmm

import "context"

// RunningDistro is a running distro as the network manager sees it.
type RunningDistro struct {
	ID      string
	Name    string
	Version int
	// PIDNamespace is what /proc/PID/ns/pid of the distro's processes links to
	// ("pid:[4026532281]"); set for version 1 distros, whose processes are host
	// processes and whose sockets are host sockets.
	PIDNamespace string
	// Cgroup is the distro's cgroup v2 path ("/subsys/ID"), when its backend
	// gives it one.
	Cgroup string
}

// Cgrouper is implemented by backends that put each distro in a cgroup (v2)
// of its own.
type Cgrouper interface {
	// Cgroup returns the distro's cgroup path, or "" when it has none.
	Cgroup(s Spec) string
}

// PIDNamespacer is implemented by backends whose distros run as host processes
// in a PID namespace of their own (version 1).
type PIDNamespacer interface {
	// PIDNamespace returns the distro's PID namespace, or an error wrapping
	// ErrNotRunning.
	PIDNamespace(ctx context.Context, s Spec) (string, error)
}

// RunningDistros lists the distros that run now. It reads the database and the
// backends' run directories, and is cheap enough to call every half second.
func (m *Manager) RunningDistros(ctx context.Context) ([]RunningDistro, error) {
	rows, err := m.cfg.Store.Distros(ctx)
	if err != nil {
		return nil, err
	}
	var out []RunningDistro
	for _, d := range rows {
		if m.client(d.ID) == nil {
			continue
		}
		rd := RunningDistro{ID: d.ID, Name: d.Name, Version: d.Version}
		if p, ok := m.cfg.Backends[d.Version].(PIDNamespacer); ok {
			ns, err := p.PIDNamespace(ctx, m.spec(d))
			if err != nil {
				continue // stopped between the two looks
			}
			rd.PIDNamespace = ns
		}
		if c, ok := m.cfg.Backends[d.Version].(Cgrouper); ok {
			rd.Cgroup = c.Cgroup(m.spec(d))
		}
		out = append(out, rd)
	}
	return out, nil
}
