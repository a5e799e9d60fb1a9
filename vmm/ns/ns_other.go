//go:build !linux

package ns

import (
	"context"
	"errors"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// Backend runs version 1 distros; it works on Linux only.
type Backend struct{}

// New returns a Backend whose methods return errors.ErrUnsupported.
func New(cfg Config) *Backend { return &Backend{} }

var _ vmm.Backend = (*Backend)(nil)

// Start returns errors.ErrUnsupported.
func (b *Backend) Start(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	return nil, errors.ErrUnsupported
}

// Connect returns errors.ErrUnsupported.
func (b *Backend) Connect(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	return nil, errors.ErrUnsupported
}

// Stop returns errors.ErrUnsupported.
func (b *Backend) Stop(ctx context.Context, s vmm.Spec) error {
	return errors.ErrUnsupported
}

// Forget returns errors.ErrUnsupported.
func (b *Backend) Forget(ctx context.Context, s vmm.Spec) error {
	return errors.ErrUnsupported
}

// DistroCgroup reports no cgroup: there are no version 1 distros here.
func (b *Backend) DistroCgroup() (id uint64, level uint32, ok bool) { return 0, 0, false }

// Cgroup reports none: there are no version 1 distros here.
func (b *Backend) Cgroup(s vmm.Spec) string { return "" }
