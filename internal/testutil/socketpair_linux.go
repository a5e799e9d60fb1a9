//go:build linux

package testutil

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// NewSocketPair is SocketPair for code that owns the sockets' lifetime
// itself (a test double that outlives one call); the caller closes both.
func NewSocketPair() (net.Conn, net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	a, err := fileConn(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	b, err := fileConn(fds[1])
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// fileConn wraps fd as a net.Conn; fd is closed either way (FileConn dups it).
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close()
	return net.FileConn(f)
}
