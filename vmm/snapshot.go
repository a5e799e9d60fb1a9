package vmm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// Operation kinds of snapshots.
const (
	// KindSnapshot takes a snapshot of a stopped distro (Snapshot).
	KindSnapshot = "snapshot"
	// KindRestore puts a snapshot's files back (Restore).
	KindRestore = "restore"
)

// DistroSnapshot is a saved copy of a distro's files, as the API lists it.
type DistroSnapshot struct {
	Name string `json:"name"`
	// Version is the distro's version when it was taken; it can only be
	// restored into a distro of that version.
	Version int `json:"version"`
	// Bytes is what the copy takes on the host.
	Bytes     int64     `json:"bytes"`
	CreatedAt time.Time `json:"created_at"`
}

// SnapshotStore keeps the snapshots' records (store.DB does). A Manager's
// Store that is one has snapshots; others answer ErrUnsupported.
type SnapshotStore interface {
	Snapshots(ctx context.Context, distroID string) ([]store.Snapshot, error)
	AddSnapshot(ctx context.Context, s store.Snapshot) error
	DeleteSnapshot(ctx context.Context, distroID, name string) error
}

// snapshotsDir is where a distro's snapshots are: the data directory's
// snapshots/<id>, away from the distro's location, so that a move leaves
// them be and an unregister removes them.
func (c Config) snapshotsDir(id string) string { return filepath.Join(c.DataDir, "snapshots", id) }

// snapshotStagingPrefix names the directory a snapshot is copied into
// before its record exists.
const snapshotStagingPrefix = ".staging-"

func (m *Manager) snapshotStore() (SnapshotStore, error) {
	ss, ok := m.cfg.Store.(SnapshotStore)
	if !ok {
		return nil, fmt.Errorf("%w: this server's store keeps no snapshots", ErrUnsupported)
	}
	return ss, nil
}

// Snapshots lists distro name's snapshots, the oldest first.
func (m *Manager) Snapshots(ctx context.Context, name string) ([]DistroSnapshot, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	ss, err := m.snapshotStore()
	if err != nil {
		return nil, err
	}
	rows, err := ss.Snapshots(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	out := make([]DistroSnapshot, 0, len(rows))
	for _, r := range rows {
		out = append(out, DistroSnapshot{Name: r.Name, Version: r.Version, Bytes: r.Bytes, CreatedAt: r.CreatedAt})
	}
	return out, nil
}

// TakeSnapshot copies stopped distro name's files (a version 1 tree, a
// version 2 image: sparse, a reflink where the file system can) into
// snapshot snap, in an operation of kind KindSnapshot. An empty snap is
// named by the time. The distro must be stopped (ErrBusy), so the copy is
// consistent; the snapshot exists only once it is complete, and a failure
// or cancel leaves none.
func (m *Manager) TakeSnapshot(ctx context.Context, name, snap string) (*Operation, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	ss, err := m.snapshotStore()
	if err != nil {
		return nil, err
	}
	if snap == "" {
		snap = "snap-" + time.Now().UTC().Format("20060102-150405")
	}
	if err := validateSnapshotName(snap); err != nil {
		return nil, err
	}
	if err := m.installed(d); err != nil {
		return nil, err
	}
	rows, err := ss.Snapshots(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		if r.Name == snap {
			return nil, fmt.Errorf("%w: %q already has a snapshot named %q", ErrExists, d.Name, snap)
		}
	}
	op, opCtx, err := m.beginExclusive(KindSnapshot, d, "", "a snapshot is taken of a stopped distro")
	if err != nil {
		return nil, err
	}
	m.audit(ctx, "snapshot", d.Name, snap)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := m.takeSnapshot(opCtx, ss, d, snap, op)
		if err != nil {
			err = fmt.Errorf("snapshot %s: %w", d.Name, err)
		}
		m.endOperation(op, d.ID, err)
	}()
	return op, nil
}

