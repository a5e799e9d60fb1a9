package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/cgroup"
)

// ImportRequest describes a new distro and where its root file system comes from.
type ImportRequest struct {
	// Name of the new distro.
	Name string
	// Version is 1 or 2; 0 means 1.
	Version int
	// Location is the directory for the distro's files; empty means the data directory.
	Location string
	// Body is the tarball (any supported compression); it is read by the operation.
	// Exactly one of Body and Path is set.
	Body io.Reader
	// Size is Body's length when known (for progress), else 0.
	Size int64
	// Path is a tarball on the server's own file system.
	Path string
	// SizeBytes is the maximum size of a version 2 distro's disk, which
	// is sparse: it takes on the host what the distro stores, up to this.
	// 0 means DefaultDiskSize (256 GiB); else between MinDiskSize and
	// MaxDiskSize. With RawImage it bounds the image's size instead (0:
	// MaxDiskSize). Version 1 distros have no disk: setting it is
	// ErrInvalid.
	SizeBytes int64
	// RawImage says Body (or Path) is a raw ext4 disk image, not a
	// tarball, which becomes the new distro's disk as it is (as `wsl
	// --import --vhd` does); the HTTP layer sets it for Content-Type
	// application/x-raw-disk-image. Only version 2 distros have a disk: a
	// Version of 0 means 2 here, 1 is ErrInvalid. The image is untrusted:
	// the host checks its ext4 superblock (disk.ParseSuperblock) and
	// never mounts it nor runs e2fsprogs on it.
	RawImage bool

	// kind is the operation's kind: KindImport, or KindInstall for Install.
	kind string
	// closer, when set, is closed once the operation has stopped reading
	// Body (Install's build or download, which it stops).
	closer io.Closer
	// finish, when set, is called once the archive has been extracted, and
	// its error fails the import: Install's stream reads to its end there,
	// where a build's exit status and a download's checksum are known.
	finish func() error
	// watch, when set, is called once before reading and may make the
	// source report the operation's progress itself (an image pull:
	// compressed layer bytes, which layer); true says it does, and the
	// bytes read are then not counted.
	watch func(*Operation) bool
	// defaultUser, when set, is asked once the archive is in and finish
	// has passed: a user it names (an image config's, which the image has)
	// becomes the distro's default user instead of the settings'.
	defaultUser func() string
}

// importParams are what populate needs of an ImportRequest.
type importParams struct {
	// maxSize is the version 2 disk's maximum size (diskSize).
	maxSize int64
	// raw: the source is a raw disk image (ImportRequest.RawImage).
	raw bool
	// finish: see ImportRequest.finish.
	finish func() error
	// defaultUser: see ImportRequest.defaultUser.
	defaultUser func() string
}

