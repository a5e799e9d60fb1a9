package hcs

import (
	"context"
	"errors"
	"io"
	"net"
)

// Driver is everything the Backend asks of Windows: the Host Compute
// Service's compute systems, VHDX files and hvsocket. It speaks in HCS
// JSON documents (built and parsed by this package in plain Go), so the
// Windows implementation (driver_windows.go) only passes them on, and a
// fake runs the Backend's state machine in Linux tests.
type Driver interface {
	// Preflight says why this host cannot run the VM (old Windows, no
	// Virtual Machine Platform), or nil.
	Preflight() error
	// Create creates (not starts) compute system id from document doc.
	Create(ctx context.Context, id string, doc []byte) (System, error)
	// Open opens existing compute system id; ErrNoSystem when there is none.
	Open(ctx context.Context, id string) (System, error)
	// List enumerates the compute systems that query (systemQuery JSON)
	// selects.
	List(ctx context.Context, query []byte) ([]SystemInfo, error)
	// CreateVHDX creates a dynamic VHDX of size bytes at path; path must not
	// exist.
	CreateVHDX(ctx context.Context, path string, size int64) error
	// ResizeVHDX grows the VHDX at path (not attached) to size bytes.
	ResizeVHDX(ctx context.Context, path string, size int64) error
	// GrantVMAccess lets the VM of compute system id open path.
	GrantVMAccess(ctx context.Context, id, path string) error
	// DialAgent connects to the AF_VSOCK port of the VM whose runtime id
	// is runtimeID (hvsocket).
	DialAgent(ctx context.Context, runtimeID string, port uint32) (net.Conn, error)
	// OpenConsole connects to the named pipe that the VM's COM1 writes to.
	OpenConsole(ctx context.Context, pipe string) (io.ReadCloser, error)
}

// System is a handle on one compute system.
type System interface {
	// Start boots it.
	Start(ctx context.Context) error
	// Modify applies a modifySettingRequest document.
	Modify(ctx context.Context, req []byte) error
	// Properties answers a propertyQuery document with a properties
	// document.
	Properties(ctx context.Context, query []byte) ([]byte, error)
	// Shutdown asks the guest to shut down (it may ignore it: the caller
	// bounds ctx and terminates).
	Shutdown(ctx context.Context) error
	// Terminate stops it at once.
	Terminate(ctx context.Context) error
	// Wait returns nil once the system has stopped, or ctx's error.
	Wait(ctx context.Context) error
	// Close drops the handle; the system keeps running.
	Close() error
}

// SystemInfo is one compute system as List reports it.
type SystemInfo struct {
	ID        string `json:"Id"`
	Owner     string `json:"Owner"`
	State     string `json:"State"`
	RuntimeID string `json:"RuntimeId"`
}

// ErrNoSystem is returned by Driver.Open when the compute system does not
// exist.
var ErrNoSystem = errors.New("hcs: no such compute system")