func (m *Manager) takeSnapshot(ctx context.Context, ss SnapshotStore, d store.Distro, snap string, op *Operation) (err error) {
	dir := m.cfg.snapshotsDir(d.ID)
	final := filepath.Join(dir, snap)
	stage := filepath.Join(dir, snapshotStagingPrefix+snap)
	defer func() {
		archive.RemoveAll(stage)
		if err != nil {
			archive.RemoveAll(final)
		}
	}()
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return noSpace(err)
	}
	if err := os.Mkdir(final, 0o700); err != nil {
		return noSpace(err)
	}
	files := m.storage(d.Version).path(d.Location)
	dst := filepath.Join(final, filepath.Base(files))
	if err := m.copyFiles(ctx, d.Version, files, stage, dst, op); err != nil {
		return err
	}
	bytes := snapshotUsage(ctx, d.Version, dst)
	return ss.AddSnapshot(context.WithoutCancel(ctx), store.Snapshot{DistroID: d.ID, Name: snap, Version: d.Version, Bytes: bytes, CreatedAt: time.Now()})
}

// copyFiles copies a distro's files of version (its image, or its tree)
// from src to dst through stage, as a move to another file system does.
func (m *Manager) copyFiles(ctx context.Context, version int, src, stage, dst string, op *Operation) error {
	var err error
	if version == 2 {
		err = m.moveImage(ctx, src, stage, dst, op)
	} else {
		err = m.moveTree(ctx, src, stage, dst, op)
	}
	if err != nil {
		return err
	}
	return ctx.Err()
}

// snapshotUsage is what a snapshot's copy takes on the host.
func snapshotUsage(ctx context.Context, version int, p string) int64 {
	if version == 2 {
		_, allocated, _ := disk.Usage(p)
		return allocated
	}
	return diskUsage(ctx, p)
}

// Restore puts snapshot snap's files in place of stopped distro name's, in
// an operation of kind KindRestore: the snapshot is copied beside the
// distro's files, and the two are swapped in one rename (RENAME_EXCHANGE),
// so the distro has either its files or the snapshot's, whatever happens;
// its old files are removed after. A snapshot of another version than the
// distro's is ErrInvalid (convert it first).
func (m *Manager) Restore(ctx context.Context, name, snap string) (*Operation, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	s, err := m.findSnapshot(ctx, d, snap)
	if err != nil {
		return nil, err
	}
	if s.Version != d.Version {
		return nil, fmt.Errorf("%w: snapshot %q holds version %d files and %q is version %d: convert it with `subsys set-version %s %d` first", ErrInvalid, snap, s.Version, d.Name, d.Version, d.Name, s.Version)
	}
	if err := m.installed(d); err != nil {
		return nil, err
	}
	op, opCtx, err := m.beginExclusive(KindRestore, d, "", "a snapshot is restored into a stopped distro")
	if err != nil {
		return nil, err
	}
	m.audit(ctx, "restore", d.Name, snap)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := m.restore(opCtx, d, snap, op)
		if err != nil {
			err = fmt.Errorf("restore %s to %s: %w", d.Name, snap, err)
		} else {
			m.refreshDisk(context.WithoutCancel(opCtx), d)
		}
		m.endOperation(op, d.ID, err)
	}()
	return op, nil
}

func (m *Manager) restore(ctx context.Context, d store.Distro, snap string, op *Operation) error {
	files := m.storage(d.Version).path(d.Location)
	src := filepath.Join(m.cfg.snapshotsDir(d.ID), snap, filepath.Base(files))
	stage := m.stagingFor(d)
	if err := archive.RemoveAll(stage); err != nil {
		return fmt.Errorf("remove leftover %s: %w", stage, err)
	}
	if err := os.MkdirAll(filepath.Join(stage, "new"), 0o700); err != nil {
		return noSpace(err)
	}
	// Whatever is in staging at the end is not the distro's: the copy
	// after a failure, its old files after the swap.
	defer func() {
		if err := archive.RemoveAll(stage); err != nil {
			m.log.Warn("cannot remove a restore's staging", "distro", d.Name, "path", stage, "err", err)
		}
	}()
	copied := filepath.Join(stage, "new", filepath.Base(files))
	if err := m.copyFiles(ctx, d.Version, src, stage, copied, op); err != nil {
		return err
	}
	if err := exchange(copied, files); err != nil {
		return fmt.Errorf("swap in the snapshot's files: %w", err)
	}
	m.log.Info("distro restored from a snapshot", "distro", d.Name, "snapshot", snap)
	return nil
}

