package api

import (
	"fmt"
	"time"
)

// Operation kinds.
const (
	KindImport     = "import"
	KindExport     = "export"
	KindClone      = "clone"
	KindUnregister = "unregister"
	// KindSetVersion converts a distro between version 1 and 2
	// (POST /distros/{name}/set-version).
	KindSetVersion = "set-version"
	// KindResize changes a version 2 distro's disk size
	// (POST /distros/{name}/resize).
	KindResize = "resize"
	// KindCompact gives a version 2 distro's free blocks back to the host
	// (POST /distros/{name}/compact).
	KindCompact = "compact"
	// KindMove moves a stopped distro's files to another directory
	// (POST /distros/{name}/move).
	KindMove = "move"
)

// Operation statuses: running until it ends in success or failure.
const (
	StatusRunning = "running"
	StatusSuccess = "success"
	StatusFailure = "failure"
)

// Operation is long work (import, clone, export…) as the API reports it: the
// 202 reply that starts it, GET and DELETE /operations/{id}, and the
// `operation` event.
type Operation struct {
	// ID names the operation: GET and DELETE /operations/{id}.
	ID string `json:"id"`
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Distro names the distro the operation works on.
	Distro string `json:"distro"`
	// Status is StatusRunning, StatusSuccess or StatusFailure.
	Status string `json:"status"`
	// Progress counts the work done so far.
	Progress Progress `json:"progress"`
	// Error says why a failed operation failed.
	Error string `json:"error"`
	// CreatedAt is when the operation started.
	CreatedAt time.Time `json:"created_at"`
	// Result says what an import or clone made, once it has ended; nil for
	// other kinds and for operations of an earlier server run.
	Result *OperationResult `json:"result,omitempty"`
	// Message says what the operation is doing when progress alone does
	// not ("layer 2 of 5" of an install from an image); untrusted text.
	Message string `json:"message,omitempty"`
}

// Done reports whether the operation has ended, in success or failure.
func (o Operation) Done() bool { return o.Status != StatusRunning }

// Err returns nil for a successful or running operation and an
// *OperationError for a failed one.
func (o Operation) Err() error {
	if o.Status == StatusFailure {
		return &OperationError{Operation: o}
	}
	return nil
}

// Progress counts work done out of a total; Total 0 means unknown.
type Progress struct {
	// Done and Total are bytes for imports, exports and clones.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// OperationResult is what an import or clone read from its archive.
type OperationResult struct {
	// Entries counts the archive's entries; Bytes the file data written, as
	// allocated on disk.
	Entries int   `json:"entries"`
	Bytes   int64 `json:"bytes"`
	// SkippedDevices counts device nodes not created (outside /dev, or not
	// permitted on the server).
	SkippedDevices int `json:"skipped_devices"`
	// Warnings are problems that did not fail the operation, for people.
	Warnings []string `json:"warnings,omitempty"`
}

// OperationError is a failed operation as a Go error.
type OperationError struct {
	// Operation is the failed operation, as the server last reported it.
	Operation Operation
}

// Error says which operation failed on which distro, and why. Kind, distro
// and message are the server's words: escape them before printing them on a
// terminal.
func (e *OperationError) Error() string {
	return fmt.Sprintf("%s %s failed: %s", e.Operation.Kind, e.Operation.Distro, e.Operation.Error)
}