// Import checks req, reserves the name (the distro shows as Installing) and starts
// the import operation. With Body set, BodyDone on the returned operation is closed
// once the operation has stopped reading it; the caller must keep Body readable until then.
func (m *Manager) Import(ctx context.Context, req ImportRequest) (op *Operation, err error) {
	if req.closer != nil {
		// Whatever happens before the operation owns it.
		defer func() {
			if err != nil {
				req.closer.Close()
			}
		}()
	}
	if req.kind == "" {
		req.kind = KindImport
	}
	if err := ValidateName(req.Name); err != nil {
		return nil, err
	}
	settings, err := m.Settings(ctx)
	if err != nil {
		return nil, err
	}
	if req.Version == 0 {
		req.Version = settings.DefaultVersion
		if req.RawImage {
			req.Version = 2
		}
	}
	if req.Version != 1 && req.Version != 2 {
		return nil, fmt.Errorf("%w: version %d: use 1 or 2", ErrInvalid, req.Version)
	}
	if req.RawImage && req.Version != 2 {
		return nil, fmt.Errorf("%w: a raw disk image can only be imported as a version 2 distro; a version 1 distro is imported from a tarball", ErrInvalid)
	}
	maxSize, err := diskSize(req.Version, req.SizeBytes, req.RawImage)
	if err != nil {
		return nil, err
	}
	if err := m.needBackend(req.Version); err != nil {
		return nil, err
	}
	if (req.Body == nil) == (req.Path == "") {
		return nil, fmt.Errorf("%w: give the tarball or image as the request body or as a server path, not both or neither", ErrInvalid)
	}
	var src io.Reader = req.Body
	var file *os.File
	if req.Path != "" {
		if !filepath.IsAbs(req.Path) {
			return nil, fmt.Errorf("%w: source path %q must be absolute", ErrInvalid, req.Path)
		}
		f, err := os.Open(req.Path)
		if err != nil {
			return nil, fmt.Errorf("%w: open %s: %v", ErrInvalid, req.Path, errors.Unwrap(err))
		}
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalid, req.Path)
		}
		file, src, req.Size = f, f, st.Size()
	}
	d, staging, err := m.reserve(ctx, req.Name, req.Version, req.Location, settings.DefaultUser)
	if err != nil {
		if file != nil {
			file.Close()
		}
		return nil, err
	}
	op, opCtx, err := m.beginOperation(req.kind, d, StateInstalling)
	if err != nil {
		m.unreserve(d)
		if file != nil {
			file.Close()
		}
		return nil, err
	}
	op.total.Store(req.Size)
	uncounted := req.watch != nil && req.watch(op)
	op.bodyDone = make(chan struct{})
	detail := fmt.Sprintf("version %d", d.Version)
	if req.RawImage {
		detail += ", raw disk image"
	}
	m.audit(ctx, req.kind, d.Name, detail)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := m.populate(opCtx, d, staging, countingReader{ctx: opCtx, r: src, op: op, uncounted: uncounted}, op.bodyDone, op, importParams{maxSize: maxSize, raw: req.RawImage, finish: req.finish, defaultUser: req.defaultUser})
		if file != nil {
			file.Close()
		}
		if req.closer != nil {
			req.closer.Close()
		}
		m.endOperation(op, d.ID, err)
	}()
	return op, nil
}

// reserve validates the location, records the distro as Installing and makes its
// empty staging directory. A location of the user's is made safe first
// (prepareLocation): mode 0700 under parents only root can change.
func (m *Manager) reserve(ctx context.Context, name string, version int, location, user string) (store.Distro, string, error) {
	id := uuid.NewString()
	var staging string
	created := false
	if location == "" {
		location = filepath.Join(m.cfg.distrosDir(), id)
		staging = filepath.Join(m.cfg.tmpDir(), id)
	} else {
		if !filepath.IsAbs(location) {
			return store.Distro{}, "", fmt.Errorf("%w: location %q must be an absolute path", ErrInvalid, location)
		}
		real, made, err := prepareLocation(filepath.Clean(location))
		if err != nil {
			return store.Distro{}, "", err
		}
		location, created = real, made
		staging = filepath.Join(location, stagingName)
	}
	d := store.Distro{ID: id, Name: name, Version: version, State: string(StateInstalling), Location: location, DefaultUser: user}
	if err := m.cfg.Store.CreateDistro(ctx, d); err != nil {
		if created {
			os.Remove(location)
		}
		if errors.Is(err, store.ErrNameTaken) {
			return d, "", fmt.Errorf("%w: a distro named %q already exists", ErrExists, name)
		}
		return d, "", err
	}
	// The staging directory becomes the distro's / (0755, as any /, unless the
	// archive says otherwise); what keeps host users out is the 0700 directory
	// it is in (tmp/, then distros/<id> or the location).
	if err := os.Mkdir(staging, 0o755); err != nil {
		m.unreserve(d)
		return d, "", noSpace(fmt.Errorf("create staging directory: %w", err))
	}
	return d, staging, nil
}

// unreserve forgets a distro whose import did not complete and removes its files.
func (m *Manager) unreserve(d store.Distro) {
	ctx := context.WithoutCancel(m.ctx)
	m.removeFiles(d)
	if err := archive.RemoveAll(filepath.Join(m.cfg.tmpDir(), d.ID)); err != nil {
		m.log.Warn("cannot remove failed import's staging files", "distro", d.Name, "err", err)
	}
	if err := m.cfg.Store.DeleteDistro(ctx, d.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		m.log.Warn("cannot remove failed distro row", "distro", d.Name, "err", err)
	}
}

