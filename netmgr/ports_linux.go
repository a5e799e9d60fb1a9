package netmgr

import (
	"context"
	"os"
	"strings"

	"github.com/subsys-dev/subsys/netmgr/sockdiag"
)

// distroSocketOwners finds which of the sockets in want are held by a process
// of one of the distros, reading /proc: a process in a distro's PID namespace,
// or in its cgroup or one below it (which also finds processes of PID
// namespaces nested in the distro, such as a container run inside it).
// Sockets held by no such process are left out.
func distroSocketOwners(ctx context.Context, want map[uint64]bool, distros []Distro) (map[uint64]socketOwner, error) {
	byNS := map[string]string{}
	cgroups := false
	for _, d := range distros {
		if d.PIDNamespace != "" {
			byNS[d.PIDNamespace] = d.ID
		}
		cgroups = cgroups || d.Cgroup != ""
	}
	classify := func(dir string) (string, bool) {
		if ns, err := os.Readlink(dir + "/ns/pid"); err == nil {
			if id, ok := byNS[ns]; ok {
				return id, true
			}
		}
		if !cgroups {
			return "", false
		}
		raw, err := os.ReadFile(dir + "/cgroup")
		if err != nil {
			return "", false
		}
		return distroOfCgroup(string(raw), distros)
	}
	owners, err := sockdiag.Owners(ctx, want, classify)
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]socketOwner, len(owners))
	for inode, o := range owners {
		out[inode] = socketOwner{distroID: o.Tag, pid: o.PID, comm: o.Comm}
	}
	return out, nil
}

// distroOfCgroup finds the distro whose cgroup holds a process, given the
// process's /proc/PID/cgroup: its cgroup v2 line ("0::/subsys/ID/…").
func distroOfCgroup(procCgroup string, distros []Distro) (string, bool) {
	for _, l := range strings.Split(procCgroup, "\n") {
		path, ok := strings.CutPrefix(l, "0::")
		if !ok {
			continue
		}
		for _, d := range distros {
			if d.Cgroup != "" && (path == d.Cgroup || strings.HasPrefix(path, d.Cgroup+"/")) {
				return d.ID, true
			}
		}
	}
	return "", false
}
