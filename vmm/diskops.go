package vmm

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// DiskManager is implemented by backends whose distros have a disk image
// (version 2). Each method works inside the backend's VM, which is where a
// guest-written file system is parsed: the host only extends and truncates
// the image file.
type DiskManager interface {
	// ResizeDisk sets distro s's disk to size bytes: online and only
	// larger when it runs (ErrBusy to shrink it), offline (check, then
	// resize) when it is stopped; a size its files do not fit in is
	// ErrInvalid, naming the minimum. progress reports steps done of a
	// total.
	ResizeDisk(ctx context.Context, s Spec, size int64, progress func(done, total int64)) (agent.DiskInfo, error)
	// CompactDisk discards the free blocks of distro s's file system, so
	// the sparse image gives them back to the host.
	CompactDisk(ctx context.Context, s Spec) (agent.DiskInfo, error)
	// DiskStat measures running distro s's file system; ErrNotRunning
	// when it is stopped.
	DiskStat(ctx context.Context, s Spec) (agent.DiskInfo, error)
}

// diskManager returns the version 2 backend's DiskManager, or an error
// that says why distro d's disk cannot be managed.
func (m *Manager) diskManager(d store.Distro, what string) (DiskManager, error) {
	if d.Version != 2 {
		return nil, fmt.Errorf("%w: %s applies to version 2 distros, whose files are a disk image; %q is version 1 and uses the host's disk as it is", ErrInvalid, what, d.Name)
	}
	dm, ok := m.cfg.Backends[2].(DiskManager)
	if !ok {
		return nil, fmt.Errorf("%w: this host's version 2 backend cannot %s a disk", ErrUnsupported, what)
	}
	return dm, nil
}

// beginDiskOp begins an operation of kind on distro d that works on its
// disk whether or not it runs: exclusive (no start until it ends) when it
// is stopped, so the disk stays the operation's. The start lock makes the
// look at the distro and the beginning one step. It reports whether the
// distro runs.
func (m *Manager) beginDiskOp(kind string, d store.Distro) (*Operation, context.Context, bool, error) {
	l := m.startLock(d.ID)
	l.Lock()
	defer l.Unlock()
	running := m.client(d.ID) != nil
	op, ctx, err := m.beginOp(kind, d, "", !running)
	return op, ctx, running, err
}

// Resize sets version 2 distro name's disk to size bytes (rounded down to
// 4 KiB), in an operation of kind KindResize: a running distro's disk
// grows online and its guest's df shows the new size at once; a stopped
// one's file system is checked and grown or shrunk in the VM. Shrinking a
// running distro is ErrBusy; a size out of bounds, or one its files do not
// fit in, is ErrInvalid. A failure leaves the disk as it was, or at worst
// its image longer than its file system, which is harmless: the size the
// disk already has makes the file system fill it, so a resize that was
// cut short can be finished by asking again.
func (m *Manager) Resize(ctx context.Context, name string, size int64) (*Operation, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	dm, err := m.diskManager(d, "resize")
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fmt.Errorf("%w: size is missing: give the disk's new size in bytes", ErrInvalid)
	}
	if size, err = diskSize(2, size, false); err != nil {
		return nil, err
	}
	if err := m.installed(d); err != nil {
		return nil, err
	}
	cur, _, err := disk.Usage(imageStorage{m}.path(d.Location))
	if err != nil {
		return nil, fmt.Errorf("resize %s: %w", d.Name, err)
	}
	op, opCtx, running, err := m.beginDiskOp(KindResize, d)
	if err != nil {
		return nil, err
	}
	if running && size < cur {
		err := fmt.Errorf("%w: distro %q is running, and a running distro's disk only grows: stop it with `subsys terminate %s` to shrink it", ErrBusy, d.Name, d.Name)
		m.endOperation(op, d.ID, err)
		return nil, err
	}
	if size > cur {
		// A grow needs no room now (the image is sparse), but the disk
		// may fill: the user asked for it, so only log a disk that could
		// not hold it all.
		if avail, _, ferr := freeSpace(d.Location); ferr == nil && avail < size-cur {
			m.log.Info("the disk may grow beyond the host's free space", "distro", d.Name, "size", size, "host_free", avail)
		}
	}
	m.audit(ctx, "resize", d.Name, fmt.Sprintf("%d to %d bytes", cur, size))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		_, err := dm.ResizeDisk(opCtx, m.spec(d), size, func(done, total int64) {
			op.total.Store(total)
			op.done.Store(done)
		})
		if err != nil {
			err = fmt.Errorf("resize %s: %w", d.Name, err)
		} else {
			m.log.Info("distro disk resized", "distro", d.Name, "from", cur, "to", size, "online", running)
		}
		m.refreshDisk(context.WithoutCancel(opCtx), d)
		m.endOperation(op, d.ID, err)
	}()
	return op, nil
}