// populate extracts src into staging, makes the distro's files from it
// (storage.install: the tree moved into place, or an image made of it) and
// marks the distro Stopped, recording what it read in op's result; or, for
// a raw image, writes the image into place; or, for a version 2 distro on
// a host that does not extract trees (guestUnpack), has the VM make the
// image from src (buildInGuest). On any failure nothing of the
// distro remains. The import keeps the settings' reserve free on the file
// system it writes to, and fails with ErrInsufficientStorage when it would
// go below it or the file system is full.
func (m *Manager) populate(ctx context.Context, d store.Distro, staging string, src io.Reader, bodyDone chan struct{}, op *Operation, p importParams) (err error) {
	defer func() {
		if bodyDone != nil {
			close(bodyDone)
		}
		if err != nil {
			m.unreserve(d)
			err = fmt.Errorf("import %s: %w", d.Name, err)
		}
	}()
	settings, err := m.Settings(ctx)
	if err != nil {
		return err
	}
	if p.raw {
		if err := m.importImage(ctx, d, staging, src, p.maxSize, settings); err != nil {
			return err
		}
	} else if d.Version == 2 && guestUnpack() {
		// The VM makes the disk: the host extracts nothing.
		if err := m.buildInGuest(ctx, d, staging, src, op, p, settings); err != nil {
			return err
		}
		if err := m.finishSource(ctx, &d, p); err != nil {
			return err
		}
		close(bodyDone)
		bodyDone = nil
		if err := m.placeImage(d, staging, filepath.Join(staging, DiskImageName)); err != nil {
			return err
		}
	} else {
		limits := settings.limits(m.cfg.Limits)
		if d.Version == 2 && (limits.MaxExpandedBytes <= 0 || limits.MaxExpandedBytes > p.maxSize) {
			// A tree larger than the disk stops at once, not after
			// it is all extracted.
			limits.MaxExpandedBytes = p.maxSize
		}
		stats, err := archive.Extract(ctx, src, staging, limits)
		op.setResult(OperationResult{Entries: stats.Entries, Bytes: stats.Bytes, SkippedDevices: stats.SkippedDevices, Warnings: stats.Warnings})
		if err != nil {
			return mapArchiveErr(err)
		}
		if err := m.finishSource(ctx, &d, p); err != nil {
			return err
		}
		// The body is fully read: the uploader can have its answer while we finish.
		close(bodyDone)
		bodyDone = nil
		if err := m.storage(d.Version).install(ctx, d, staging, buildParams{maxSize: p.maxSize, stats: stats, settings: settings}); err != nil {
			return err
		}
	}
	return m.completeImport(ctx, d)
}

// finishSource ends the import's reading of its source (p.finish: a
// build's exit status, a download's checksum) and takes the source's
// default user (p.defaultUser) for d.
func (m *Manager) finishSource(ctx context.Context, d *store.Distro, p importParams) error {
	if p.finish != nil {
		if err := p.finish(); err != nil {
			return err
		}
	}
	if p.defaultUser != nil {
		// A name from the source: used only when it is a valid one.
		if u := p.defaultUser(); u != "" && u != d.DefaultUser && ValidateUser(u) == nil {
			d.DefaultUser = u
			if err := m.cfg.Store.UpdateDistro(ctx, *d); err != nil {
				return err
			}
		}
	}
	return nil
}

// completeImport marks a new distro whose files are in place Stopped, the
// default when it is the first.
func (m *Manager) completeImport(ctx context.Context, d store.Distro) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.cfg.Store.SetDistroState(context.WithoutCancel(ctx), d.ID, string(StateStopped)); err != nil {
		return err
	}
	if d.Version == 2 {
		// A new disk's size and allocation are two stats away: shown at
		// once, not after the next minute's sample (a tree's walk waits).
		m.refreshDisk(context.WithoutCancel(ctx), d)
	}
	return m.fixDefault(context.WithoutCancel(ctx))
}

