package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// storage is where a distro's files are and how they are made, exported and
// measured: the one place that knows a version 1 distro is a directory tree
// on the host (<Location>/rootfs) and a version 2 distro an ext4 image that
// only the utility VM mounts (<Location>/disk.img). The Manager's import,
// export, clone, conversion, removal and usage go through it; the
// operations around them (locks, progress, rows) stay in the Manager.
type storage interface {
	// path is where the files of a distro in location loc are.
	path(loc string) string
	// install makes the distro's files at path(d.Location) from the tree
	// extracted into staging (by archive.Extract, so it is confined and
	// still), and consumes staging: renamed into place or removed. On an
	// error path(d.Location) does not exist; staging may, for the caller
	// to remove.
	install(ctx context.Context, d store.Distro, staging string, p buildParams) error
	// export writes the distro's tree to w as an archive in format f. For
	// version 2 it goes through the backend (TreeExporter), and fails with
	// ErrUnsupported without one.
	export(ctx context.Context, d store.Distro, w io.Writer, f archive.Format) error
	// usage is the space the distro's files take on the host; 0 when it
	// cannot be told.
	usage(ctx context.Context, d store.Distro) int64
}

// buildParams are what install needs besides the tree.
type buildParams struct {
	// maxSize is a version 2 disk's maximum size.
	maxSize int64
	// stats is what Extract made of the tree.
	stats archive.Stats
	// settings give the free-space reserve to keep.
	settings Settings
}

// storage returns the storage of distros of version.
func (m *Manager) storage(version int) storage {
	if version == 2 {
		return imageStorage{m}
	}
	return treeStorage{}
}

// Sizes of version 2 disks (ImportRequest.SizeBytes). The bounds are
// vmm/disk's: a disk below MinDiskSize leaves no room for a distro beside
// ext4's metadata, and MaxDiskSize is far beyond any distro and below the
// largest file the host's ext4 can hold.
const (
	DefaultDiskSize = disk.DefaultMaxSize
	MinDiskSize     = disk.MinMaxSize
	MaxDiskSize     = disk.MaxMaxSize
)

// FormatImage is the export format of a version 2 distro's raw disk image
// (?format=img): the bytes of its disk.img, holes as zeros, which `import`
// takes back with RawImage. Only a stopped distro's image is exported, so
// the copy is consistent.
const FormatImage archive.Format = "img"

// diskSize checks a request's maximum disk size for a distro of version,
// and returns the size to use: 0 means DefaultDiskSize for a version 2
// distro made from a tree, and no bound but MaxDiskSize for a raw image,
// which keeps its own size. Version 1 distros have no disk: a size for
// one is an error rather than silently ignored.
func diskSize(version int, size int64, raw bool) (int64, error) {
	switch {
	case size < 0:
		return 0, fmt.Errorf("%w: size_bytes %d is negative", ErrInvalid, size)
	case size != 0 && version == 1:
		return 0, fmt.Errorf("%w: a disk size applies to version 2 distros only; version 1 distros use the host's disk as it is", ErrInvalid)
	case size == 0 && version == 1:
		return 0, nil
	case size == 0 && raw:
		return MaxDiskSize, nil
	case size == 0:
		return DefaultDiskSize, nil
	case size < MinDiskSize:
		return 0, fmt.Errorf("%w: size_bytes %d is below the minimum disk size of %d (64 MiB)", ErrInvalid, size, MinDiskSize)
	case size > MaxDiskSize:
		return 0, fmt.Errorf("%w: size_bytes %d is above the maximum disk size of %d (8 TiB)", ErrInvalid, size, MaxDiskSize)
	}
	return size - size%disk.BlockSize, nil
}

// treeStorage is version 1's: the distro's root is a directory on the host.
type treeStorage struct{}

func (treeStorage) path(loc string) string { return filepath.Join(loc, "rootfs") }

func (s treeStorage) install(ctx context.Context, d store.Distro, staging string, _ buildParams) error {
	if err := os.Mkdir(d.Location, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return noSpace(err)
	}
	if err := os.Rename(staging, s.path(d.Location)); err != nil {
		return fmt.Errorf("move into place: %w", err)
	}
	return nil
}