// Compact gives version 2 distro name's free disk blocks back to the host,
// in an operation of kind KindCompact: fstrim in the guest when it runs, a
// trim of its disk mounted in the VM when it is stopped. The result's
// Bytes is how much smaller the image's allocation became.
func (m *Manager) Compact(ctx context.Context, name string) (*Operation, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	dm, err := m.diskManager(d, "compact")
	if err != nil {
		return nil, err
	}
	if err := m.installed(d); err != nil {
		return nil, err
	}
	op, opCtx, _, err := m.beginDiskOp(KindCompact, d)
	if err != nil {
		return nil, err
	}
	m.audit(ctx, "compact", d.Name, "")
	path := imageStorage{m}.path(d.Location)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		_, before, _ := disk.Usage(path)
		op.total.Store(1)
		_, err := dm.CompactDisk(opCtx, m.spec(d))
		_, after, _ := disk.Usage(path)
		if err != nil {
			err = fmt.Errorf("compact %s: %w", d.Name, err)
		} else {
			op.done.Store(1)
			op.setResult(OperationResult{Bytes: max(before-after, 0)})
			m.log.Info("distro disk compacted", "distro", d.Name, "allocated_before", before, "allocated_after", after)
		}
		m.refreshDisk(context.WithoutCancel(opCtx), d)
		m.endOperation(op, d.ID, err)
	}()
	return op, nil
}

// diskFigures measures version 2 distro d's disk: its size and allocation
// from the image file, and its free space from the running guest (statfs in
// the VM) or else from the image's superblock, which a stopped distro's
// kernel wrote at unmount. free is 0 when it cannot be told.
func (m *Manager) diskFigures(ctx context.Context, d store.Distro) (size, allocated, free int64) {
	path := imageStorage{m}.path(d.Location)
	size, allocated, err := disk.Usage(path)
	if err != nil {
		return 0, 0, 0
	}
	if dm, ok := m.cfg.Backends[2].(DiskManager); ok && m.client(d.ID) != nil {
		// Bounded: the sampler must not wait on a VM that does not answer.
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := dm.DiskStat(sctx, m.spec(d))
		cancel()
		if err == nil {
			return size, allocated, info.AvailableBytes
		}
	}
	return size, allocated, superblockFree(path)
}

// superblockFree reads the free space an image's superblock records, or 0.
// The superblock is the guest's: a plausible number is all it can give,
// and it is only shown.
func superblockFree(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	b := make([]byte, disk.SuperblockOffset+disk.SuperblockSize)
	if _, err := io.ReadFull(f, b); err != nil {
		return 0
	}
	sb, err := disk.ParseSuperblock(b)
	if err != nil {
		return 0
	}
	return sb.Free()
}

// refreshDisk measures distro d's disk now, after an operation changed it,
// and publishes the change, rather than at the next minute's sample.
func (m *Manager) refreshDisk(ctx context.Context, d store.Distro) {
	m.sampler.mu.Lock()
	st := m.sampler.states[d.ID]
	if st == nil {
		st = &usageState{}
		m.sampler.states[d.ID] = st
	}
	m.sampler.mu.Unlock()
	m.measureDisk(ctx, d, st)
	m.publishChanges(ctx)
}