// mapArchiveErr maps the archive package's sentinels to vmm's.
func mapArchiveErr(err error) error {
	switch {
	case errors.Is(err, archive.ErrInsufficientStorage):
		return fmt.Errorf("%w: %w", ErrInsufficientStorage, err)
	case errors.Is(err, archive.ErrLimit):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, archive.ErrUnsafe), errors.Is(err, archive.ErrFormat), errors.Is(err, archive.ErrCorrupt):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// noSpace marks err as ErrInsufficientStorage when it is a full file system
// (ENOSPC, EDQUOT).
func noSpace(err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%w: %w", ErrInsufficientStorage, err)
	}
	return err
}

// Export streams distro name's root file system to w as a tarball in format
// f; a version 2 distro's through its backend (TreeExporter), which reads it
// where it is mounted. With f FormatImage it streams a version 2 distro's
// raw disk image instead, which needs the distro stopped (ErrBusy when it
// runs), and keeps it stopped until done.
func (m *Manager) Export(ctx context.Context, name string, w io.Writer, f archive.Format) error {
	d, err := m.row(ctx, name)
	if err != nil {
		return err
	}
	if err := m.installed(d); err != nil {
		return err
	}
	if err := m.canExport(d, f); err != nil {
		return err
	}
	var op *Operation
	var opCtx context.Context
	if f == FormatImage {
		op, opCtx, err = m.beginExclusive(KindExport, d, StateExporting, "its disk image can only be exported while it is stopped")
	} else {
		op, opCtx, err = m.beginOperation(KindExport, d, StateExporting)
	}
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, op.cancel)
	defer stop()
	m.audit(ctx, "export", d.Name, string(f))
	if f == FormatImage {
		err = m.exportImage(opCtx, d, w, op)
	} else {
		err = m.storage(d.Version).export(opCtx, d, &countingWriter{w: w, op: op}, f)
	}
	if err != nil {
		err = fmt.Errorf("export %s: %w", d.Name, err)
	}
	m.endOperation(op, d.ID, err)
	return err
}

type countingWriter struct {
	w  io.Writer
	op *Operation
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.op.done.Add(int64(n))
	return n, err
}

// installed refuses distros that are still being imported or removed.
func (m *Manager) installed(d store.Distro) error {
	switch State(d.State) {
	case StateInstalling, StateUninstalling:
		m.mu.Lock()
		held := m.opsByDistro[d.ID]
		m.mu.Unlock()
		if held != nil {
			return &BusyError{Distro: d.Name, Op: held.Info()}
		}
		return fmt.Errorf("%w: distro %q is %s", ErrBusy, d.Name, strings.ToLower(d.State))
	}
	return nil
}

// Clone copies distro name into a new distro newName of the same version: a
// version 1 distro through the same hardened archive path as an import, a
// version 2 distro by copying its disk image (sparse, or a reflink where the
// file system can), which needs it stopped (ErrBusy when it runs) and keeps
// it stopped until done.
func (m *Manager) Clone(ctx context.Context, name, newName string) (*Operation, error) {
	src, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := ValidateName(newName); err != nil {
		return nil, err
	}
	if err := m.installed(src); err != nil {
		return nil, err
	}
	// A name already taken is refused before the source's operation begins,
	// so it does not show (and log) a failed export. reserve below still
	// decides, should the name be taken in between.
	if _, err := m.row(ctx, newName); err == nil {
		return nil, fmt.Errorf("%w: a distro named %q already exists", ErrExists, newName)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if src.Version == 2 {
		return m.cloneV2(ctx, src, newName)
	}
	srcOp, srcCtx, err := m.beginOperation(KindExport, src, "")
	if err != nil {
		return nil, err
	}
	d, staging, err := m.reserve(ctx, newName, src.Version, "", src.DefaultUser)
	if err != nil {
		m.endOperation(srcOp, src.ID, err)
		return nil, err
	}
	op, opCtx, err := m.beginOperation(KindClone, d, StateInstalling)
	if err != nil {
		m.unreserve(d)
		m.endOperation(srcOp, src.ID, err)
		return nil, err
	}
	stop := context.AfterFunc(opCtx, srcOp.cancel)
	m.audit(ctx, "clone", src.Name, "to "+newName)
	pr, pw := io.Pipe()
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		werr := archive.Write(srcCtx, &countingWriter{w: pw, op: op}, m.spec(src).RootFS, archive.Tar)
		pw.CloseWithError(werr)
		m.endOperation(srcOp, src.ID, werr)
	}()
	go func() {
		defer m.wg.Done()
		defer stop()
		err := m.populate(opCtx, d, staging, pr, make(chan struct{}), op, importParams{})
		pr.CloseWithError(errors.New("clone ended"))
		// The clone has ended for clients only once its source is free too.
		<-srcOp.Done()
		m.endOperation(op, d.ID, err)
	}()
	return op, nil
}

