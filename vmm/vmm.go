// Package vmm owns the life of distros: import, start, exec, terminate, export,
// clone, rename, unregister, and the long-running operations that some of these are.
// It keeps the metadata in store and runs distros through one Backend per version
// (vmm/ns for version 1). cli builds the Manager, server drives it, and vmm/ns
// implements its Backend; vmm imports none of them, nor netmgr.
package vmm

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// State is what a distro is doing, as `subsys list` shows it.
type State string

// The states a distro can be in. They match the words `wsl -l -v` users know.
const (
	StateInstalling   State = "Installing"
	StateStopped      State = "Stopped"
	StateRunning      State = "Running"
	StateExporting    State = "Exporting"
	StateConverting   State = "Converting"
	StateUninstalling State = "Uninstalling"
)

// Sentinel errors; server maps each to an HTTP status with errors.Is.
var (
	// ErrNotFound: no distro or operation by that name or id.
	ErrNotFound = errors.New("not found")
	// ErrExists: the name is taken.
	ErrExists = errors.New("already exists")
	// ErrBusy: another operation holds the distro; the error text names it.
	ErrBusy = errors.New("busy")
	// ErrInvalid: the request is malformed (bad name, version, path, user…).
	ErrInvalid = errors.New("invalid")
	// ErrTooLarge: an input went over a size or count limit.
	ErrTooLarge = errors.New("too large")
	// ErrUnsupported: no backend for the requested distro version on this host.
	ErrUnsupported = errors.New("unsupported")
	// ErrInsufficientStorage: the file system of a new distro has too little
	// free space: an import filled it, or would have gone below the reserve
	// (Settings.ImportReserveBytes). From an import, the error also wraps an
	// *archive.InsufficientStorageError, whose text names the file system
	// and its free space.
	ErrInsufficientStorage = errors.New("insufficient storage")
)

// namePattern is the one rule for distro names. A name becomes the distro's
// hostname, a URL path segment and text in terminals and tables, so it holds
// only letters, digits, '.', '_' and '-', and starts with a letter or digit, so
// it is never "." or "..", nor taken for a flag. Compiled on first use, not at
// package init: every CLI verb links this package, and compiling the counted
// repetitions costs a client's start-up hundreds of allocations it never uses.
var namePattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)
})

// ValidateName reports whether name is a valid distro name.
func ValidateName(name string) error {
	if !namePattern().MatchString(name) {
		return fmt.Errorf("%w: distro name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, name)
	}
	return nil
}

// userPattern bounds user names to what useradd accepts (plus numeric uids);
// compiled on first use, as namePattern is.
var userPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,31}\$?$`)
})

// ValidateUser reports whether user is a plausible user name or numeric uid.
func ValidateUser(user string) error {
	if !userPattern().MatchString(user) {
		return fmt.Errorf("%w: user name %q", ErrInvalid, user)
	}
	return nil
}

// Distro is what the API and CLI show about one distro.
type Distro struct {
	Name        string `json:"name"`
	ID          string `json:"id"`
	Version     int    `json:"version"`
	State       State  `json:"state"`
	Default     bool   `json:"default"`
	Location    string `json:"location"`
	DefaultUser string `json:"default_user"`
	// Systemd says the distro boots with its own systemd as PID 1 (from its
	// next start when changed while it runs).
	Systemd   bool      `json:"systemd,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// DiskBytes is the space the distro's files take, measured every minute
	// (a version 2 image: its allocated blocks).
	DiskBytes int64 `json:"disk_bytes"`
	// DiskMaxBytes is a version 2 distro's disk size (its image's apparent
	// size); 0 for version 1.
	DiskMaxBytes int64 `json:"disk_max_bytes,omitempty"`
	// DiskFreeBytes is the free space in a version 2 distro's file system;
	// 0 when it cannot be told.
	DiskFreeBytes int64 `json:"disk_free_bytes,omitempty"`
	// MemoryBytes and CPUPercent are the latest sample of a running distro's use.
	MemoryBytes int64   `json:"memory_bytes"`
	CPUPercent  float64 `json:"cpu_percent"`
	// MemoryMax (bytes), CPUMax (cores) and PidsMax are the distro's
	// limits, 0 for none.
	MemoryMax int64   `json:"memory_max,omitempty"`
	CPUMax    float64 `json:"cpu_max,omitempty"`
	PidsMax   int64   `json:"pids_max,omitempty"`
	// Pids is the running distro's processes and threads (its cgroup's
	// pids.current), latest sample.
	Pids int64 `json:"pids,omitempty"`
	// OOMKills counts the processes the OOM killer ended in the running
	// distro since it started; LastOOMAt is when the latest was seen
	// (zero when it was before this server started).
	OOMKills  int64     `json:"oom_kills,omitempty"`
	LastOOMAt time.Time `json:"last_oom_at,omitzero"`
	// AgentOutdated says the running distro's agent speaks another protocol
	// version than this server (it was started by an older or newer subsys);
	// the distro keeps running, and gets this server's agent at its next start.
	AgentOutdated bool `json:"agent_outdated,omitempty"`
	// Message says, for people, what needs attention (why AgentOutdated is set
	// and what to do); empty when nothing does.
	Message string `json:"message,omitempty"`
}

// sortDistros orders distros by name, as List does.
func sortDistros(ds []Distro) {
	sort.Slice(ds, func(i, j int) bool { return strings.ToLower(ds[i].Name) < strings.ToLower(ds[j].Name) })
}

// BusyError is returned (wrapping ErrBusy) when a distro is held by another operation.
type BusyError struct {
	Distro string
	Op     OperationInfo
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("distro %q is busy: operation %s (%s) is running", e.Distro, e.Op.ID, e.Op.Kind)
}

// Unwrap makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Unwrap() error { return ErrBusy }
