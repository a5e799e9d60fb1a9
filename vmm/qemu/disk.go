package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxDiskTarget is the highest SCSI target id AttachDisk accepts: a
// virtio-scsi controller has targets 0–255.
const MaxDiskTarget = 255

// Disk is an image file to hot-plug into the VM.
type Disk struct {
	// Target is the SCSI target id on the controller (0–MaxDiskTarget),
	// LUN 0. The guest finds the disk by it (sysfs H:0:Target:0).
	Target int
	// Path is the raw image on the host.
	Path string
	// ReadOnly attaches it read-only.
	ReadOnly bool
}

func nodeName(target int) string { return "disk" + strconv.Itoa(target) }
func deviceID(target int) string { return "sd" + strconv.Itoa(target) }

// AttachDisk hot-plugs d as a scsi-hd on the virtio-scsi controller: the raw
// image through a block node (discard passed down, so space the guest's ext4
// frees goes back to the sparse file), then the device. QEMU takes a lock on
// the file, so the same image cannot be attached twice.
func (v *VM) AttachDisk(ctx context.Context, d Disk) error {
	if d.Target < 0 || d.Target > MaxDiskTarget {
		return fmt.Errorf("qemu: attach disk: target %d is out of range 0–%d", d.Target, MaxDiskTarget)
	}
	node := nodeName(d.Target)
	blk := map[string]any{
		"driver":        "raw",
		"node-name":     node,
		"discard":       "unmap",
		"read-only":     d.ReadOnly,
		"detect-zeroes": "unmap",
		"file": map[string]any{
			"driver":    "file",
			"filename":  d.Path,
			"read-only": d.ReadOnly,
			"discard":   "unmap",
		},
	}
	if d.ReadOnly {
		// detect-zeroes=unmap needs discard on a writable node.
		delete(blk, "detect-zeroes")
	}
	if err := v.Execute(ctx, "blockdev-add", blk, nil); err != nil {
		return fmt.Errorf("qemu: attach %s: %w", d.Path, err)
	}
	dev := map[string]any{
		"driver":  "scsi-hd",
		"id":      deviceID(d.Target),
		"bus":     SCSIBus,
		"scsi-id": d.Target,
		"lun":     0,
		"drive":   node,
	}
	if err := v.Execute(ctx, "device_add", dev, nil); err != nil {
		// Without the device the node is useless: take it back.
		v.Execute(context.WithoutCancel(ctx), "blockdev-del", map[string]any{"node-name": node}, nil)
		return fmt.Errorf("qemu: attach %s: %w", d.Path, err)
	}
	return nil
}

// DetachDisk unplugs the disk at target and closes its image. The guest must
// have unmounted it: device_del asks the guest, and QEMU removes the device
// when the guest has let go (the DEVICE_DELETED event). Detaching a target
// with no disk is not an error.
func (v *VM) DetachDisk(ctx context.Context, target int) error {
	id := deviceID(target)
	w := v.events.expect(func(ev Event) bool {
		if ev.Event != "DEVICE_DELETED" {
			return false
		}
		var data struct {
			Device string `json:"device"`
		}
		return json.Unmarshal(ev.Data, &data) == nil && data.Device == id
	})
	err := v.Execute(ctx, "device_del", map[string]any{"id": id}, nil)
	var qe *QMPError
	switch {
	case errors.As(err, &qe) && qe.Class == "DeviceNotFound":
		v.events.cancel(w)
	case err != nil:
		v.events.cancel(w)
		return fmt.Errorf("qemu: detach disk %d: %w", target, err)
	default:
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := v.events.wait(wctx, w)
		cancel()
		if err != nil {
			return fmt.Errorf("qemu: detach disk %d: waiting for the guest to release it: %w", target, err)
		}
	}
	err = v.Execute(ctx, "blockdev-del", map[string]any{"node-name": nodeName(target)}, nil)
	// "Failed to find node" is a disk that was never attached, or is gone.
	if err != nil && !(errors.As(err, &qe) && strings.Contains(qe.Desc, "Failed to find")) {
		return fmt.Errorf("qemu: detach disk %d: %w", target, err)
	}
	return nil
}

// AttachedDisks returns the targets of the disks the VM has, by asking QEMU
// for its block nodes named as AttachDisk names them (an adopted VM's disks).
func (v *VM) AttachedDisks(ctx context.Context) (map[int]string, error) {
	var nodes []struct {
		NodeName string `json:"node-name"`
		File     string `json:"file"`
	}
	if err := v.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes); err != nil {
		return nil, fmt.Errorf("qemu: list disks: %w", err)
	}
	out := map[int]string{}
	for _, n := range nodes {
		var t int
		if _, err := fmt.Sscanf(n.NodeName, "disk%d", &t); err == nil && nodeName(t) == n.NodeName {
			out[t] = n.File
		}
	}
	return out, nil
}

// ResizeBlock grows the disk at target to size bytes while the guest uses
// it (QMP block_resize): QEMU extends the image file, sparse, and the guest
// sees the new capacity at its next rescan.
func (v *VM) ResizeBlock(ctx context.Context, target int, size int64) error {
	if err := v.Execute(ctx, "block_resize", map[string]any{"node-name": nodeName(target), "size": size}, nil); err != nil {
		return fmt.Errorf("qemu: resize disk %d to %d: %w", target, size, err)
	}
	return nil
}
