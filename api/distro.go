package api

import "time"

// DistroState is what a distro is doing, in the words `wsl -l -v` users know.
type DistroState string

// The states a distro can be in.
const (
	StateInstalling   DistroState = "Installing"
	StateStopped      DistroState = "Stopped"
	StateRunning      DistroState = "Running"
	StateExporting    DistroState = "Exporting"
	StateConverting   DistroState = "Converting"
	StateUninstalling DistroState = "Uninstalling"
)

// Distro is one distro as GET /distros and GET /distros/{name} answer it (and
// the start, terminate and PATCH replies, and the `distro` event).
type Distro struct {
	// Name is what the distro is called (and its hostname); ID never changes.
	Name string `json:"name"`
	ID   string `json:"id"`
	// Version is 1 (shared kernel) or 2 (utility VM).
	Version int `json:"version"`
	// State is what the distro is doing: one of the State constants.
	State DistroState `json:"state"`
	// Default marks the distro `run` uses when none is named.
	Default bool `json:"default"`
	// Location is the directory of the distro's files on the server.
	Location string `json:"location"`
	// DefaultUser is the user commands run as when a request names none.
	DefaultUser string `json:"default_user"`
	// Systemd says the distro boots with its own systemd as PID 1, the agent
	// beside it, as wsl.conf's [boot] systemd=true; a change applies from
	// the distro's next start.
	Systemd bool `json:"systemd,omitempty"`
	// CreatedAt is when the distro was imported (or cloned).
	CreatedAt time.Time `json:"created_at"`
	// DiskBytes is the space the distro's files take on the host, measured
	// every minute: a version 2 distro's image counts its allocated blocks.
	DiskBytes int64 `json:"disk_bytes"`
	// DiskMaxBytes is a version 2 distro's disk size: its image's apparent
	// size, which its file system fills (POST /distros/{name}/resize
	// changes it). 0 for version 1, whose files use the host's disk.
	DiskMaxBytes int64 `json:"disk_max_bytes,omitempty"`
	// DiskFreeBytes is the free space of a version 2 distro's file system
	// as its guest sees it (df): from the running distro, else from the
	// image's superblock. Omitted when it cannot be told.
	DiskFreeBytes int64 `json:"disk_free_bytes,omitempty"`
	// MemoryBytes and CPUPercent are the latest sample of a running distro's
	// use (100 % is one core).
	MemoryBytes int64   `json:"memory_bytes"`
	CPUPercent  float64 `json:"cpu_percent"`
	// MemoryMax (bytes), CPUMax (cores) and PidsMax are the distro's
	// resource limits, applied through its cgroup; omitted when unset.
	MemoryMax int64   `json:"memory_max,omitempty"`
	CPUMax    float64 `json:"cpu_max,omitempty"`
	PidsMax   int64   `json:"pids_max,omitempty"`
	// Pids is a running distro's processes and threads (pids.current),
	// latest sample.
	Pids int64 `json:"pids,omitempty"`
	// OOMKills counts the processes the kernel's OOM killer ended in the
	// running distro since it started; LastOOMAt is when the latest was
	// seen (omitted when none was, or it was before the server started).
	OOMKills  int64     `json:"oom_kills,omitempty"`
	LastOOMAt time.Time `json:"last_oom_at,omitzero"`
	// AgentOutdated says the running distro's agent speaks another protocol
	// version than the server; it gets the server's at its next start.
	AgentOutdated bool `json:"agent_outdated,omitempty"`
	// Message says, for people, what needs attention and what to do.
	Message string `json:"message,omitempty"`
}

// DistroUpdate is the body of PATCH /distros/{name}: nil fields stay as they are.
type DistroUpdate struct {
	// Name renames the distro.
	Name *string `json:"name,omitempty"`
	// Default, when true, makes the distro the default one.
	Default *bool `json:"default,omitempty"`
	// DefaultUser sets the user commands run as by default.
	DefaultUser *string `json:"default_user,omitempty"`
	// Systemd turns systemd as the distro's PID 1 on or off; it applies from
	// the distro's next start.
	Systemd *bool `json:"systemd,omitempty"`
	// MemoryMax (bytes: 0, or at least 32 MiB), CPUMax (cores: 0, or 0.01
	// to 1024) and PidsMax (0, or at least 16) set a limit; 0 removes it.
	// A running distro gets them at once.
	MemoryMax *int64   `json:"memory_max,omitempty"`
	CPUMax    *float64 `json:"cpu_max,omitempty"`
	PidsMax   *int64   `json:"pids_max,omitempty"`
}

// ContentTypeRawDiskImage is the Content-Type of an import whose body is a
// raw ext4 disk image (a version 2 distro's, as the export with format=img
// writes it) instead of a tarball.
const ContentTypeRawDiskImage = "application/x-raw-disk-image"

// ImportRequest is the JSON form of POST /distros: import a tarball (or a raw
// disk image) that is already on the server. (An upload sends it as the body
// instead, with name, version, location and size in the query, and an image
// as Content-Type ContentTypeRawDiskImage.)
type ImportRequest struct {
	// Name of the new distro.
	Name string `json:"name"`
	// Version is 1 or 2; 0 means the settings' default_version.
	Version int `json:"version,omitempty"`
	// Location is an absolute directory on the server for the distro's files;
	// empty means the data directory.
	Location string `json:"location,omitempty"`
	// Size is the largest a version 2 distro's disk may grow to, in bytes
	// (for a raw image: the largest the image may be); 0 means the server's
	// default. A version 1 distro has no disk: it is refused there.
	Size int64 `json:"size,omitempty"`
	// Source names the tarball or image.
	Source ImportSource `json:"source"`
}

// ImportSource is where the server finds the tarball (or image) of an
// ImportRequest.
type ImportSource struct {
	// Path is the file's path on the server.
	Path string `json:"path"`
	// Format is "tar" (the default: a tarball, compression detected) or
	// "img" (a raw ext4 disk image, which makes a version 2 distro).
	Format string `json:"format,omitempty"`
}

// CloneRequest is the body of POST /distros/{name}/clone.
type CloneRequest struct {
	// Name of the copy.
	Name string `json:"name"`
}

// Version is the reply of GET /version.
type Version struct {
	// Version is the server's build version.
	Version string `json:"version"`
}

// Status is the reply of GET /status.
type Status struct {
	// Version of the server.
	Version string `json:"version"`
	// Distros and Running count the distros, and those running.
	Distros int `json:"distros"`
	Running int `json:"running"`
	// Default names the default distro; empty when there is none.
	Default string `json:"default"`
}

// Metrics is the reply of GET /distros/{name}/metrics: the distro's CPU and
// memory over the last 10 minutes, oldest first.
type Metrics struct {
	// IntervalS is the seconds between samples.
	IntervalS int `json:"interval_s"`
	// Samples are the points, oldest first.
	Samples []Sample `json:"samples"`
}

// Sample is one point of Metrics.
type Sample struct {
	// T is when the sample was taken.
	T time.Time `json:"t"`
	// CPUPercent is the CPU use over the interval (100 is one core).
	CPUPercent  float64 `json:"cpu_percent"`
	MemoryBytes int64   `json:"memory_bytes"`
	// Pids is the distro's processes and threads.
	Pids int64 `json:"pids,omitempty"`
}