// cloneV2 is Clone of version 2 distro src: a copy of its image, made while
// src is held stopped.
func (m *Manager) cloneV2(ctx context.Context, src store.Distro, newName string) (*Operation, error) {
	srcOp, srcCtx, err := m.beginExclusive(KindExport, src, "", "its disk image can only be copied while it is stopped")
	if err != nil {
		return nil, err
	}
	d, staging, err := m.reserve(ctx, newName, src.Version, "", src.DefaultUser)
	if err != nil {
		m.endOperation(srcOp, src.ID, err)
		return nil, err
	}
	op, opCtx, err := m.beginOperation(KindClone, d, StateInstalling)
	if err != nil {
		m.unreserve(d)
		m.endOperation(srcOp, src.ID, err)
		return nil, err
	}
	// Cancelling either operation stops the copy.
	stop := context.AfterFunc(srcCtx, op.cancel)
	m.audit(ctx, "clone", src.Name, "to "+newName)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := m.cloneImage(opCtx, src, d, staging, op)
		if err == nil {
			err = m.completeImport(opCtx, d)
		}
		if err != nil {
			m.unreserve(d)
			err = fmt.Errorf("import %s: %w", d.Name, err)
		}
		stop()
		m.endOperation(srcOp, src.ID, err)
		m.endOperation(op, d.ID, err)
	}()
	return op, nil
}

// Start starts distro name; starting a running distro does nothing.
func (m *Manager) Start(ctx context.Context, name string) (Distro, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return Distro{}, err
	}
	if _, err := m.ensureRunning(ctx, d); err != nil {
		return Distro{}, err
	}
	return m.Get(ctx, d.Name)
}

// ensureRunning returns the distro's agent, starting the distro when it is stopped.
func (m *Manager) ensureRunning(ctx context.Context, d store.Distro) (*agent.Client, error) {
	if c := m.client(d.ID); c != nil {
		return c, nil
	}
	if err := m.needBackend(d.Version); err != nil {
		return nil, err
	}
	if err := m.installed(d); err != nil {
		return nil, err
	}
	b := m.cfg.Backends[d.Version]
	l := m.startLock(d.ID)
	l.Lock()
	defer l.Unlock()
	if c := m.client(d.ID); c != nil {
		return c, nil
	}
	// An operation that works on the stopped distro's files (a version
	// change, a copy of its disk image) holds it stopped until it ends.
	m.mu.Lock()
	held := m.opsByDistro[d.ID]
	m.mu.Unlock()
	if held != nil && held.exclusive {
		return nil, &BusyError{Distro: d.Name, Op: held.Info()}
	}
	// The limits as they are now, under the lock a change of them takes.
	if fresh, err := m.cfg.Store.Distro(ctx, d.Name); err == nil && fresh.ID == d.ID {
		d.MemoryMax, d.CPUMax, d.PidsMax = fresh.MemoryMax, fresh.CPUMax, fresh.PidsMax
	}
	c, err := b.Start(ctx, m.spec(d))
	if errors.Is(err, cgroup.ErrNoController) {
		return nil, fmt.Errorf("start %s: %w (remove its limits to start it without): %w", d.Name, ErrLimits, err)
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", d.Name, err)
	}
	m.newRun(d.ID)
	m.adopt(ctx, d, c)
	if err := m.cfg.Store.SetDistroState(context.WithoutCancel(ctx), d.ID, string(StateRunning)); err != nil {
		return nil, err
	}
	m.publishChanges(ctx)
	m.audit(ctx, "start", d.Name, "")
	m.log.Info("distro started", "distro", d.Name)
	return c, nil
}

