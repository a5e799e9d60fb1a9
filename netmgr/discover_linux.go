package netmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
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
	socks, err := dumpSockets(ctx, []diagQuery{
		{TCP, ipprotoTCP, 1 << tcpListen},
		{UDP, ipprotoUDP, 1 << tcpClose},
	})
	if err != nil {
		return nil, err
	}
	all := socks[:0]
	for _, s := range socks {
		if s.Listening() {
			all = append(all, s)
		}
	}
	return all, nil
}

// Connections lists the live TCP connections of the caller's network
// namespace, IPv4 and IPv6: sockets in ESTABLISHED, SYN_RECV (request
// sockets of a listener included), FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT,
// LAST_ACK and CLOSING, with Local, Remote and Cookie set — what
// DestroySockets needs. It needs no privilege.
func Connections(ctx context.Context) ([]Socket, error) {
	return dumpSockets(ctx, []diagQuery{{TCP, ipprotoTCP, connStates}})
}

// diagQuery is one sock_diag dump, run once per address family.
type diagQuery struct {
	proto  string // TCP or UDP
	num    uint8  // ipprotoTCP or ipprotoUDP
	states uint32 // 1<<tcpListen, …
}

// dumpSockets runs each query for IPv4 and IPv6 on one NETLINK_SOCK_DIAG
// socket and returns what the kernel reported, in order. A dump that the
// kernel marks interrupted (the tables changed meanwhile) is run again, up
// to three times.
func dumpSockets(ctx context.Context, queries []diagQuery) ([]Socket, error) {
	fd, err := diagSocket(ctx)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	seq := uint32(time.Now().UnixNano())
	var all []Socket
	for _, q := range queries {
		for _, family := range []uint8{afInet, afInet6} {
			for attempt := 1; ; attempt++ {
				seq++
				d := &diagDump{seq: seq, proto: q.proto}
				if err := runDump(ctx, fd, d, family, q.num, q.states); err != nil {
					return nil, err
				}
				if !d.interrupted || attempt == 3 {
					all = append(all, d.socks...)
					break
				}
			}
		}
	}
	return all, nil
}

// diagSocket opens a NETLINK_SOCK_DIAG socket whose receives give up at
// ctx's deadline or after diagTimeout.
func diagSocket(ctx context.Context) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sock_diag socket: %w", err)
	}
	timeout := diagTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(d)), time.Millisecond)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sock_diag socket: %w", err)
	}
	return fd, nil
}

// DestroySockets aborts each socket with SOCK_DESTROY: the peer gets a RST,
// the owner's blocked and later calls fail with ECONNABORTED. A socket that
// is already gone (or whose Cookie now names no socket: its addresses were
// reused) is skipped without error. It returns how many sockets it
// destroyed. It needs CAP_NET_ADMIN (EPERM otherwise, and it stops at the
// first socket) and a kernel with CONFIG_INET_DIAG_DESTROY (EOPNOTSUPP).
func DestroySockets(ctx context.Context, socks []Socket) (int, error) {
	if len(socks) == 0 {
		return 0, nil
	}
	fd, err := diagSocket(ctx)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	seq := uint32(time.Now().UnixNano())
	destroyed := 0
	var errs []error
	buf := make([]byte, 8<<10)
	for _, s := range socks {
		if err := ctx.Err(); err != nil {
			return destroyed, err
		}
		seq++
		errno, err := destroyOne(ctx, fd, seq, s, buf)
		switch {
		case err != nil:
			return destroyed, err
		case errno == 0:
			destroyed++
		case errno == unix.ENOENT || errno == unix.ESTALE:
			// Gone already, or its addresses belong to a newer socket now.
		case errno == unix.EPERM || errno == unix.EACCES || errno == unix.EOPNOTSUPP:
			// Every other socket would fail the same way.
			return destroyed, fmt.Errorf("destroy socket %s %v-%v: %w", s.Proto, s.Local, s.Remote, errno)
		default:
			errs = append(errs, fmt.Errorf("destroy socket %s %v-%v: %w", s.Proto, s.Local, s.Remote, errno))
		}
	}
	return destroyed, errors.Join(errs...)
}

// destroyOne sends the SOCK_DESTROY request for s and waits for its
// acknowledgement, whose errno it returns; err is a failure to ask.
func destroyOne(ctx context.Context, fd int, seq uint32, s Socket, buf []byte) (unix.Errno, error) {
	req, err := destroyRequest(seq, s)
	if err != nil {
		return 0, err
	}
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag destroy request: %w", err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n, _, _, from, err := unix.Recvmsg(fd, buf, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return 0, fmt.Errorf("sock_diag destroy: no answer from the kernel: %w", os.ErrDeadlineExceeded)
		}
		if err != nil {
			return 0, fmt.Errorf("sock_diag receive: %w", err)
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue // not from the kernel
		}
		found, errno, err := parseAck(buf[:n], seq)
		if err != nil {
			return 0, err
		}
		if found {
			return errno, nil
		}
	}
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
	var classify func(string) (string, bool)
	if opt.PIDNamespace != "" {
		classify = func(dir string) (string, bool) {
			ns, err := os.Readlink(dir + "/ns/pid")
			return ns, err == nil && ns == opt.PIDNamespace
		}
	}
	owners, err := socketOwners(ctx, want, classify)
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
	// tag is what socketOwners' classify said of the process.
	tag string
}

// socketOwners maps the inodes in want to the lowest PID that has them open,
// looking only at the processes that classify accepts (given /proc/PID), when
// it is not nil; what it returns for a process tags its sockets. Processes
// that exit or cannot be read during the scan are skipped.
func socketOwners(ctx context.Context, want map[uint64]bool, classify func(procDir string) (tag string, ok bool)) (map[uint64]owner, error) {
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
		var tag string
		if classify != nil {
			var ok bool
			if tag, ok = classify(dir); !ok {
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
			owners[inode] = owner{pid, comm, tag}
		}
	}
	return owners, nil
}
