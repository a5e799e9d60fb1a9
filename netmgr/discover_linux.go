package netmgr

import (
	"context"
	"os"
	"strconv"

	"github.com/subsys-dev/subsys/netmgr/sockdiag"
)

// Discover lists the listening sockets (see ListeningSockets) and the processes
// that hold them, found by reading the socket:[inode] links of /proc/PID/fd.
// Without root only the caller's own processes are attributed.
func Discover(ctx context.Context, opt DiscoverOptions) ([]Listener, error) {
	socks, err := ListeningSockets(ctx)
	if err != nil {
		return nil, err
	}
	want := make(map[uint64]bool, len(socks))
	for _, s := range socks {
		if s.Inode != 0 {
			want[s.Inode] = true
		}
	}
	var classify func(string) (string, bool)
	if opt.PIDNamespace != "" {
		classify = func(dir string) (string, bool) {
			ns, err := os.Readlink(dir + "/ns/pid")
			return ns, err == nil && ns == opt.PIDNamespace
		}
	}
	owners, err := sockdiag.Owners(ctx, want, classify)
	if err != nil {
		return nil, err
	}
	ls := make([]Listener, 0, len(socks))
	for _, s := range socks {
		o, ok := owners[s.Inode]
		if !ok && opt.PIDNamespace != "" {
			continue
		}
		ls = append(ls, Listener{
			Proto:   s.Proto,
			Address: s.Local.Addr(),
			Port:    s.Local.Port(),
			PID:     o.PID,
			Process: o.Comm,
			UID:     s.UID,
			Inode:   s.Inode,
		})
	}
	sortListeners(ls)
	return ls, nil
}

// PIDNamespace returns what /proc/PID/ns/pid links to, e.g. "pid:[4026531836]";
// a version 1 distro is the set of processes that share its agent's.
func PIDNamespace(pid int) (string, error) {
	return os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
}
