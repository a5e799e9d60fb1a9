package vmm

import (
	"context"
	"errors"

	"github.com/subsys-dev/subsys/vmm/agent"
)

// Spec is what a backend needs to know to run one distro.
type Spec struct {
	// ID is the distro's stable identifier; it names its socket and files.
	ID string
	// Name is the distro's current name; version 1 uses it as the hostname.
	Name string
	// Version is the distro's version (1 or 2).
	Version int
	// RootFS is the host directory holding a version 1 distro's root file system.
	RootFS string
	// Disk is the host path of a version 2 distro's ext4 image.
	Disk string
	// Systemd makes the distro's systemd its PID 1 (with the agent beside
	// it) from its next start.
	Systemd bool
	// Limits are the distro's resource limits: Start applies them to its
	// cgroup before the distro's first process runs.
	Limits Limits
}

// Backend runs distros of one version. The one implementation is vmm/ns
// (version 1); version 2 (a utility VM) has none yet. cli's serve wires the
// backends into a Manager (Config.Backends).
type Backend interface {
	// Start boots the distro, or adopts it when it already runs, and returns a
	// connected agent client.
	Start(ctx context.Context, s Spec) (*agent.Client, error)
	// Connect adopts a distro that is already running (after a server restart).
	// It returns ErrNotRunning when none is.
	Connect(ctx context.Context, s Spec) (*agent.Client, error)
	// Stop ends every process of the distro and waits until it is gone. Stopping a
	// distro that is not running is not an error.
	Stop(ctx context.Context, s Spec) error
}

// ErrNotRunning is returned by Backend.Connect when the distro has no live agent.
var ErrNotRunning = errors.New("distro is not running")
