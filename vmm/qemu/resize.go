package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// ResizeDisk implements vmm.DiskManager. A running distro's disk grows
// online: QMP block_resize, then the VM's agent grows ext4 in place. A
// stopped distro's disk is attached, unmounted, and the agent checks and
// resizes its file system (e2fsck, resize2fs, in the VM): the file is
// extended before a grow and truncated after a shrink, so the file system
// never extends past its file. progress counts the steps.
func (b *Backend) ResizeDisk(ctx context.Context, s vmm.Spec, size int64, progress func(done, total int64)) (agent.DiskInfo, error) {
	st, err := os.Stat(s.Disk)
	if err != nil {
		return agent.DiskInfo{}, fmt.Errorf("resize %s: %w", s.Name, err)
	}
	orig := st.Size()
	if v, ac, target, ok := b.runningDisk(s); ok {
		if size < orig {
			return agent.DiskInfo{}, fmt.Errorf("%w: %s runs, and a running distro's disk only grows; stop it with `subsys terminate %s` to shrink it", vmm.ErrBusy, s.Name, s.Name)
		}
		progress(0, 2)
		if size > orig {
			if err := v.ResizeBlock(ctx, target, size); err != nil {
				return agent.DiskInfo{}, fmt.Errorf("resize %s: %w", s.Name, err)
			}
		}
		progress(1, 2)
		info, err := ac.Disk(ctx, agent.DiskRequest{ID: s.ID, DiskTarget: target, Action: agent.DiskGrow, Size: size})
		if err != nil {
			return info, fmt.Errorf("resize %s: grow its file system: %w", s.Name, err)
		}
		progress(2, 2)
		return info, nil
	}
	progress(0, 3)
	if size > orig {
		// A longer file is harmless to the file system in it: grown first,
		// so resize2fs finds the room.
		if err := os.Truncate(s.Disk, size); err != nil {
			return agent.DiskInfo{}, fmt.Errorf("resize %s: extend the image: %w", s.Name, err)
		}
	}
	var info agent.DiskInfo
	err = b.withStoppedDisk(ctx, s, "resize", func(ac *agent.Client, target int) error {
		progress(1, 3)
		var err error
		info, err = ac.Disk(ctx, agent.DiskRequest{ID: s.ID, DiskTarget: target, Action: agent.DiskResize, Size: size})
		return err
	})
	if err != nil {
		if size > orig && fsFits(s.Disk, orig) {
			// The file system was not grown: the image is as it was.
			os.Truncate(s.Disk, orig)
		}
		if errors.Is(err, agent.ErrDiskTooSmall) {
			return info, fmt.Errorf("%w: %s's disk cannot shrink to %d bytes: %w", vmm.ErrInvalid, s.Name, size, err)
		}
		return info, fmt.Errorf("resize %s: %w", s.Name, err)
	}
	progress(2, 3)
	if size < orig {
		// The file system ends within size now: cut the file to it.
		if !fsFits(s.Disk, size) {
			return info, fmt.Errorf("resize %s: the file system does not end within %d bytes after resize2fs; the image is left at %d", s.Name, size, orig)
		}
		if err := os.Truncate(s.Disk, size); err != nil {
			return info, fmt.Errorf("resize %s: truncate the image: %w", s.Name, err)
		}
	}
	progress(3, 3)
	return info, nil
}

// fsFits says whether the file system in image path ends within size bytes,
// by its superblock (read with disk.ParseSuperblock, plain Go).
func fsFits(path string, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, disk.SuperblockOffset+disk.SuperblockSize)
	if _, err := io.ReadFull(f, buf); err != nil {
		return false
	}
	sb, err := disk.ParseSuperblock(buf)
	return err == nil && sb.FitsIn(size) == nil
}

// CompactDisk implements vmm.DiskManager: the VM's agent discards the file
// system's free blocks (FITRIM), on the running distro's mount or on the
// stopped distro's disk attached and mounted for it, and QEMU's
// discard=unmap punches them out of the image.
func (b *Backend) CompactDisk(ctx context.Context, s vmm.Spec) (agent.DiskInfo, error) {
	if _, ac, target, ok := b.runningDisk(s); ok {
		info, err := ac.Disk(ctx, agent.DiskRequest{ID: s.ID, DiskTarget: target, Action: agent.DiskTrim})
		if err != nil {
			return info, fmt.Errorf("compact %s: %w", s.Name, err)
		}
		return info, nil
	}
	var info agent.DiskInfo
	err := b.withStoppedDisk(ctx, s, "compact", func(ac *agent.Client, target int) error {
		var err error
		info, err = ac.Disk(ctx, agent.DiskRequest{ID: s.ID, DiskTarget: target, Action: agent.DiskTrim})
		return err
	})
	if err != nil {
		return info, fmt.Errorf("compact %s: %w", s.Name, err)
	}
	return info, nil
}

// DiskStat implements vmm.DiskManager: a running distro's file system as
// its guest sees it; vmm.ErrNotRunning when it does not run.
func (b *Backend) DiskStat(ctx context.Context, s vmm.Spec) (agent.DiskInfo, error) {
	_, ac, target, ok := b.runningDisk(s)
	if !ok {
		return agent.DiskInfo{}, vmm.ErrNotRunning
	}
	return ac.Disk(ctx, agent.DiskRequest{ID: s.ID, DiskTarget: target, Action: agent.DiskStat})
}

// runningDisk returns the VM, its agent and the disk target of distro s
// when it runs in the VM.
func (b *Backend) runningDisk(s vmm.Spec) (*VM, *agent.Client, int, bool) {
	v, ac := b.vmClient()
	if v == nil {
		return nil, nil, 0, false
	}
	b.mu.Lock()
	target, ok := b.targets[s.ID]
	b.mu.Unlock()
	return v, ac, target, ok
}

// withStoppedDisk boots the VM if need be, attaches stopped distro s's
// disk read-write (not mounted: the agent decides), runs f with the agent
// and the disk's target, and detaches it. The Manager keeps the distro
// from starting meanwhile.
func (b *Backend) withStoppedDisk(ctx context.Context, s vmm.Spec, what string, f func(ac *agent.Client, target int) error) error {
	v, ac, err := b.ensureVM(ctx)
	if err != nil {
		return err
	}
	b.holdIdle()
	defer b.releaseIdle()
	key := what + ":" + s.ID
	target, err := b.takeTarget(key)
	if err != nil {
		return err
	}
	defer b.dropTarget(key, target)
	if err := v.AttachDisk(ctx, Disk{Target: target, Path: s.Disk}); err != nil {
		return fmt.Errorf("attach the disk of %s: %w", s.Name, err)
	}
	ferr := f(ac, target)
	if err := v.DetachDisk(context.WithoutCancel(ctx), target); err != nil && ferr == nil {
		return fmt.Errorf("detach the disk of %s: %w", s.Name, err)
	}
	return ferr
}
