package vmm

import (
	"context"
	"io"
	"time"

	"github.com/subsys-dev/subsys/vmm/archive"
)

// VMState is where the utility VM of version 2 distros is in its life.
type VMState string

// The utility VM's states.
const (
	VMStopped  VMState = "Stopped"
	VMStarting VMState = "Starting"
	VMRunning  VMState = "Running"
	VMStopping VMState = "Stopping"
	// VMFailed means the last boot did not reach the agent; VMStatus.Error
	// says why and the console holds what the kernel printed.
	VMFailed VMState = "Failed"
)

// VMStatus describes the utility VM that runs version 2 distros.
type VMStatus struct {
	// Available is false when this host has no version 2 backend.
	Available bool    `json:"available"`
	State     VMState `json:"state"`
	// Accel is the accelerator in use or last used: "kvm" or "tcg"; empty
	// before the first boot.
	Accel string `json:"accel,omitempty"`
	// AccelNote says why TCG is used where KVM was tried.
	AccelNote string `json:"accel_note,omitempty"`
	// PID is QEMU's process id while it runs.
	PID int `json:"pid,omitempty"`
	// StartedAt is when the running VM booted.
	StartedAt time.Time `json:"started_at,omitzero"`
	// MemoryMiB and CPUs are what the VM has (running) or will get (stopped).
	MemoryMiB int `json:"memory_mib"`
	CPUs      int `json:"cpus"`
	// RSSBytes is QEMU's resident memory on the host while it runs.
	RSSBytes int64 `json:"rss_bytes,omitempty"`
	// Kernel is the kernel image in use, and KernelRelease its `uname -r`.
	Kernel        string `json:"kernel,omitempty"`
	KernelRelease string `json:"kernel_release,omitempty"`
	// Addresses are the VM's own addresses, IPv4 and IPv6, as prefixes.
	Addresses []string `json:"addresses,omitempty"`
	// Network is the running VM's user-mode network: "passt" or "slirp"
	// (QEMU's own, where passt is not installed).
	Network string `json:"network,omitempty"`
	// HostFiles is how /mnt/host reaches the host's files in the running
	// VM: "virtio-fs" or "9p" (where virtiofsd is missing or failed);
	// empty until the first distro has started. HostFilesNote says why
	// virtio-fs is not used when it was meant to be.
	HostFiles     string `json:"host_files,omitempty"`
	HostFilesNote string `json:"host_files_note,omitempty"`
	// Memory is the guest's memory as its kernel counts it, while it runs.
	Memory *VMMemory `json:"memory,omitempty"`
	// MemoryReclaim is the memory_reclaim setting in force.
	MemoryReclaim string `json:"memory_reclaim,omitempty"`
	// MemoryHistory samples the VM's memory every MemorySampleInterval
	// while it runs, the oldest first (the last 15 minutes).
	MemoryHistory []MemorySample `json:"memory_history,omitempty"`
	// Distros are the ids of the version 2 distros running in it.
	Distros []string `json:"distros,omitempty"`
	// IdleTimeoutS is vm_idle_timeout: how long the VM stays up with no
	// version 2 distro running (negative: for ever).
	IdleTimeoutS int `json:"idle_timeout_s"`
	// Error is why the last start failed, when State is Failed.
	Error string `json:"error,omitempty"`
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

// MemorySampleInterval is how often the VM's memory is sampled.
const MemorySampleInterval = 10 * time.Second

// MemorySample is the VM's memory at one time: QEMU's resident memory on the
// host, and the guest's used and cached memory.
type MemorySample struct {
	T           time.Time `json:"t"`
	RSSBytes    int64     `json:"rss_bytes"`
	UsedBytes   int64     `json:"used_bytes"`
	CachedBytes int64     `json:"cached_bytes"`
}

// VMReclaim is what POST /vm/reclaim did: the page cache the guest dropped,
// and the VM's memory after. The host's share (QEMU's RSS) falls over the
// next seconds, as the balloon reports the freed pages.
type VMReclaim struct {
	DroppedBytes int64    `json:"dropped_bytes"`
	Memory       VMMemory `json:"memory"`
	RSSBytes     int64    `json:"rss_bytes"`
}

// VMBackend is implemented by a backend that runs its distros in a utility VM
// (version 2). The Manager reports the VM through it and stops it on Shutdown.
type VMBackend interface {
	Backend
	// VMStatus reports the VM.
	VMStatus(ctx context.Context) VMStatus
	// VMConsole returns the last bytes of the VM's serial console (at most 1 MiB).
	VMConsole() []byte
	// ShutdownVM stops the VM (its distros are stopped first by the Manager):
	// sync and power-off through the agent, then QMP quit, then kill.
	ShutdownVM(ctx context.Context) error
	// ReclaimVM has the running VM drop its page cache and compact its
	// memory now (ErrNotRunning when it is not running).
	ReclaimVM(ctx context.Context) (VMReclaim, error)
}

// TreeExporter is implemented by backends whose distros' files the host must
// not read itself (version 2: the image is untrusted and mounted only in the
// VM): ExportTree writes the distro's tree as an archive in format f, made
// where the files are mounted. The distro may be running or stopped.
type TreeExporter interface {
	ExportTree(ctx context.Context, s Spec, w io.Writer, f archive.Format) error
}

// vmBackend returns the version 2 backend when it runs distros in a VM.
func (m *Manager) vmBackend() VMBackend {
	b, _ := m.cfg.Backends[2].(VMBackend)
	return b
}

// VM reports the utility VM of version 2 distros; Available is false when this
// host has no version 2 backend.
func (m *Manager) VM(ctx context.Context) VMStatus {
	b := m.vmBackend()
	if b == nil {
		return VMStatus{State: VMStopped}
	}
	st := b.VMStatus(ctx)
	st.Available = true
	return st
}

// ReclaimVM has the utility VM give its page cache back now; ErrNotRunning
// when it does not run or there is no version 2 backend.
func (m *Manager) ReclaimVM(ctx context.Context) (VMReclaim, error) {
	b := m.vmBackend()
	if b == nil {
		return VMReclaim{}, ErrNotRunning
	}
	r, err := b.ReclaimVM(ctx)
	if err == nil {
		m.audit(ctx, "vm-reclaim", "", "")
	}
	return r, err
}

// VMConsole returns the last bytes (at most 1 MiB) of the utility VM's serial
// console, or nil when there is no version 2 backend.
func (m *Manager) VMConsole() []byte {
	b := m.vmBackend()
	if b == nil {
		return nil
	}
	return b.VMConsole()
}
