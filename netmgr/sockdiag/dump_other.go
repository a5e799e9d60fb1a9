//go:build !linux

package sockdiag

import (
	"context"
	"errors"
)

// ListeningSockets needs Linux's NETLINK_SOCK_DIAG.
func ListeningSockets(ctx context.Context) ([]Socket, error) { return nil, errors.ErrUnsupported }

// Connections needs Linux's NETLINK_SOCK_DIAG.
func Connections(ctx context.Context) ([]Socket, error) { return nil, errors.ErrUnsupported }

// DestroySockets needs Linux's NETLINK_SOCK_DIAG.
func DestroySockets(ctx context.Context, socks []Socket) (int, error) {
	return 0, errors.ErrUnsupported
}

// Owner is a process that holds a socket.
type Owner struct {
	PID  int
	Comm string
	Tag  string
}

// Owners needs Linux's /proc.
func Owners(ctx context.Context, want map[uint64]bool, classify func(procDir string) (tag string, ok bool)) (map[uint64]Owner, error) {
	return nil, errors.ErrUnsupported
}