// DeleteSnapshot removes snapshot snap of distro name: its record at once,
// its files in the background.
func (m *Manager) DeleteSnapshot(ctx context.Context, name, snap string) error {
	d, err := m.row(ctx, name)
	if err != nil {
		return err
	}
	if _, err := m.findSnapshot(ctx, d, snap); err != nil {
		return err
	}
	ss, _ := m.snapshotStore()
	// A restore from it may be running: it holds the distro.
	m.mu.Lock()
	held := m.opsByDistro[d.ID]
	m.mu.Unlock()
	if held != nil {
		return &BusyError{Distro: d.Name, Op: held.Info()}
	}
	if err := ss.DeleteSnapshot(ctx, d.ID, snap); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %q has no snapshot %q", ErrNotFound, d.Name, snap)
		}
		return err
	}
	m.removeInBackground(d, filepath.Join(m.cfg.snapshotsDir(d.ID), snap))
	m.audit(ctx, "snapshot-delete", d.Name, snap)
	return nil
}

// findSnapshot returns distro d's snapshot snap, or ErrNotFound.
func (m *Manager) findSnapshot(ctx context.Context, d store.Distro, snap string) (store.Snapshot, error) {
	ss, err := m.snapshotStore()
	if err != nil {
		return store.Snapshot{}, err
	}
	rows, err := ss.Snapshots(ctx, d.ID)
	if err != nil {
		return store.Snapshot{}, err
	}
	for _, r := range rows {
		if r.Name == snap {
			return r, nil
		}
	}
	return store.Snapshot{}, fmt.Errorf("%w: %q has no snapshot %q", ErrNotFound, d.Name, snap)
}

// validateSnapshotName applies the distro names' rule to snapshot names:
// each becomes a directory name and a URL path segment.
func validateSnapshotName(snap string) error {
	if !namePattern().MatchString(snap) {
		return fmt.Errorf("%w: snapshot name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, snap)
	}
	return nil
}

// recoverSnapshots removes what a crash left of snapshots: copies that
// never got their record, and the snapshots of distros that are gone.
func (m *Manager) recoverSnapshots(ctx context.Context) {
	ss, err := m.snapshotStore()
	if err != nil {
		return
	}
	root := filepath.Join(m.cfg.DataDir, "snapshots")
	ids, err := os.ReadDir(root)
	if err != nil {
		return
	}
	rows, err := m.cfg.Store.Distros(ctx)
	if err != nil {
		return
	}
	known := map[string]bool{}
	for _, d := range rows {
		known[d.ID] = true
	}
	for _, e := range ids {
		dir := filepath.Join(root, e.Name())
		if !known[e.Name()] {
			m.log.Info("removing the snapshots of a distro that is gone", "path", dir)
			archive.RemoveAll(dir)
			continue
		}
		snaps, err := ss.Snapshots(ctx, e.Name())
		if err != nil {
			continue
		}
		have := map[string]bool{}
		for _, s := range snaps {
			have[s.Name] = true
		}
		entries, _ := os.ReadDir(dir)
		for _, s := range entries {
			if !have[s.Name()] {
				p := filepath.Join(dir, s.Name())
				m.log.Info("removing an incomplete snapshot", "path", p)
				if err := archive.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					m.log.Warn("cannot remove an incomplete snapshot", "path", p, "err", err)
				}
			}
		}
	}
}