func (s treeStorage) export(ctx context.Context, d store.Distro, w io.Writer, f archive.Format) error {
	return archive.Write(ctx, w, s.path(d.Location), f)
}

func (s treeStorage) usage(ctx context.Context, d store.Distro) int64 {
	return diskUsage(ctx, s.path(d.Location))
}

// imageStorage is version 2's: the distro's root is an ext4 image that the
// utility VM mounts. Once a guest has written it, or a user imported it, its
// content is untrusted: the host never mounts it nor runs e2fsprogs on it,
// and reads its tree only through the backend (TreeExporter). The host
// handles it as a file: creates it from a tree it extracted itself
// (disk.Create), copies it, streams it, measures it.
type imageStorage struct{ m *Manager }

func (imageStorage) path(loc string) string { return filepath.Join(loc, DiskImageName) }

// imageOverhead is what an image takes on the host beyond its tree's data,
// as a margin for the free-space check: vmm/disk allocates about 30 MiB of
// metadata, plus the blocks of the tree's directories and inodes.
func imageOverhead(st archive.Stats) int64 {
	return 64<<20 + int64(st.Entries)*256 + st.Bytes/64
}

func (s imageStorage) install(ctx context.Context, d store.Distro, staging string, p buildParams) error {
	// The tree is no longer needed once the image holds it, whatever
	// happens. It is moved aside at once and removed in the background: the
	// distro is ready without waiting for a tree's worth of unlinks, and a
	// crash meanwhile leaves it to the next start's clean-up of tmp/.
	began := time.Now()
	defer func() {
		s.m.removeInBackground(d, staging)
		s.m.log.Debug("version 2 image made", "distro", d.Name, "took", time.Since(began).Round(time.Millisecond))
	}()
	// The data, plus room for the metadata of a disk of maxSize: its
	// inode tables (256 bytes per 64 KiB) and journal (an eighth of a
	// small disk, 128 MiB from 1 GiB up).
	journal := min(int64(disk.DefaultJournalMiB)<<20, max(4<<20, p.maxSize/8))
	if need := p.stats.Bytes + p.maxSize/256 + journal; need > p.maxSize {
		return fmt.Errorf("%w: the tree holds %s, more than a disk of %s has room for; choose a larger size", ErrTooLarge, humanBytes(p.stats.Bytes), humanBytes(p.maxSize))
	}
	if err := os.Mkdir(d.Location, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return noSpace(err)
	}
	need := p.stats.Bytes + imageOverhead(p.stats)
	if err := checkFree(d.Location, need, p.settings); err != nil {
		return err
	}
	if err := diskCreate(ctx, s.path(d.Location), staging, p.maxSize, disk.Options{}); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("make disk image: %w", cerr)
		}
		// mkfs says "No space left on device" in its own words: tell
		// a full file system by what is free now.
		if ferr := checkFree(d.Location, need, p.settings); ferr != nil {
			return fmt.Errorf("%w (make disk image: %v)", ferr, err)
		}
		return fmt.Errorf("make disk image: %w", err)
	}
	return nil
}

// diskCreate is disk.Create; a test makes it fail after the image is made,
// to see that the Manager removes it.
var diskCreate = disk.Create

func (s imageStorage) export(ctx context.Context, d store.Distro, w io.Writer, f archive.Format) error {
	te, ok := s.m.cfg.Backends[2].(TreeExporter)
	if !ok {
		return fmt.Errorf("%w: this host's version 2 backend cannot export a distro's files", ErrUnsupported)
	}
	return te.ExportTree(ctx, s.m.spec(d), w, f)
}

func (s imageStorage) usage(ctx context.Context, d store.Distro) int64 {
	_, allocated, err := disk.Usage(s.path(d.Location))
	if err != nil {
		return 0
	}
	return allocated
}

