package agent

import "log/slog"

// InitConfig configures RunInit.
type InitConfig struct {
	// Socket is the host path of the unix socket to serve on, e.g.
	// <data>/run/<id>.sock. Required.
	Socket string
	// PIDFile, if set, is a host path where the agent writes its host pid.
	PIDFile string
	// RootFS is the host directory holding the distro's root. Required.
	RootFS string
	// Hostname is the distro's hostname. Required.
	Hostname string
	// HostRoot is the directory bound at /mnt/host inside the distro: "/"
	// for a version 1 distro (the host's tree). Empty binds nothing, as in
	// the utility VM, which has no host tree to offer yet.
	HostRoot string
	// HostRootFD, when positive, is an inherited descriptor of a detached
	// mount tree (open_tree) that is attached at /mnt/host instead of
	// HostRoot: the utility VM's host files, which a bind by path could
	// not give (see vmHost.hostTree).
	HostRootFD int
	// VMDevices adds to the distro's /dev the devices a version 2 distro
	// owns because the kernel is the VM's, not the host's: loop devices (so
	// `mount -o loop` of an image file works), /dev/fuse and /dev/net/tun.
	// A version 1 distro never gets them: they would be the host's.
	VMDevices bool
	// Hosts are extra /etc/hosts entries, name to address, written at each
	// start (a version 2 distro's host.subsys.internal).
	Hosts map[string]string
	// Systemd makes the distro's own systemd its PID 1, as wsl.conf's
	// [boot] systemd=true does: the agent sets the distro up as always, then
	// starts a copy of itself beside systemd (in the child cgroup
	// AgentCgroup, serving the same socket) and becomes systemd by exec.
	// The distro must run in a cgroup namespace of its own, which systemd
	// gets as its delegated cgroup tree at /sys/fs/cgroup.
	Systemd bool
	// Logger receives the agent's log. Default slog.Default().
	Logger *slog.Logger
}

// AgentCgroup is the cgroup, below the distro's own, that the agent and the
// processes it starts live in when systemd is the distro's PID 1: cgroup v2
// lets systemd manage the distro's cgroup only while no process sits in it
// directly, and systemd leaves alone a cgroup that is not one of its units.
const AgentCgroup = "subsys-agent"

// BesideConfig configures RunBesideSystemd.
type BesideConfig struct {
	// ListenFD is the inherited descriptor of the listening socket the
	// distro's PID 1 opened on the host (or in the utility VM).
	ListenFD int
	// Logger receives the agent's log. Default slog.Default().
	Logger *slog.Logger
}
