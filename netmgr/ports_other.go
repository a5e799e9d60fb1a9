//go:build !linux

package netmgr

import (
	"context"
	"errors"
)

// distroSocketOwners needs Linux's /proc; elsewhere it returns
// errors.ErrUnsupported.
func distroSocketOwners(ctx context.Context, want map[uint64]bool, distros []Distro) (map[uint64]socketOwner, error) {
	return nil, errors.ErrUnsupported
}
