package sockdiag

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
		{tcp, ipprotoTCP, 1 << tcpListen},
		{udp, ipprotoUDP, 1 << tcpClose},
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
	return dumpSockets(ctx, []diagQuery{{tcp, ipprotoTCP, connStates}})
}

// diagQuery is one sock_diag dump, run once per address family.
type diagQuery struct {
	proto  string // "tcp" or "udp"
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

// Owner is a process that holds a socket.
type Owner struct {
	PID  int
	Comm string
	// Tag is what Owners' classify said of the process.
	Tag string
}

// Owners maps the inodes in want to the lowest PID that has them open,
// looking only at the processes that classify accepts (given /proc/PID), when
// it is not nil; what it returns for a process tags its sockets. Processes
// that exit or cannot be read during the scan are skipped.
func Owners(ctx context.Context, want map[uint64]bool, classify func(procDir string) (tag string, ok bool)) (map[uint64]Owner, error) {
	owners := make(map[uint64]Owner)
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
			if o, ok := owners[inode]; ok && o.PID < pid {
				continue
			}
			if comm == "" {
				b, err := os.ReadFile(dir + "/comm")
				if err != nil {
					break // gone
				}
				comm = parseComm(b)
			}
			owners[inode] = Owner{pid, comm, tag}
		}
	}
	return owners, nil
}
