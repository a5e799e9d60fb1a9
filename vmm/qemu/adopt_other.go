//go:build !linux

package qemu

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoVM is returned by Adopt when no QEMU of the configuration runs.
var ErrNoVM = errors.New("qemu: no VM is running")

// Adopt is supported on Linux only.
func Adopt(ctx context.Context, cfg Config) (*VM, error) {
	return nil, fmt.Errorf("%w: adopting a VM: %w", ErrNoVM, errors.ErrUnsupported)
}
