package api

import "time"

// VMState is where the utility VM of version 2 distros is in its life.
type VMState string

// The utility VM's states.
const (
	VMStopped  VMState = "Stopped"
	VMStarting VMState = "Starting"
	VMRunning  VMState = "Running"
	VMStopping VMState = "Stopping"
	// VMFailed: the last boot did not reach the agent; VMStatus.Error says
	// why and the console (GET /vm/console) holds what the kernel printed.
	VMFailed VMState = "Failed"
)

// VMStatus is the reply of GET /vm: the utility VM that runs version 2
// distros. Its strings (the error, the kernel release) may come from the
// guest: escape them before printing them on a terminal.
type VMStatus struct {
	// Available is false when this server has no version 2 backend; the
	// rest then says little.
	Available bool `json:"available"`
	// State is one of the VM constants.
	State VMState `json:"state"`
	// Accel is the accelerator in use or last used, "kvm" or "tcg"; empty
	// before the first boot.
	Accel string `json:"accel,omitempty"`
	// AccelNote says why TCG (slow, emulated) is used where KVM was tried.
	AccelNote string `json:"accel_note,omitempty"`
	// PID is QEMU's process id while it runs.
	PID int `json:"pid,omitempty"`
	// StartedAt is when the running VM booted (zero: not running).
	StartedAt time.Time `json:"started_at,omitzero"`
	// MemoryMiB and CPUs are what the VM has (running) or will get (stopped).
	MemoryMiB int `json:"memory_mib"`
	CPUs      int `json:"cpus"`
	// RSSBytes is QEMU's resident memory on the host while it runs.
	RSSBytes int64 `json:"rss_bytes,omitempty"`
	// Kernel is the kernel image's path on the server, KernelRelease its
	// `uname -r`.
	Kernel        string `json:"kernel,omitempty"`
	KernelRelease string `json:"kernel_release,omitempty"`
	// Addresses are the VM's own addresses (IPv4 and IPv6, as prefixes).
	Addresses []string `json:"addresses,omitempty"`
	// Network is the running VM's user-mode network: "passt", or "slirp"
	// (QEMU's own) where passt is not installed.
	Network string `json:"network,omitempty"`
	// HostFiles is how /mnt/host reaches the host's files in the running
	// VM: "virtio-fs", or "9p" where virtiofsd is missing or failed; empty
	// until a distro has started. HostFilesNote says why virtio-fs is not
	// used where it was meant to be.
	HostFiles     string `json:"host_files,omitempty"`
	HostFilesNote string `json:"host_files_note,omitempty"`
	// Memory is the guest's memory as its kernel counts it, while it runs.
	Memory *VMMemory `json:"memory,omitempty"`
	// MemoryReclaim is the idle reclaim mode in force in the running VM
	// (the memory_reclaim setting: gradual, dropcache, disabled).
	MemoryReclaim string `json:"memory_reclaim,omitempty"`
	// MemoryHistory samples the VM's memory every 10 s while it runs, the
	// oldest first (the last 15 minutes).
	MemoryHistory []MemorySample `json:"memory_history,omitempty"`
	// Distros are the ids of the version 2 distros running in the VM.
	Distros []string `json:"distros,omitempty"`
	// IdleTimeoutS is how long the VM stays up with no version 2 distro
	// running; negative: for ever.
	IdleTimeoutS int `json:"idle_timeout_s"`
	// Error is why the last start failed, when State is VMFailed.
	Error string `json:"error,omitempty"`
}

// SetVersionRequest is the body of POST /distros/{name}/set-version.
type SetVersionRequest struct {
	// Version is what the distro is converted to: 1 or 2.
	Version int `json:"version"`
}

// ResizeRequest is the body of POST /distros/{name}/resize.
type ResizeRequest struct {
	// Size is the version 2 distro's new disk size in bytes (rounded down
	// to 4 KiB), between 64 MiB and 8 TiB. A running distro can only grow
	// (online); a stopped one can grow or shrink to what its files need.
	Size int64 `json:"size"`
}

// MoveRequest is the body of POST /distros/{name}/move.
type MoveRequest struct {
	// Location is the directory the stopped distro's files move to, as an
	// import's location: absolute, and empty or absent. An empty Location
	// moves the distro back into the server's data directory.
	Location string `json:"location"`
}

// VMMemory is the utility VM's memory as its kernel counts it.
type VMMemory struct {
	TotalBytes     int64 `json:"total_bytes"`
	UsedBytes      int64 `json:"used_bytes"`
	CachedBytes    int64 `json:"cached_bytes"`
	AvailableBytes int64 `json:"available_bytes"`
	// ReclaimedBytes is the page cache reclaim has dropped since the VM
	// booted (idle reclaim and POST /vm/reclaim).
	ReclaimedBytes int64 `json:"reclaimed_bytes"`
}

// MemorySample is the VM's memory at time T: QEMU's resident memory on the
// host, and the guest's used and cached memory.
type MemorySample struct {
	T           time.Time `json:"t"`
	RSSBytes    int64     `json:"rss_bytes"`
	UsedBytes   int64     `json:"used_bytes"`
	CachedBytes int64     `json:"cached_bytes"`
}

// VMReclaim is the reply of POST /vm/reclaim: the page cache the guest
// dropped and its memory after. QEMU's resident memory (RSSBytes, now) falls
// over the next seconds as the balloon reports the freed pages to the host.
type VMReclaim struct {
	DroppedBytes int64    `json:"dropped_bytes"`
	Memory       VMMemory `json:"memory"`
	RSSBytes     int64    `json:"rss_bytes"`
}
