package qemu

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// BuildImage implements vmm.GuestImageBuilder: a new distro's disk made in
// the VM. The image is a sparse raw file of maxSize bytes (rounded down to
// disk.BlockSize), hot-plugged like a stopped distro's disk; the VM's
// agent formats it (FormatDisk, the options vmm/disk uses on the host) and
// extracts the tarball r into it (UnpackTree), then the disk is unplugged
// and the file synced. On an error the file is removed.
func (b *Backend) BuildImage(ctx context.Context, s vmm.Spec, path string, maxSize int64, r io.Reader) (err error) {
	maxSize -= maxSize % disk.BlockSize
	if maxSize < disk.MinMaxSize {
		return fmt.Errorf("%w: a disk of %d bytes is below the minimum of %d", vmm.ErrInvalid, maxSize, disk.MinMaxSize)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("build the disk of %s: %w", s.Name, err)
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	// A hole of the disk's size: it reads as zeros, which the agent's
	// mke2fs counts on (assume_storage_prezeroed).
	err = f.Truncate(maxSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("build the disk of %s: %w", s.Name, err)
	}
	s.Disk = path
	err = b.withStoppedDisk(ctx, s, "build", func(ac *agent.Client, target int) error {
		if err := ac.FormatDisk(ctx, target); err != nil {
			return fmt.Errorf("format it: %w", err)
		}
		res, err := ac.UnpackTree(ctx, target, r)
		if err != nil {
			return err
		}
		if rep, ok := r.(vmm.UnpackReporter); ok {
			rep.ReportUnpacked(res)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("build the disk of %s in the VM: %w", s.Name, err)
	}
	// QEMU has closed the file: what it wrote must survive a crash of the
	// host before the distro is recorded as installed.
	if f, err = os.OpenFile(path, os.O_RDWR, 0); err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("build the disk of %s: sync: %w", s.Name, err)
	}
	return nil
}