// Terminate stops every process of distro name. Terminating a stopped distro does nothing.
func (m *Manager) Terminate(ctx context.Context, name string) error {
	d, err := m.row(ctx, name)
	if err != nil {
		return err
	}
	return m.terminate(ctx, d)
}

func (m *Manager) terminate(ctx context.Context, d store.Distro) error {
	b, ok := m.cfg.Backends[d.Version]
	if !ok {
		return nil
	}
	l := m.startLock(d.ID)
	l.Lock()
	defer l.Unlock()
	m.mu.Lock()
	c := m.clients[d.ID]
	delete(m.clients, d.ID)
	delete(m.outdated, d.ID)
	m.mu.Unlock()
	if c != nil {
		defer c.Close()
	}
	if err := b.Stop(ctx, m.spec(d)); err != nil {
		return fmt.Errorf("terminate %s: %w", d.Name, err)
	}
	m.newRun(d.ID)
	if State(d.State) == StateRunning || c != nil {
		if err := m.cfg.Store.SetDistroState(context.WithoutCancel(ctx), d.ID, string(StateStopped)); err != nil {
			return err
		}
		m.audit(ctx, "terminate", d.Name, "")
		m.log.Info("distro terminated", "distro", d.Name)
	}
	m.publishChanges(ctx)
	return nil
}

// Shutdown terminates every running distro.
func (m *Manager) Shutdown(ctx context.Context) error {
	rows, err := m.cfg.Store.Distros(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range rows {
		if m.client(d.ID) != nil || State(d.State) == StateRunning {
			errs = append(errs, m.terminate(ctx, d))
		}
	}
	// Then the utility VM, as `wsl --shutdown` stops WSL 2's.
	if b := m.vmBackend(); b != nil {
		errs = append(errs, b.ShutdownVM(ctx))
	}
	m.audit(ctx, "shutdown", "", "")
	return errors.Join(errs...)
}

// Forgetter is implemented by backends that keep files of their own for a
// distro beyond its run (an agent log, a cgroup, a disk cache): Forget removes
// them once the distro is unregistered. The distro is stopped by then.
type Forgetter interface {
	Forget(ctx context.Context, s Spec) error
}

// Unregister terminates distro name and deletes it: its row and all its files.
func (m *Manager) Unregister(ctx context.Context, name string) error {
	d, err := m.row(ctx, name)
	if err != nil {
		return err
	}
	if err := m.installed(d); err != nil {
		return err
	}
	op, _, err := m.beginOperation(KindUnregister, d, StateUninstalling)
	if err != nil {
		return err
	}
	err = m.unregister(ctx, d)
	m.endOperation(op, d.ID, err)
	return err
}

func (m *Manager) unregister(ctx context.Context, d store.Distro) error {
	if err := m.terminate(ctx, d); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	// Mark first: a crash from here on is finished by the next start's recovery.
	if err := m.cfg.Store.SetDistroState(ctx, d.ID, string(StateUninstalling)); err != nil {
		return err
	}
	m.removeFiles(d)
	// Its snapshots go with it (a crash before this is finished by
	// recoverSnapshots, once the row is gone).
	if err := archive.RemoveAll(m.cfg.snapshotsDir(d.ID)); err != nil {
		m.log.Warn("cannot remove the distro's snapshots", "distro", d.Name, "err", err)
	}
	if f, ok := m.cfg.Backends[d.Version].(Forgetter); ok {
		if err := f.Forget(ctx, m.spec(d)); err != nil {
			m.log.Warn("cannot remove the distro's run files", "distro", d.Name, "err", err)
		}
	}
	if err := m.cfg.Store.DeleteDistro(ctx, d.ID); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.starts, d.ID)
	m.mu.Unlock()
	m.sampler.mu.Lock()
	delete(m.sampler.states, d.ID)
	m.sampler.mu.Unlock()
	m.audit(ctx, "unregister", d.Name, "")
	m.log.Info("distro unregistered", "distro", d.Name)
	return m.fixDefault(ctx)
}

