//go:build !linux

package netmgr

import (
	"context"
	"errors"
)

// Discover needs Linux's sock_diag and /proc; elsewhere it returns
// errors.ErrUnsupported.
func Discover(ctx context.Context, opt DiscoverOptions) ([]Listener, error) {
	return nil, errors.ErrUnsupported
}

// PIDNamespace needs Linux's /proc; elsewhere it returns errors.ErrUnsupported.
func PIDNamespace(pid int) (string, error) { return "", errors.ErrUnsupported }
