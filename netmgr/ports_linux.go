package netmgr

import "context"

// distroSocketOwners finds which of the sockets in want are held by a process
// of one of the PID namespaces in nsIDs (namespace → distro id), reading /proc.
// Sockets held by no such process are left out.
func distroSocketOwners(ctx context.Context, want map[uint64]bool, nsIDs map[string]string) (map[uint64]socketOwner, error) {
	owners, err := socketOwners(ctx, want, func(ns string) bool { _, ok := nsIDs[ns]; return ok })
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]socketOwner, len(owners))
	for inode, o := range owners {
		out[inode] = socketOwner{distroID: nsIDs[o.pidns], pid: o.pid, comm: o.comm}
	}
	return out, nil
}