// Update is a change to a distro's settings; nil fields stay as they are.
type Update struct {
	Name        *string `json:"name,omitempty"`
	Default     *bool   `json:"default,omitempty"`
	DefaultUser *string `json:"default_user,omitempty"`
	// Systemd turns the distro's systemd as PID 1 on or off from its next
	// start.
	Systemd *bool `json:"systemd,omitempty"`
	// MemoryMax, CPUMax and PidsMax set a limit (0 removes it); see Limits.
	MemoryMax *int64   `json:"memory_max,omitempty"`
	CPUMax    *float64 `json:"cpu_max,omitempty"`
	PidsMax   *int64   `json:"pids_max,omitempty"`
}

// Update applies u to distro name and returns the result.
func (m *Manager) Update(ctx context.Context, name string, u Update) (Distro, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return Distro{}, err
	}
	if u.Name != nil {
		if err := ValidateName(*u.Name); err != nil {
			return Distro{}, err
		}
	}
	if u.DefaultUser != nil {
		if err := ValidateUser(*u.DefaultUser); err != nil {
			return Distro{}, err
		}
	}
	if u.Default != nil && !*u.Default {
		return Distro{}, fmt.Errorf("%w: to change the default, set another distro as default", ErrInvalid)
	}
	limits, limitsChanged, err := limitsUpdate(d, u)
	if err != nil {
		return Distro{}, err
	}
	if err := m.installed(d); err != nil {
		return Distro{}, err
	}
	m.mu.Lock()
	held := m.opsByDistro[d.ID]
	m.mu.Unlock()
	// A rename waits for any operation (it names the distro's files and
	// events); a change of default user waits for a version change, which
	// rewrites the row when it ends.
	if held != nil && (u.Name != nil || (u.DefaultUser != nil && held.kind == KindSetVersion)) {
		return Distro{}, &BusyError{Distro: d.Name, Op: held.Info()}
	}
	changed := d
	if u.Name != nil {
		changed.Name = *u.Name
	}
	if u.DefaultUser != nil {
		changed.DefaultUser = *u.DefaultUser
	}
	if u.Systemd != nil {
		changed.Systemd = *u.Systemd
	}
	if changed != d {
		if err := m.cfg.Store.UpdateDistro(ctx, changed); err != nil {
			if errors.Is(err, store.ErrNameTaken) {
				return Distro{}, fmt.Errorf("%w: a distro named %q already exists", ErrExists, changed.Name)
			}
			return Distro{}, err
		}
		m.audit(ctx, "update", d.Name, fmt.Sprintf("name=%s default_user=%s systemd=%t", changed.Name, changed.DefaultUser, changed.Systemd))
	}
	if u.Default != nil {
		if err := m.cfg.Store.SetSetting(ctx, settingDefaultDistro, d.ID); err != nil {
			return Distro{}, err
		}
		m.audit(ctx, "set-default", changed.Name, "")
	}
	if limitsChanged {
		changed.MemoryMax, changed.CPUMax, changed.PidsMax = limits.MemoryMax, limits.CPUMax, limits.PidsMax
		if err := m.setLimits(ctx, changed, limits); err != nil {
			m.publishChanges(ctx)
			return Distro{}, err
		}
	}
	m.publishChanges(ctx)
	return m.Get(ctx, changed.Name)
}

// Exec starts a process in distro name (starting the distro when it is stopped).
// An empty req.User means the distro's default user.
func (m *Manager) Exec(ctx context.Context, name string, req agent.ExecRequest) (*agent.Process, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	if req.User == "" {
		req.User = d.DefaultUser
	} else if err := ValidateUser(req.User); err != nil {
		return nil, err
	}
	c, err := m.ensureRunning(ctx, d)
	if err != nil {
		return nil, err
	}
	p, err := c.Exec(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", d.Name, err)
	}
	return p, nil
}

// Agent returns distro name's agent, starting the distro when it is stopped. The
// server uses it for terminal sessions, which live in the agent.
func (m *Manager) Agent(ctx context.Context, name string) (*agent.Client, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	return m.ensureRunning(ctx, d)
}

// RunningAgent returns distro name's agent, or nil when the distro is not running.
func (m *Manager) RunningAgent(ctx context.Context, name string) (*agent.Client, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	return m.client(d.ID), nil
}
