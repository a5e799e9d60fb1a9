package netmgr

import (
	"context"
	"os"
	"strconv"
)

// distroSocketOwners finds which of the sockets in want are held by a process
// of one of the PID namespaces in nsIDs (namespace → distro id), reading /proc.
// Sockets held by no such process are left out.
func distroSocketOwners(ctx context.Context, want map[uint64]bool, nsIDs map[string]string) (map[uint64]socketOwner, error) {
	owners := map[uint64]socketOwner{}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range procs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := "/proc/" + e.Name()
		ns, err := os.Readlink(dir + "/ns/pid")
		if err != nil {
			continue
		}
		id, ok := nsIDs[ns]
		if !ok {
			continue
		}
		fds, err := os.ReadDir(dir + "/fd")
		if err != nil {
			continue
		}
		comm := ""
		for _, fd := range fds {
			link, err := os.Readlink(dir + "/fd/" + fd.Name())
			if err != nil {
				continue
			}
			inode, ok := parseSocketLink(link)
			if !ok || !want[inode] {
				continue
			}
			if o, ok := owners[inode]; ok && o.pid < pid {
				continue
			}
			if comm == "" {
				b, err := os.ReadFile(dir + "/comm")
				if err != nil {
					break // exited
				}
				comm = parseComm(b)
			}
			owners[inode] = socketOwner{distroID: id, pid: pid, comm: comm}
		}
	}
	return owners, nil
}
