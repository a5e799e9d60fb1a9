package agent

import (
	"context"
	"errors"
	"fmt"
)

// Disk actions of the utility VM's agent (op "disk"), on a version 2
// distro's disk: the VM is where a guest-written file system is parsed, so
// every check, resize and trim of one happens here, never on the host.
const (
	// DiskStat reports a running distro's file system (statfs).
	DiskStat = "stat"
	// DiskTrim discards the file system's free blocks (FITRIM), so that the
	// host's sparse image gives them back: on the running distro's mount,
	// or, for a stopped distro, on its disk mounted for the purpose.
	DiskTrim = "trim"
	// DiskGrow grows a running distro's file system online to its device's
	// new size, after the host has grown the device (QMP block_resize).
	DiskGrow = "grow"
	// DiskResize checks (e2fsck -f -p) and resizes (resize2fs) a stopped
	// distro's file system, attached but not mounted, to DiskRequest.Size.
	DiskResize = "resize"
)

// DiskRequest asks the VM's agent to work on a distro's disk.
type DiskRequest struct {
	// ID is the distro's id; DiskTarget the SCSI target of its disk.
	ID         string
	DiskTarget int
	// Action is one of the Disk* constants.
	Action string
	// Size is, for DiskGrow and DiskResize, the file system's new size in
	// bytes: the device's size for DiskGrow, at most it for DiskResize.
	Size int64
}

// DiskInfo is what the VM's agent reports of a distro's file system.
type DiskInfo struct {
	// SizeBytes is the file system's size; FreeBytes its free blocks, and
	// AvailableBytes those a user other than root may use (df's Avail).
	SizeBytes      int64 `json:"size_bytes"`
	FreeBytes      int64 `json:"free_bytes"`
	AvailableBytes int64 `json:"available_bytes"`
	// TrimmedBytes is what DiskTrim discarded (what FITRIM reports: the
	// free extents it passed down, not all of them newly freed).
	TrimmedBytes int64 `json:"trimmed_bytes,omitempty"`
	// MinBytes is, after DiskResize, the smallest size resize2fs could
	// make the file system (resize2fs -P).
	MinBytes int64 `json:"min_bytes,omitempty"`
}

// ErrDiskTooSmall is returned (across the connection too) by DiskResize
// when the distro's files do not fit in the size asked for; the message
// names the minimum.
var ErrDiskTooSmall = errors.New("disk too small")

// codeDiskTooSmall is ErrDiskTooSmall on the wire.
const codeDiskTooSmall = "disk_too_small"

// Disk does a disk action on a distro's disk in the VM (see the Disk*
// constants) and reports its file system. A resize can take minutes on a
// large disk: ctx bounds it.
func (c *Client) Disk(ctx context.Context, req DiskRequest) (DiskInfo, error) {
	st, _, rep, err := c.roundTrip(ctx, request{Op: opDisk, ID: req.ID, DiskTarget: req.DiskTarget, Action: req.Action, Size: req.Size})
	if err != nil {
		return DiskInfo{}, err
	}
	st.Close()
	if rep.Disk == nil {
		return DiskInfo{}, fmt.Errorf("agent disk: %w: no disk in the answer", ErrProtocol)
	}
	return *rep.Disk, nil
}
