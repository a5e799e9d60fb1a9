package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// These are the utility VM's ops (version 2): they work on the VM's agent
// (RunVM), and a distro's agent answers them with errors.ErrUnsupported.

// StartDistro mounts the distro's disk, which the host has hot-plugged at
// virtio-scsi target req.DiskTarget, and starts the distro's agent on it in
// new namespaces; it returns once that agent answers. A distro already
// running is no error. ctx bounds the wait for the disk to appear and the
// start.
func (c *Client) StartDistro(ctx context.Context, req DistroRequest) error {
	return c.simple(ctx, distroRequest(opStartDistro, req))
}

// StopDistro asks the distro's agent to shut down, waits for it to exit,
// syncs and unmounts its disk, and returns once the disk is free for the host
// to unplug. A distro that is not running is no error.
func (c *Client) StopDistro(ctx context.Context, id string) error {
	return c.simple(ctx, request{Op: opStopDistro, ID: id})
}

// Distros returns the ids of the running distros, sorted.
func (c *Client) Distros(ctx context.Context) ([]string, error) {
	st, _, rep, err := c.roundTrip(ctx, request{Op: opListDistros})
	if err != nil {
		return nil, err
	}
	st.Close()
	return rep.Distros, nil
}

// PowerOff stops every distro as StopDistro does, syncs, and powers the VM
// off. It returns once the agent has said it will; the VM (and with it the
// connection) ends right after.
func (c *Client) PowerOff(ctx context.Context) error {
	return c.simple(ctx, request{Op: opPowerOff})
}

// simple sends req and waits for its reply, for ops with nothing after it.
// Closing our half tells the agent the reply arrived (PowerOff waits for it).
func (c *Client) simple(ctx context.Context, req request) error {
	st, _, _, err := c.roundTrip(ctx, req)
	if err != nil {
		return err
	}
	st.Close()
	return nil
}

func distroRequest(op string, req DistroRequest) request {
	return request{Op: op, ID: req.ID, Hostname: req.Hostname, DiskTarget: req.DiskTarget, ReadOnly: req.ReadOnly, Limits: req.Limits, Systemd: req.Systemd}
}

// OpenDistro returns a connection to the running distro's agent, through the
// VM's agent: NewClient on it gives a full client of that distro (exec,
// terminal sessions, hello, shutdown). Closing it ends that connection only.
// The error is ErrDistroNotRunning (wrapped) when the distro is not running.
// ctx bounds the open only.
func (c *Client) OpenDistro(ctx context.Context, id string) (net.Conn, error) {
	st, br, _, err := c.roundTrip(ctx, request{Op: opOpenDistro, ID: id})
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Stream: st, br: br}, nil
}

// bufferedConn is a stream whose reply header was read through br: reads go
// through br, so bytes it buffered past the header are not lost.
type bufferedConn struct {
	*yamux.Stream
	br *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// ExportTree streams a tar archive of the distro's root file system in format
// (as vmm/archive names it: "tar", "tar.gz", "tar.zst"…). A running distro's
// mounted root is archived as it is; a stopped one's disk, hot-plugged at
// req.DiskTarget, is mounted read-only for the export. A failure while the
// archive is made reaches Read as an error, never as a short archive. ctx
// bounds the start only; Close stops the export.
func (c *Client) ExportTree(ctx context.Context, req DistroRequest, format string) (io.ReadCloser, error) {
	r := distroRequest(opExportTree, req)
	r.Format = format
	st, br, _, err := c.roundTrip(ctx, r)
	if err != nil {
		return nil, err
	}
	return &dataReader{op: opExportTree, st: st, br: br, buf: make([]byte, dataChunk)}, nil
}

// dataReader reads a data stream: data frames, then a data-end frame.
type dataReader struct {
	op   string // the request's op, for errors
	st   *yamux.Stream
	br   *bufio.Reader
	mu   sync.Mutex
	buf  []byte // the frame buffer
	rest []byte // data of the current frame not yet read
	err  error  // sticky: io.EOF after the end frame, or the failure
}

// Read returns the archive's bytes, then io.EOF after a clean end, or the
// agent's error (a *RemoteError) or ErrDisconnected (wrapped) otherwise.
func (d *dataReader) Read(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.rest) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.err = d.next()
	}
	n := copy(p, d.rest)
	d.rest = d.rest[n:]
	return n, nil
}

// next reads one frame: data goes to rest; an end is the sticky error.
func (d *dataReader) next() error {
	t, payload, err := readFrame(d.br, d.buf)
	if err != nil {
		if !errors.Is(err, ErrProtocol) {
			err = fmt.Errorf("%w: %v", ErrDisconnected, err)
		}
		return fmt.Errorf("agent %s: %w", d.op, err)
	}
	switch t {
	case frameData:
		d.rest = payload
		return nil
	case frameDataEnd:
		var end dataEnd
		if err := json.Unmarshal(payload, &end); err != nil {
			return fmt.Errorf("agent %s: %w: bad end frame: %v", d.op, ErrProtocol, err)
		}
		if end.Error != nil {
			return &RemoteError{Op: d.op, Code: end.Error.Code, Message: end.Error.Message}
		}
		return io.EOF
	}
	return nil // a newer agent's frame
}

// Close stops reading: the agent sees the stream end and stops the export.
func (d *dataReader) Close() error {
	d.st.Close()
	// Wake a Read blocked in the frame reader; it returns an error.
	d.st.SetReadDeadline(time.Unix(1, 0))
	return nil
}

// What Client.HostFiles asks the VM's agent to do.
const (
	// HostFilesReport only reports the transport.
	HostFilesReport = ""
	// HostFilesTrim has the VM forget the host files it holds in its
	// dentry and inode caches, so virtiofsd can close the descriptor it
	// keeps for each (the host asks when virtiofsd nears its limit).
	HostFilesTrim = "trim"
	// HostFilesAbort says virtiofsd is gone: the agent detaches the dead
	// virtio-fs mount and mounts the host's files over 9p in its place,
	// which every distro's /mnt/host follows, running ones too. A process
	// that was waiting on virtio-fs then stays blocked until killed.
	HostFilesAbort = "abort"
)

// HostFiles does action (HostFilesReport, HostFilesTrim, HostFilesAbort)
// and returns how the host's files are mounted in the VM afterwards:
// "virtio-fs", "9p", or "" (no distro has started yet, or no share).
func (c *Client) HostFiles(ctx context.Context, action string) (string, error) {
	st, _, rep, err := c.roundTrip(ctx, request{Op: opHostFiles, Action: action})
	if err != nil {
		return "", err
	}
	st.Close()
	return rep.HostFiles, nil
}

// Memory reports the utility VM's memory. With reclaim, it first drops the
// VM's page cache and compacts its memory, and also returns what that
// dropped; the balloon's free page reporting then hands the pages to the
// host. With mode non-empty, it first sets the idle reclaim mode (ReclaimGradual,
// ReclaimDropCache, ReclaimDisabled).
func (c *Client) Memory(ctx context.Context, reclaim bool, mode string) (MemoryInfo, int64, error) {
	req := request{Op: opMemory, Mode: mode}
	switch {
	case reclaim:
		req.Action = "reclaim"
	case mode != "":
		req.Action = "set-mode"
	}
	st, _, rep, err := c.roundTrip(ctx, req)
	if err != nil {
		return MemoryInfo{}, 0, err
	}
	st.Close()
	if rep.Memory == nil {
		return MemoryInfo{}, 0, fmt.Errorf("agent memory: %w: no memory in the answer", ErrProtocol)
	}
	return *rep.Memory, rep.Reclaimed, nil
}
