package vmm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Operation kinds.
const (
	KindImport     = "import"
	KindExport     = "export"
	KindClone      = "clone"
	KindUnregister = "unregister"
	// KindSetVersion converts a distro between versions 1 and 2 (SetVersion).
	KindSetVersion = "set-version"
	// KindResize changes a version 2 distro's disk size (Resize).
	KindResize = "resize"
	// KindCompact gives a version 2 distro's free blocks back to the host
	// (Compact).
	KindCompact = "compact"
	// KindMove moves a stopped distro's files to another directory (Move).
	KindMove = "move"
)

// Operation statuses.
const (
	StatusRunning = "running"
	StatusSuccess = "success"
	StatusFailure = "failure"
)

// Progress counts work done out of a total; Total 0 means unknown.
type Progress struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// OperationInfo is a snapshot of an operation, as the API returns it.
type OperationInfo struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Distro    string    `json:"distro"`
	Status    string    `json:"status"`
	Progress  Progress  `json:"progress"`
	Error     string    `json:"error"`
	CreatedAt time.Time `json:"created_at"`
	// Message says what the operation is doing, for people, when its
	// progress alone does not ("layer 2 of 5" of an image pull); "" when
	// there is nothing to say.
	Message string `json:"message,omitempty"`
	// Result says what an import or clone made, once it has ended (also when
	// it failed, as far as it got); nil for other kinds. It is kept in memory
	// only: an operation read back after a server restart has none. Snapshots
	// share it: read it, never change it.
	Result *OperationResult `json:"result,omitempty"`
}

// OperationResult is what an import or clone read from its archive.
type OperationResult struct {
	// Entries counts the archive's entries; Bytes the file data written, as
	// allocated on disk (a sparse file's holes are not counted).
	Entries int   `json:"entries"`
	Bytes   int64 `json:"bytes"`
	// SkippedDevices counts character and block device nodes not created:
	// those outside /dev (which would let a host user reach a device through
	// the distro's tree), and any the server could not create (not as root).
	// A distro's /dev is a fresh mount at start, so this is usually no loss.
	SkippedDevices int `json:"skipped_devices"`
	// Warnings are problems that did not fail the operation, for people.
	Warnings []string `json:"warnings,omitempty"`
}

// Operation is a long-running piece of work with live progress. Its owner calls
// finish exactly once; everyone else reads snapshots with Info and waits with Done.
type Operation struct {
	id, kind, distro string
	created          time.Time
	done, total      atomic.Int64
	cancel           context.CancelFunc
	// cancelled is closed when a client cancels the operation.
	cancelled  chan struct{}
	cancelOnce sync.Once
	finished   chan struct{}
	// bodyDone is closed once an import has stopped reading its uploaded body.
	bodyDone chan struct{}
	// exclusive: the operation keeps its distro stopped (beginExclusive).
	// Set before the operation is shared, never changed.
	exclusive bool

	mu      sync.Mutex
	status  string
	err     string
	cause   error
	result  *OperationResult
	message string
}

func newOperation(id, kind, distro string, cancel context.CancelFunc) *Operation {
	return &Operation{id: id, kind: kind, distro: distro, created: time.Now().UTC(), cancel: cancel,
		cancelled: make(chan struct{}), finished: make(chan struct{}), status: StatusRunning}
}

// Cancelled is closed when a client cancels the operation. Whoever feeds it
// input (an upload) must then stop waiting on that input: a stalled upload
// would otherwise keep a cancelled import blocked in a read, never seeing its
// context end.
func (o *Operation) Cancelled() <-chan struct{} { return o.cancelled }

// requestCancel cancels the operation on a client's behalf.
func (o *Operation) requestCancel() {
	o.cancelOnce.Do(func() { close(o.cancelled) })
	o.cancel()
}

// ID returns the operation's id.
func (o *Operation) ID() string { return o.id }

// Done is closed when the operation has ended.
func (o *Operation) Done() <-chan struct{} { return o.finished }

// BodyDone is closed once an import has stopped reading the uploaded body; nil
// for operations without one.
func (o *Operation) BodyDone() <-chan struct{} { return o.bodyDone }

// Err returns the error the operation ended with, nil while it runs or when it succeeded.
func (o *Operation) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cause
}

// Info returns a snapshot.
func (o *Operation) Info() OperationInfo {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.infoLocked()
}

func (o *Operation) infoLocked() OperationInfo {
	info := OperationInfo{ID: o.id, Kind: o.kind, Distro: o.distro, Status: o.status,
		Progress: Progress{Done: o.done.Load(), Total: o.total.Load()}, Error: o.err, CreatedAt: o.created, Message: o.message}
	// Shared, not copied: a result is never changed once set, and snapshots
	// stay comparable with == (the event stream sends only changes).
	info.Result = o.result
	return info
}

// setResult records what the operation made; Info shows it from then on. r
// must not be changed afterwards.
func (o *Operation) setResult(r OperationResult) {
	o.mu.Lock()
	o.result = &r
	o.mu.Unlock()
}

// setMessage says what the operation is doing (OperationInfo.Message).
func (o *Operation) setMessage(m string) {
	o.mu.Lock()
	o.message = m
	o.mu.Unlock()
}

// final returns the snapshot the operation will show once it has ended with
// err, without ending it: the manager saves it before it lets go of the
// distro, and only then calls finish.
func (o *Operation) final(err error) OperationInfo {
	err = o.explain(err)
	o.mu.Lock()
	info := o.infoLocked()
	o.mu.Unlock()
	if err != nil {
		info.Status, info.Error = StatusFailure, err.Error()
	} else {
		info.Status = StatusSuccess
		if info.Progress.Total > 0 {
			info.Progress.Done = info.Progress.Total
		}
	}
	return info
}

// explain says a failure of a cancelled operation is the cancel: what failed
// then (a read cut short to stop a stalled upload, say) is its consequence.
func (o *Operation) explain(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	select {
	case <-o.cancelled:
		return fmt.Errorf("%s %s: %w", o.kind, o.distro, context.Canceled)
	default:
		return err
	}
}

// finish ends the operation with err: from now on Info shows the result and
// Done is closed. The manager calls it last, once the distro's lock is
// released and the record saved, so a client told the operation ended can
// act on the distro at once.
func (o *Operation) finish(err error) {
	err = o.explain(err)
	o.mu.Lock()
	if err != nil {
		o.status, o.err, o.cause = StatusFailure, err.Error(), err
	} else {
		o.status = StatusSuccess
		if t := o.total.Load(); t > 0 {
			o.done.Store(t)
		}
	}
	o.mu.Unlock()
	o.cancel()
	close(o.finished)
}

// countingReader adds every byte read to an operation's progress, and stops
// reading once the operation is cancelled (so a cancel takes effect at the next
// read even in the middle of one large archive entry).
type countingReader struct {
	ctx context.Context
	r   interface{ Read([]byte) (int, error) }
	op  *Operation
	// uncounted: the source reports progress itself (ImportRequest.watch).
	uncounted bool
}

func (c countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if !c.uncounted {
		c.op.done.Add(int64(n))
	}
	return n, err
}
