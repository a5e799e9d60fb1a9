package hcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// ResizeDisk implements vmm.DiskManager. A VHDX grows while it is not
// attached: the stopped distro's disk is resized (ResizeVirtualDisk), then
// attached, and the VM's agent checks and grows its file system (e2fsck,
// resize2fs), then it is detached. A running distro's disk is not
// resized (ErrBusy: stop it first), and a VHDX does not shrink here
// (ErrInvalid).
func (b *Backend) ResizeDisk(ctx context.Context, s vmm.Spec, size int64, progress func(done, total int64)) (agent.DiskInfo, error) {
	if _, _, _, ok := b.runningDisk(s); ok {
		return agent.DiskInfo{}, fmt.Errorf("%w: %s runs, and its disk is resized while it is stopped here; stop it with `subsys terminate %s`", vmm.ErrBusy, s.Name, s.Name)
	}
	cur, err := b.virtualSize(s.Disk)
	if err != nil {
		return agent.DiskInfo{}, fmt.Errorf("resize %s: %w", s.Name, err)
	}
	if size < cur {
		return agent.DiskInfo{}, fmt.Errorf("%w: %s's disk is %d bytes and a VHDX only grows here", vmm.ErrInvalid, s.Name, cur)
	}
	progress(0, 3)
	if size > cur {
		if err := b.drv.ResizeVHDX(ctx, s.Disk, size); err != nil {
			return agent.DiskInfo{}, fmt.Errorf("resize %s: grow the VHDX: %w", s.Name, err)
		}
	}
	progress(1, 3)
	var info agent.DiskInfo
	err = b.withStoppedDisk(ctx, s, "resize", func(ac *agent.Client, target int) error {
		var err error
		info, err = ac.Disk(ctx, agent.DiskRequest{ID: s.ID, DiskTarget: target, Action: agent.DiskResize, Size: size})
		if err == nil {
			progress(2, 3)
		}
		return err
	})
	if err != nil {
		// The VHDX is larger than its file system: harmless, and a
		// resize asked again finishes the job.
		return info, fmt.Errorf("resize %s: %w", s.Name, err)
	}
	progress(3, 3)
	return info, nil
}

// virtualSize is the disk's size as the guest sees it. The Driver's VHDX
// files keep it in their metadata; a fake's plain files in their length.
func (b *Backend) virtualSize(path string) (int64, error) {
	if vs, ok := b.drv.(interface {
		VirtualSize(path string) (int64, error)
	}); ok {
		return vs.VirtualSize(path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// CompactDisk implements vmm.DiskManager: the VM's agent discards the
// file system's free blocks (FITRIM), which a dynamic VHDX on the SCSI
// controller turns into unmapped blocks.
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

// runningDisk returns the VM, its agent and the LUN of distro s's disk
// when s runs in the VM.
func (b *Backend) runningDisk(s vmm.Spec) (System, *agent.Client, int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.disks[s.ID]
	if b.sys == nil || !ok {
		return nil, nil, 0, false
	}
	return b.sys, b.ac, d.Target, true
}

// withStoppedDisk boots the VM if need be, attaches stopped distro s's
// disk read-write (not mounted: the agent decides), runs f with the agent
// and the disk's LUN, and detaches it. The Manager keeps the distro from
// starting meanwhile.
func (b *Backend) withStoppedDisk(ctx context.Context, s vmm.Spec, what string, f func(ac *agent.Client, target int) error) error {
	sys, ac, err := b.ensureVM(ctx)
	if err != nil {
		return err
	}
	key := what + ":" + s.ID
	target, err := b.takeTarget(key, s.Disk)
	if err != nil {
		return err
	}
	defer b.dropTarget(key, target)
	if err := b.attach(ctx, sys, target, s.Disk, false); err != nil {
		return fmt.Errorf("attach the disk of %s: %w", s.Name, err)
	}
	ferr := f(ac, target)
	if err := b.detach(context.WithoutCancel(ctx), sys, target); err != nil && ferr == nil {
		return fmt.Errorf("detach the disk of %s: %w", s.Name, err)
	}
	return ferr
}

// BuildImage makes new distro s's disk at path inside the VM, as hcsshim
// makes a container's scratch disk: it creates a dynamic VHDX of maxSize
// bytes, attaches it, has the VM's agent make an ext4 file system on it and
// unpack the tar stream r into it, and detaches it. The host never parses
// the archive or the file system. On error path does not exist.
func (b *Backend) BuildImage(ctx context.Context, s vmm.Spec, path string, maxSize int64, r io.Reader) (err error) {
	if maxSize <= 0 {
		return fmt.Errorf("%w: disk size %d", vmm.ErrInvalid, maxSize)
	}
	sys, ac, err := b.ensureVM(ctx)
	if err != nil {
		return err
	}
	if err := b.drv.CreateVHDX(ctx, path, maxSize); err != nil {
		return fmt.Errorf("create the disk of %s: %w", s.Name, err)
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	key := "build:" + s.ID
	target, err := b.takeTarget(key, path)
	if err != nil {
		return err
	}
	defer b.dropTarget(key, target)
	if err := b.attach(ctx, sys, target, path, false); err != nil {
		return fmt.Errorf("attach the new disk of %s: %w", s.Name, err)
	}
	ferr := b.fill(ctx, ac, target, r)
	derr := b.detach(context.WithoutCancel(ctx), sys, target)
	if ferr != nil {
		return fmt.Errorf("make the disk of %s in the VM: %w", s.Name, ferr)
	}
	if derr != nil {
		return fmt.Errorf("detach the new disk of %s: %w", s.Name, derr)
	}
	return nil
}

// errNoGuestFill: the VM's agent is older than the ops that make a disk.
var errNoGuestFill = errors.New("the VM's agent cannot format and fill a disk (format-disk, unpack-tree)")

// fillDisk formats the disk at target and unpacks r into it through the
// VM's agent: agent.Client's FormatDisk, then UnpackTree, which come with
// the agent's format-disk and unpack-tree ops.
func fillDisk(ctx context.Context, ac *agent.Client, target int, r io.Reader) error {
	if err := ac.FormatDisk(ctx, target); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return fmt.Errorf("%w: %w", vmm.ErrUnsupported, errNoGuestFill)
		}
		return fmt.Errorf("format the new disk in the VM: %w", err)
	}
	res, err := ac.UnpackTree(ctx, target, r)
	if err != nil {
		return fmt.Errorf("unpack into the new disk in the VM: %w", err)
	}
	if rep, ok := r.(vmm.UnpackReporter); ok {
		rep.ReportUnpacked(res)
	}
	return nil
}
