// Package hcs is the version 2 backend on Windows: one Linux utility VM
// made by the Host Compute Service.
//
// This file is a placeholder so that cli's Windows wiring compiles before
// the real package lands; it is deleted when the real one is merged.
package hcs

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// Config configures the Backend (the real package's fields that serve sets).
type Config struct {
	StateDir        string
	Kernel, Initrd  string
	KernelCmdline   string
	MemoryMiB, CPUs int
	Logger          *slog.Logger
}

// Backend is the HCS backend; the placeholder's is never made.
type Backend struct{}

// New fails: the real backend is not in this tree.
func New(cfg Config) (*Backend, error) {
	return nil, errors.ErrUnsupported
}

// Start implements vmm.Backend.
func (b *Backend) Start(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	return nil, errors.ErrUnsupported
}

// Connect implements vmm.Backend.
func (b *Backend) Connect(ctx context.Context, s vmm.Spec) (*agent.Client, error) {
	return nil, vmm.ErrNotRunning
}

// Stop implements vmm.Backend.
func (b *Backend) Stop(ctx context.Context, s vmm.Spec) error { return nil }

// Listeners lists a distro's listening sockets.
func (b *Backend) Listeners(ctx context.Context, id string) ([]agent.Listener, error) {
	return nil, errors.ErrUnsupported
}

// Dial connects to an address inside the VM.
func (b *Backend) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, errors.ErrUnsupported
}

// Close stops the backend.
func (b *Backend) Close() error { return nil }
