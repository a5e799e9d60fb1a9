package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// GuestImageBuilder is a version 2 backend that makes a new distro's disk
// inside its VM, from a tarball, for a host that cannot make one itself (it
// cannot extract a tree with its owners, or has no mkfs.ext4: any system but
// Linux). BuildImage creates the image file at path (raw and sparse for
// QEMU, VHDX for HCS) with room for maxSize bytes, attaches it to the VM,
// has the VM's agent make an empty ext4 on it (agent.Client.FormatDisk)
// and extract the tarball read from r into it (agent.Client.UnpackTree),
// and detaches it. On an error path does not exist. s is the distro the
// disk is for; its Disk is path.
//
// When r implements UnpackReporter, BuildImage hands it what the guest
// extracted, for the import's result.
type GuestImageBuilder interface {
	BuildImage(ctx context.Context, s Spec, path string, maxSize int64, r io.Reader) error
}

// UnpackReporter is implemented by the reader the Manager passes to
// GuestImageBuilder.BuildImage: the backend reports through it what the
// VM's agent extracted (agent.Client.UnpackTree's result).
type UnpackReporter interface {
	ReportUnpacked(agent.UnpackResult)
}

// GuestUnpackEnv is the environment variable that, set to 1, has version 2
// imports make the distro's disk in the VM (GuestImageBuilder) on Linux
// too, where the host would extract the tree and run mkfs.ext4 -d itself:
// the path other hosts take, tested where it can be.
const GuestUnpackEnv = "SUBSYS_GUEST_UNPACK"

// guestUnpack says whether a version 2 import makes its disk in the VM.
func guestUnpack() bool {
	return runtime.GOOS != "linux" || os.Getenv(GuestUnpackEnv) == "1"
}

// guestSpaceCheckEvery is how many bytes of the tarball the host reads
// between two checks of the free space the image's file system has left
// (a statfs each): the image grows as the guest writes what was read.
const guestSpaceCheckEvery = 16 << 20

// guestSource is the tarball as BuildImage reads it: it keeps the host's
// free-space reserve on the image's file system, and records what the
// guest reports it extracted.
type guestSource struct {
	r        io.Reader
	dir      string // where the image is made
	settings Settings
	read     int64 // bytes read
	pending  int64 // bytes read since the last free-space check

	mu       sync.Mutex
	unpacked *agent.UnpackResult
}

func (g *guestSource) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.read += int64(n)
	if g.pending += int64(n); g.pending >= guestSpaceCheckEvery {
		g.pending = 0
		if ferr := checkFree(g.dir, 0, g.settings); ferr != nil {
			return n, ferr
		}
	}
	return n, err
}

// ReportUnpacked implements UnpackReporter.
func (g *guestSource) ReportUnpacked(r agent.UnpackResult) {
	g.mu.Lock()
	g.unpacked = &r
	g.mu.Unlock()
}

// buildInGuest makes version 2 distro d's disk in the VM from the tarball
// src (GuestImageBuilder): into staging, then moved into place, as a raw
// image import is. It records what the guest extracted in op's result
// (the bytes read when the backend does not say). On an error nothing of
// the image remains; the caller removes staging and the distro.
func (m *Manager) buildInGuest(ctx context.Context, d store.Distro, staging string, src io.Reader, op *Operation, p importParams, settings Settings) error {
	gb, ok := m.cfg.Backends[2].(GuestImageBuilder)
	if !ok {
		return fmt.Errorf("%w: this host's version 2 backend cannot make a distro's disk in its VM", ErrUnsupported)
	}
	if err := checkFree(staging, 0, settings); err != nil {
		return err
	}
	tmp := filepath.Join(staging, DiskImageName)
	gs := &guestSource{r: src, dir: staging, settings: settings}
	spec := m.spec(d)
	spec.Disk = tmp
	err := gb.BuildImage(ctx, spec, tmp, p.maxSize, gs)
	gs.mu.Lock()
	res := OperationResult{Bytes: gs.read}
	if u := gs.unpacked; u != nil {
		res = OperationResult{Entries: int(u.Files), Bytes: u.Bytes, SkippedDevices: u.SkippedDevices, Warnings: u.Warnings}
	}
	gs.mu.Unlock()
	op.setResult(res)
	if err != nil {
		os.Remove(tmp) // BuildImage's contract; a second guard costs nothing
		return mapGuestErr(err, p.maxSize)
	}
	m.log.Info("version 2 disk made in the VM", "distro", d.Name, "entries", res.Entries, "bytes", res.Bytes)
	return nil
}

// mapGuestErr maps the VM agent's unpack errors to vmm's sentinels, as
// mapArchiveErr does for the host's own extraction: a full disk is a size
// too small for the tree.
func mapGuestErr(err error, maxSize int64) error {
	switch {
	case errors.Is(err, ErrInsufficientStorage), errors.Is(err, ErrTooLarge), errors.Is(err, ErrInvalid), errors.Is(err, ErrUnsupported):
		return err
	case errors.Is(err, agent.ErrNoSpace):
		return fmt.Errorf("%w: the tree does not fit in a disk of %s (choose a larger size), or passes the import's limits: %w", ErrTooLarge, humanBytes(maxSize), err)
	case errors.Is(err, agent.ErrBadArchive):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return mapArchiveErr(err)
}
