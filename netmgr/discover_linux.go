package netmgr

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// diagTimeout bounds one sock_diag dump when ctx has no sooner deadline.
const diagTimeout = 5 * time.Second

// ListeningSockets lists the listening sockets of the caller's network
// namespace — TCP in LISTEN and unconnected UDP, IPv4 and IPv6 — with a
// NETLINK_SOCK_DIAG dump (four, one per protocol and family). It needs no
// privilege.
func ListeningSockets(ctx context.Context) ([]Socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	timeout := diagTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(d)), time.Millisecond)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	seq := uint32(time.Now().UnixNano())
	var all []Socket
	for _, q := range []struct {
		proto  string
		num    uint8
		states uint32
	}{
		{TCP, ipprotoTCP, 1 << tcpListen},
		{UDP, ipprotoUDP, 1 << tcpClose},
	} {
		for _, family := range []uint8{afInet, afInet6} {
			var socks []Socket
			for attempt := 1; ; attempt++ {
				seq++
				d := &diagDump{seq: seq, proto: q.proto}
				if err := runDump(ctx, fd, d, family, q.num, q.states); err != nil {
					return nil, err
				}
				if !d.interrupted || attempt == 3 {
					socks = d.socks
					break
				}
			}
			for _, s := range socks {
				if s.Listening() {
					all = append(all, s)
				}
			}
		}
	}
	return all, nil
}

// runDump sends one dump request and reads the answer into d until it is done.
func runDump(ctx context.Context, fd int, d *diagDump, family, proto uint8, states uint32) error {
	req := diagRequest(d.seq, family, proto, states)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag request: %w", err)
	}
	buf := make([]byte, 64<<10)
	for !d.done {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, _, flags, from, err := unix.Recvmsg(fd, buf, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return fmt.Errorf("sock_diag: no answer from the kernel: %w", os.ErrDeadlineExceeded)
		}
		if err != nil {
			return fmt.Errorf("sock_diag receive: %w", err)
		}
		if flags&unix.MSG_TRUNC != 0 {
			return errors.New("sock_diag: message truncated")
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue // not from the kernel
		}
		if err := d.parse(buf[:n]); err != nil {
			return err
		}
	}
	return nil
}

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
	owners, err := socketOwners(ctx, want, opt.PIDNamespace)
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
			PID:     o.pid,
			Process: o.comm,
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

// owner is a process that holds a socket.
type owner struct {
	pid  int
	comm string
}

// socketOwners maps the inodes in want to the lowest PID that has them open,
// looking only at processes of PID namespace pidns when it is not empty.
// Processes that exit or cannot be read during the scan are skipped.
func socketOwners(ctx context.Context, want map[uint64]bool, pidns string) (map[uint64]owner, error) {
	owners := make(map[uint64]owner)
	if len(want) == 0 {
		return owners, nil
	}
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
		if pidns != "" {
			if ns, err := os.Readlink(dir + "/ns/pid"); err != nil || ns != pidns {
				continue
			}
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
					break // gone
				}
				comm = parseComm(b)
			}
			owners[inode] = owner{pid, comm}
		}
	}
	return owners, nil
}

// sortListeners orders listeners by protocol, port, address and inode.
func sortListeners(ls []Listener) {
	slices.SortFunc(ls, func(a, b Listener) int {
		return cmp.Or(
			cmp.Compare(a.Proto, b.Proto),
			cmp.Compare(a.Port, b.Port),
			a.Address.Compare(b.Address),
			cmp.Compare(a.Inode, b.Inode),
		)
	})
}
