// Package ns is the version 1 backend: it runs each distro in its own mount,
// PID, UTS and IPC namespaces on the host kernel, with the static agent
// (vmm/agent/cmd/subsys-agent) as the distro's PID 1, and shares the host's
// network. It works on Linux only; elsewhere every method returns
// errors.ErrUnsupported. Only cli imports it, to wire it into vmm in serve.
package ns

import "log/slog"

// Config configures a Backend.
type Config struct {
	// AgentPath is the host path of the static agent binary. Required.
	AgentPath string
	// RunDir holds each running distro's socket (<id>.sock), pid file
	// (<id>.pid) and agent log (<id>.log); it is created with mode 0700.
	// Required. Keep it short: a unix socket path must fit in 107 bytes.
	RunDir string
	// Cgroup names a cgroup (v2) directly under the root of the hierarchy in
	// which each distro gets a cgroup of its own ("subsys" → /subsys/<id>).
	// The firewall tells a distro's sockets from the host's by it, and a
	// distro no longer shares the server's cgroup, so stopping the server's
	// service does not stop it. Empty, or no cgroup v2 hierarchy: none.
	Cgroup string
	// Logger receives the backend's log. Default slog.Default().
	Logger *slog.Logger
}
