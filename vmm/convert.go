package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/archive"
)

// SetVersion converts stopped distro name to version (1 or 2), as `wsl
// --set-version` does, in an operation of kind KindSetVersion: the distro's
// tree is read from its current files as a tarball (archive.Write of a
// version 1 root; the backend's TreeExporter for a version 2 image, which
// the host never mounts) and extracted (archive.Extract, confined) into
// staging beside them; from there a version 1 root is moved into place, or
// a version 2 image made (mkfs.ext4 -d, default maximum size). Owners,
// modes, times, symlinks, hard links, device nodes under /dev, fifos,
// extended attributes and contents survive both ways.
//
// The new files are made beside the old ones. Only once they are complete
// does the distro's row change version, and then the old files are
// removed; until then a failure or a cancel removes the new files and
// leaves the distro as it was. A crash meanwhile is finished by the next
// start: the files of the version the row does not name are removed.
//
// The distro must be stopped (ErrBusy, naming `subsys terminate`, when it
// runs), and it cannot be started until the operation ends. Converting to
// the version the distro has is ErrInvalid; version 1 on a host without its
// backend is ErrNoVersion1; another version without a backend on this host,
// or a version 2 backend that cannot export a tree, is ErrUnsupported.
func (m *Manager) SetVersion(ctx context.Context, name string, version int) (*Operation, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	if version != 1 && version != 2 {
		return nil, fmt.Errorf("%w: version %d: use 1 or 2", ErrInvalid, version)
	}
	if d.Version == version {
		return nil, fmt.Errorf("%w: distro %q is already version %d", ErrInvalid, d.Name, version)
	}
	if err := m.needBackend(version); err != nil {
		return nil, err
	}
	if d.Version == 2 {
		if _, ok := m.cfg.Backends[2].(TreeExporter); !ok {
			return nil, fmt.Errorf("%w: this host's version 2 backend cannot read a distro's files, so it cannot convert them", ErrUnsupported)
		}
	}
	if err := m.installed(d); err != nil {
		return nil, err
	}
	op, opCtx, err := m.beginExclusive(KindSetVersion, d, StateConverting, "it can only be converted while it is stopped")
	if err != nil {
		return nil, err
	}
	m.audit(ctx, "set-version", d.Name, fmt.Sprintf("version %d to %d", d.Version, version))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := m.convert(opCtx, d, version, op)
		if err != nil {
			err = fmt.Errorf("set-version %s: %w", d.Name, err)
		}
		m.endOperation(op, d.ID, err)
	}()
	return op, nil
}

// convert makes distro d's files of version to from its current ones, then
// switches the row to them and removes the old; see SetVersion.
func (m *Manager) convert(ctx context.Context, d store.Distro, to int, op *Operation) (err error) {
	from, into := m.storage(d.Version), m.storage(to)
	staging, target := m.stagingFor(d), into.path(d.Location)
	committed := false
	defer func() {
		if committed {
			return
		}
		// Nothing of the new version stays: the distro is as it was.
		for _, p := range []string{staging, target} {
			if rerr := archive.RemoveAll(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				m.log.Warn("cannot remove a failed conversion's files", "distro", d.Name, "path", p, "err", rerr)
			}
		}
	}()
	settings, err := m.Settings(ctx)
	if err != nil {
		return err
	}
	// What a crash left (recovery removes it too) is no part of the distro.
	for _, p := range append(m.leftovers(d), staging) {
		if err := archive.RemoveAll(p); err != nil {
			return fmt.Errorf("remove leftover %s: %w", p, err)
		}
	}
	if err := os.Mkdir(staging, 0o755); err != nil {
		return noSpace(fmt.Errorf("create staging directory: %w", err))
	}
	// Progress is the tarball's bytes against what the old files take:
	// near enough, and never past the end.
	op.total.Store(max(from.usage(ctx, d), 1))
	pr, pw := io.Pipe()
	exported := make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		werr := from.export(ctx, d, &boundedProgress{w: pw, op: op}, archive.Tar)
		pw.CloseWithError(werr)
		exported <- werr
	}()
	limits := settings.limits(m.cfg.Limits)
	maxSize := int64(0)
	if to == 2 {
		maxSize = DefaultDiskSize
		if limits.MaxExpandedBytes <= 0 || limits.MaxExpandedBytes > maxSize {
			limits.MaxExpandedBytes = maxSize
		}
	}
	stats, xerr := archive.Extract(ctx, pr, staging, limits)
	// Stop the export when the extraction ended first.
	pr.CloseWithError(errConversionEnded)
	werr := <-exported
	op.setResult(OperationResult{Entries: stats.Entries, Bytes: stats.Bytes, SkippedDevices: stats.SkippedDevices, Warnings: stats.Warnings})
	switch {
	case werr != nil && !errors.Is(werr, errConversionEnded):
		// The export's error is the cause, and the extraction's (a
		// truncated archive) its consequence, unless the export only
		// saw the extraction stop.
		return fmt.Errorf("read version %d files: %w", d.Version, werr)
	case xerr != nil:
		return fmt.Errorf("write version %d files: %w", to, mapArchiveErr(xerr))
	}
	if err := into.install(ctx, d, staging, buildParams{maxSize: maxSize, stats: stats, settings: settings}); err != nil {
		return fmt.Errorf("write version %d files: %w", to, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The switch. The row is read again: its default user may have
	// changed since SetVersion read it (a rename cannot: the operation
	// holds the distro).
	wctx := context.WithoutCancel(ctx)
	row, err := m.row(wctx, d.Name)
	if err != nil {
		return err
	}
	if row.ID != d.ID {
		return fmt.Errorf("%w: distro %q was replaced during the conversion", ErrBusy, d.Name)
	}
	row.Version = to
	if err := m.cfg.Store.UpdateDistro(wctx, row); err != nil {
		return err
	}
	committed = true
	// From here the conversion has happened; what is left is tidying, and
	// recovery finishes it after a crash.
	if err := archive.RemoveAll(from.path(d.Location)); err != nil {
		m.log.Warn("cannot remove the old version's files; they are removed at the next start", "distro", d.Name, "err", err)
	}
	if f, ok := m.cfg.Backends[d.Version].(Forgetter); ok {
		if err := f.Forget(wctx, m.spec(d)); err != nil {
			m.log.Warn("cannot remove the old version's run files", "distro", d.Name, "err", err)
		}
	}
	// The next sample measures the new files.
	m.sampler.mu.Lock()
	if st := m.sampler.states[d.ID]; st != nil {
		st.diskAt = st.diskAt.AddDate(-1, 0, 0)
	}
	m.sampler.mu.Unlock()
	m.log.Info("distro converted", "distro", d.Name, "from", d.Version, "to", to)
	return nil
}

// errConversionEnded is what the export of a conversion sees when the
// extraction has stopped reading.
var errConversionEnded = errors.New("conversion ended")

// boundedProgress counts what it writes as op's progress, but short of its
// total, which is an estimate: the operation reaches its total when it ends.
type boundedProgress struct {
	w  io.Writer
	op *Operation
	n  atomic.Int64
}

func (b *boundedProgress) Write(p []byte) (int, error) {
	n, err := b.w.Write(p)
	done := b.n.Add(int64(n))
	if t := b.op.total.Load(); done >= t {
		done = t - 1
	}
	b.op.done.Store(max(done, 0))
	return n, err
}