// canExport says why distro d cannot be exported in format f, or nil.
func (m *Manager) canExport(d store.Distro, f archive.Format) error {
	if f == FormatImage {
		if d.Version != 2 {
			return fmt.Errorf("%w: format img is the disk image of a version 2 distro; %q is version %d: export it as a tarball", ErrInvalid, d.Name, d.Version)
		}
		return nil
	}
	if d.Version == 2 {
		if _, ok := m.cfg.Backends[2].(TreeExporter); !ok {
			return fmt.Errorf("%w: this host's version 2 backend cannot export a distro's files as a tarball; export its disk image (format img)", ErrUnsupported)
		}
	}
	return nil
}

// checkFree fails with ErrInsufficientStorage when writing need more bytes
// to dir's file system would leave less free than the settings' import
// reserve (the smaller of ImportReserveBytes and ImportReservePercent of
// its size; off when either is 0), as archive.Extract does for a tree.
func checkFree(dir string, need int64, s Settings) error {
	avail, size, err := freeSpace(dir)
	if err != nil {
		return nil // cannot tell: the write itself will say ENOSPC
	}
	reserve := s.reserve(size)
	if avail-need >= reserve {
		return nil
	}
	ise := &archive.InsufficientStorageError{Path: dir, Free: avail, Needed: max(need-max(avail-reserve, 0), 0), Reserve: reserve}
	return fmt.Errorf("%w: %w", ErrInsufficientStorage, ise)
}

// reserve is the free space an import keeps on a file system of size bytes.
func (s Settings) reserve(size int64) int64 {
	if s.ImportReserveBytes <= 0 || s.ImportReservePercent <= 0 {
		return 0
	}
	return min(s.ImportReserveBytes, size/100*int64(s.ImportReservePercent))
}

// humanBytes is n in binary units for messages.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit && exp < 5; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// stagingFor is where a new tree for installed distro d is built (a
// conversion): beside its files, so that it is renamed, never copied, into
// place.
func (m *Manager) stagingFor(d store.Distro) string {
	if d.Location == filepath.Join(m.cfg.distrosDir(), d.ID) {
		return filepath.Join(m.cfg.tmpDir(), d.ID)
	}
	return filepath.Join(d.Location, stagingName)
}

// madeFiles are the names subsys may make in a distro's location: either
// version's files, the staging area, and disk.Create's temporary files (a
// crash can leave those behind).
var madeFiles = []string{"rootfs", DiskImageName, stagingName, stagingName + ".removing-*", "." + DiskImageName + ".tmp-*", ".mke2fs-*.conf"}

// leftovers returns the paths in installed distro d's location that are not
// its files: another version's files, staging, temporary files, all left
// by a conversion or import that a crash stopped.
func (m *Manager) leftovers(d store.Distro) []string {
	return madeIn(d.Location, m.storage(d.Version).path(d.Location))
}

// madeIn returns the paths of madeFiles in dir, keep aside. Names are
// matched, not globbed, so a location with '[' or '*' in it is no pattern.
func madeIn(dir, keep string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		for _, pat := range madeFiles {
			if ok, _ := filepath.Match(pat, e.Name()); ok && p != keep {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// removeLeftovers removes what leftovers finds.
func (m *Manager) removeLeftovers(d store.Distro) {
	for _, p := range m.leftovers(d) {
		m.log.Info("removing leftover file of an interrupted conversion or import", "distro", d.Name, "path", p)
		if err := archive.RemoveAll(p); err != nil {
			m.log.Warn("cannot remove leftover file", "distro", d.Name, "path", p, "err", err)
		}
	}
}

// removeInBackground renames a staging tree to a unique name beside it and
// removes it in a goroutine the Manager owns (Close waits for it). When the
// rename fails the tree is removed here and now.
func (m *Manager) removeInBackground(d store.Distro, tree string) {
	trash := tree + ".removing-" + uuid.NewString()[:8]
	if err := os.Rename(tree, trash); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			if err := archive.RemoveAll(tree); err != nil {
				m.log.Warn("cannot remove staging tree", "distro", d.Name, "path", tree, "err", err)
			}
		}
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := archive.RemoveAll(trash); err != nil {
			m.log.Warn("cannot remove staging tree", "distro", d.Name, "path", trash, "err", err)
		}
	}()
}
