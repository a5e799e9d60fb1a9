package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// moveWhat is why a running distro cannot be moved, for beginExclusive's
// ErrBusy: a version 1 distro writes its tree and a version 2 distro's VM
// its image while they run, so a copy of either would be torn.
const moveWhat = "its files can only be moved while it is stopped"

// Move moves stopped distro name's files (a version 1 tree or a version 2
// image) to the directory location, as `wsl --manage NAME --move DIR`
// does, in an operation of kind KindMove. The distro keeps its name, id,
// version, default user and default-ness; only its Location changes.
//
// location is checked as an import's is: absolute (cleaned), under
// directories only root can change, and empty or missing; it is made, or
// set to mode 0700 (prepareLocation). Empty means the distro's own
// directory in the data directory, where an import without a location puts
// it. The distro's current location, a directory inside it or inside
// another distro's location, and any other place in the data directory
// are ErrInvalid: what is there belongs to subsys or to another distro.
//
// On the same file system the files are renamed, which is instant. On
// another (EXDEV) they are copied, with progress in bytes: a version 2
// image sparse (copyImage: its data extents only; a reflink cannot cross
// file systems), after checking that its allocation fits above the
// settings' free-space reserve
// (ErrInsufficientStorage); a version 1 tree by streaming archive.Write
// into archive.Extract, as a conversion and a clone do (confined
// extraction; owners, modes, times, extended attributes, hard links, fifos
// and device nodes under /dev kept; holes of sparse files are written as
// zeros, since the archive has none), also after checking the free space,
// which Extract then keeps checking. Either copy is made in the staging
// directory inside the new location and renamed into place once complete.
//
// Only then does the distro's row take the new location, and then the old
// files are removed, with the old location's directory when it was the
// distro's own in the data directory or holds nothing else. Until then a
// failure or a cancel moves nothing: what the move made in the new
// location is removed (the directory too, when Move made it), and the
// distro is where it was. A crash meanwhile is finished or undone at the
// next start from a journal the move keeps in the data directory's tmp/
// (recoverMoves).
//
// The distro must be stopped (ErrBusy, naming `subsys terminate`, when it
// runs), no start succeeds until the operation ends, and it shows Stopped
// meanwhile, at its old location.
func (m *Manager) Move(ctx context.Context, name, location string) (*Operation, error) {
	d, err := m.row(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := m.installed(d); err != nil {
		return nil, err
	}
	to, isDefault, err := m.moveTarget(ctx, d, location)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(m.storage(d.Version).path(d.Location)); err != nil {
		return nil, fmt.Errorf("move %s: the distro's files are not in %s: %w", d.Name, d.Location, err)
	}
	// A running or held distro is refused before its new location is
	// made or its mode changed; beginExclusive below still decides.
	if m.client(d.ID) != nil {
		return nil, fmt.Errorf("%w: distro %q is running and %s: stop it first with `subsys terminate %s`", ErrBusy, d.Name, moveWhat, d.Name)
	}
	m.mu.Lock()
	held := m.opsByDistro[d.ID]
	m.mu.Unlock()
	if held != nil {
		return nil, &BusyError{Distro: d.Name, Op: held.Info()}
	}
	to, created, err := makeMoveTarget(to, isDefault)
	if err != nil {
		return nil, err
	}
	op, opCtx, err := m.beginExclusive(KindMove, d, "", moveWhat)
	if err == nil {
		// The checks above read the row before the operation held the
		// distro: another move or a conversion may have ended between.
		if cur, rerr := m.row(ctx, d.Name); rerr != nil || cur.ID != d.ID || cur.Location != d.Location || cur.Version != d.Version {
			err = fmt.Errorf("%w: distro %q changed while its move began: try again", ErrBusy, d.Name)
			m.endOperation(op, d.ID, err)
		}
	}
	if err != nil {
		if created {
			os.Remove(to)
		}
		return nil, err
	}
	m.audit(ctx, "move", d.Name, fmt.Sprintf("from %s to %s", d.Location, to))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := m.move(opCtx, d, to, created, op)
		if err != nil {
			err = fmt.Errorf("move %s: %w", d.Name, err)
		}
		m.endOperation(op, d.ID, err)
	}()
	return op, nil
}

// moveTarget checks location as the new home of distro d's files and
// returns it with the symlinks of its existing part resolved, or the
// distro's own directory in the data directory (isDefault) for "" or that
// directory's path. It makes nothing: see makeMoveTarget.
func (m *Manager) moveTarget(ctx context.Context, d store.Distro, location string) (to string, isDefault bool, err error) {
	def := filepath.Join(m.cfg.distrosDir(), d.ID)
	if location == "" {
		location = def
	}
	if !filepath.IsAbs(location) {
		return "", false, fmt.Errorf("%w: location %q must be an absolute path", ErrInvalid, location)
	}
	real, err := moveRealPath(filepath.Clean(location))
	if err != nil {
		return "", false, fmt.Errorf("%w: location %s: %v", ErrInvalid, location, err)
	}
	// Compared resolved, so that a path through a symlink is seen for the
	// place it names.
	resolved := func(p string) string {
		if r, err := moveRealPath(p); err == nil {
			return r
		}
		return p
	}
	old := resolved(d.Location)
	switch {
	case real == old:
		return "", false, fmt.Errorf("%w: distro %q is already in %s", ErrInvalid, d.Name, location)
	case isWithin(real, old):
		return "", false, fmt.Errorf("%w: location %s is inside distro %q's own directory %s: choose a directory outside it", ErrInvalid, location, d.Name, d.Location)
	case real == resolved(def):
		// Stored as an import stores it, so that removeFiles knows it
		// for the distro's own directory.
		return def, true, nil
	case isWithin(real, resolved(m.cfg.DataDir)):
		// Recovery empties tmp/, and an unregister removes a whole
		// distros/<id>: nothing else may live there.
		return "", false, fmt.Errorf("%w: location %s is inside subsys's data directory %s, which the server manages: choose a directory outside it (or no location, for the distro's own directory there)", ErrInvalid, location, m.cfg.DataDir)
	}
	rows, err := m.cfg.Store.Distros(ctx)
	if err != nil {
		return "", false, err
	}
	for _, o := range rows {
		// Inside another distro's location, its unregister or move
		// could remove the files, or a v1 distro could reach them.
		if o.ID != d.ID && isWithin(real, resolved(o.Location)) {
			return "", false, fmt.Errorf("%w: location %s is inside distro %q's directory %s: choose a directory outside it", ErrInvalid, location, o.Name, o.Location)
		}
	}
	return real, false, nil
}

// makeMoveTarget makes the checked location to safe to move into and
// returns its path (created says whether it made the directory): a
// location of the user's by prepareLocation, as an import's; the distro's
// own directory in the data directory, whose parents the server made, as
// reserve makes it.
func makeMoveTarget(to string, isDefault bool) (string, bool, error) {
	if !isDefault {
		return prepareLocation(to)
	}
	err := os.Mkdir(to, 0o700)
	if err == nil {
		return to, true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return "", false, noSpace(fmt.Errorf("create %s: %w", to, err))
	}
	// Left by a crash: usable when empty.
	if entries, err := os.ReadDir(to); err != nil || len(entries) > 0 {
		return "", false, fmt.Errorf("%w: location %s is not empty", ErrInvalid, to)
	}
	if _, err := securePrivateDir(to); err != nil {
		return "", false, err
	}
	return to, false, nil
}

// isWithin reports whether the clean path p is dir or below it.
func isWithin(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// moveJournal is what a move records, before it touches any file, for the
// next start to finish or undo it after a crash (recoverMoves). It lives
// in the data directory's tmp/, which recovery empties right after
// reading it, so no journal outlives the start that follows the crash.
type moveJournal struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version int    `json:"version"`
	From    string `json:"from"`
	To      string `json:"to"`
	// Created: the move made To, so undoing it removes To.
	Created bool `json:"created"`
}

// moveJournalPrefix names move journals in tmp/, where the other entries
// are staging trees named by distro id.
const moveJournalPrefix = "move-"

func (m *Manager) moveJournalPath(id string) string {
	return filepath.Join(m.cfg.tmpDir(), moveJournalPrefix+id+".json")
}

// writeMoveJournal records j durably: the file and its directory synced.
func (m *Manager) writeMoveJournal(j moveJournal) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	p := m.moveJournalPath(j.ID)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return noSpace(fmt.Errorf("write move journal: %w", err))
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
		return noSpace(fmt.Errorf("write move journal: %w", err))
	}
	moveSyncDir(m.cfg.tmpDir())
	return nil
}

// removeMoveJournal forgets the move of distro id: it has ended and left
// nothing to finish.
func (m *Manager) removeMoveJournal(id string) {
	if err := os.Remove(m.moveJournalPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.Warn("cannot remove move journal", "id", id, "err", err)
	}
}

// moveSyncDir fsyncs directory dir, so that a rename or a new entry in it
// survives a crash before what depends on it (the row's new location) is
// written. A failure is not an error: recovery handles what a crash loses.
func moveSyncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

// move moves distro d's files to to (created: Move made it) and switches
// its row; see Move.
//
// The steps, and what recovery (finishMove) does when a crash stops them:
// the journal is written; to's staging directory is made, which claims to
// (another import or move into it fails on it); the files are renamed
// there, or copied into staging and renamed into place once complete,
// never over an existing file; the row takes to; staging goes, then the
// old files, then the journal. Recovery decides by the row and by where
// the files are: before the row's switch it undoes the move (a renamed
// tree or image is renamed back, a copy removed), after it it removes the
// old files. A crash before the journal is written leaves at most to
// itself, empty, when Move made it.
func (m *Manager) move(ctx context.Context, d store.Distro, to string, created bool, op *Operation) (err error) {
	st := m.storage(d.Version)
	src, dst := st.path(d.Location), st.path(to)
	staging := filepath.Join(to, stagingName)
	if err := m.writeMoveJournal(moveJournal{ID: d.ID, Name: d.Name, Version: d.Version, From: d.Location, To: to, Created: created}); err != nil {
		if created {
			os.Remove(to)
		}
		return err
	}
	var claimed, renamed, placed, committed bool
	defer func() {
		if committed {
			return
		}
		// Nothing moves: the files go back, what the move made goes.
		if renamed {
			if rerr := moveRename(dst, src); rerr != nil {
				// The journal stays: the next start puts them back.
				m.log.Error("cannot move the distro's files back after a failed move; the next start of the server does", "distro", d.Name, "from", dst, "to", src, "err", rerr)
				err = fmt.Errorf("%w; and the files could not be moved back from %s (the next start of the server does): %v", err, dst, rerr)
				return
			}
			moveSyncDir(d.Location)
		}
		if placed {
			if rerr := archive.RemoveAll(dst); rerr != nil {
				m.log.Warn("cannot remove a failed move's copy", "distro", d.Name, "path", dst, "err", rerr)
			}
		}
		if claimed {
			if rerr := archive.RemoveAll(staging); rerr != nil {
				m.log.Warn("cannot remove a failed move's staging", "distro", d.Name, "path", staging, "err", rerr)
			}
		}
		if created {
			os.Remove(to) // only when empty: what else is there is not the move's
		}
		m.removeMoveJournal(d.ID)
	}()
	if err := os.Mkdir(staging, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: another import or move is writing to %s", ErrBusy, to)
		}
		return noSpace(fmt.Errorf("create staging directory: %w", err))
	}
	claimed = true
	if err := ctx.Err(); err != nil {
		return err
	}
	switch err := moveRename(src, dst); {
	case err == nil:
		renamed = true
		moveSyncDir(to)
		moveSyncDir(d.Location)
	case isCrossDevice(err):
		if d.Version == 2 {
			err = m.moveImage(ctx, src, staging, dst, op)
		} else {
			err = m.moveTree(ctx, src, staging, dst, op)
		}
		if err != nil {
			return err
		}
		placed = true
		moveSyncDir(to)
	default:
		return fmt.Errorf("move the distro's files: %w", err)
	}
	// A cancel that came during the rename or after the copy still
	// counts: the files go back.
	if err := ctx.Err(); err != nil {
		return err
	}
	// The switch. The row is read again: its default user may have
	// changed since Move read it (a rename cannot: the operation holds
	// the distro).
	wctx := context.WithoutCancel(ctx)
	row, err := m.row(wctx, d.Name)
	if err != nil {
		return err
	}
	if row.ID != d.ID {
		return fmt.Errorf("%w: distro %q was replaced during the move", ErrBusy, d.Name)
	}
	row.Location = to
	if err := m.cfg.Store.UpdateDistro(wctx, row); err != nil {
		return err
	}
	committed = true
	// From here the move has happened; what is left is tidying, which
	// recovery finishes after a crash.
	if err := os.Remove(staging); err != nil {
		m.log.Warn("cannot remove the move's staging directory", "distro", d.Name, "path", staging, "err", err)
	}
	m.removeFiles(d) // d still names the old location
	if _, err := os.Lstat(src); err == nil {
		// The journal stays, for the next start to try again.
		m.log.Warn("cannot remove all of the distro's old files; the next start of the server tries again", "distro", d.Name, "path", src)
	} else {
		m.removeMoveJournal(d.ID)
	}
	// The next sample measures the files where they are now.
	m.sampler.mu.Lock()
	if st := m.sampler.states[d.ID]; st != nil {
		st.diskAt = st.diskAt.AddDate(-1, 0, 0)
	}
	m.sampler.mu.Unlock()
	m.log.Info("distro moved", "distro", d.Name, "from", d.Location, "to", to, "copied", !renamed)
	return nil
}

// moveStep is called with the bytes copied so far as a move's copy goes
// on. It does nothing; a test replaces it to act at a point of its choice
// in the copy (cancel it, fill the file system under it).
var moveStep = func(copied int64) {}

// moveImage copies the version 2 image src to dst (a move to another file
// system, a clone, a snapshot): into staging first, keeping its holes or
// as a reflink where the file system can (copyImage), then into place.
func (m *Manager) moveImage(ctx context.Context, src, staging, dst string, op *Operation) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open disk image: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("disk image %s is not a regular file", src)
	}
	op.total.Store(st.Size())
	settings, err := m.Settings(ctx)
	if err != nil {
		return err
	}
	// A reflink would take nothing, but whether there will be one is only
	// known by trying (and there is none across file systems): ask for the
	// room a real copy takes.
	_, allocated, err := disk.Usage(src)
	if err != nil {
		return err
	}
	if err := checkFree(staging, allocated, settings); err != nil {
		return err
	}
	tmp := filepath.Join(staging, filepath.Base(dst))
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return noSpace(fmt.Errorf("create disk image: %w", err))
	}
	err = copyImage(ctx, out, in, func(n int64) { moveStep(op.done.Add(n)) })
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return noSpace(fmt.Errorf("copy disk image: %w", err))
	}
	if err := moveRename(tmp, dst); err != nil {
		return fmt.Errorf("move disk image into place: %w", err)
	}
	return nil
}

// errMoveEnded is what a move's archive.Write sees when Extract has
// stopped reading.
var errMoveEnded = errors.New("move ended")

// moveTree copies the version 1 tree src to dst on another file system:
// archive.Write streamed into archive.Extract in staging, then renamed
// into place.
func (m *Manager) moveTree(ctx context.Context, src, staging, dst string, op *Operation) error {
	settings, err := m.Settings(ctx)
	if err != nil {
		return err
	}
	u, err := archive.DiskUsage(ctx, src)
	if err != nil {
		return fmt.Errorf("measure the distro's files: %w", err)
	}
	// The archive holds no holes, so the copy takes the files' apparent
	// size; what a directory takes differs between file systems, which
	// Extract's own checks as it writes settle.
	if err := checkFree(staging, u.Apparent, settings); err != nil {
		return err
	}
	// Progress is the archive's bytes against its likely size (the
	// data, and a header per entry): near enough, and never past the
	// end (boundedProgress).
	op.total.Store(max(u.Apparent+512*u.Entries, 1))
	tree := filepath.Join(staging, filepath.Base(dst))
	if err := os.Mkdir(tree, 0o755); err != nil {
		return noSpace(fmt.Errorf("create staging directory: %w", err))
	}
	pr, pw := io.Pipe()
	exported := make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		werr := archive.Write(ctx, &stepWriter{w: &boundedProgress{w: pw, op: op}, op: op}, src, archive.Tar)
		pw.CloseWithError(werr)
		exported <- werr
	}()
	// The tree is the distro's own, already on the host: the bounds on
	// an untrusted archive (its size, its entries) would only keep a
	// large distro where it is. The free-space reserve stays.
	limits := settings.limits(m.cfg.Limits)
	limits.MaxExpandedBytes, limits.MaxEntries = math.MaxInt64, math.MaxInt
	stats, xerr := archive.Extract(ctx, pr, tree, limits)
	// Stop the export when the extraction ended first.
	pr.CloseWithError(errMoveEnded)
	werr := <-exported
	op.setResult(OperationResult{Entries: stats.Entries, Bytes: stats.Bytes, SkippedDevices: stats.SkippedDevices, Warnings: stats.Warnings})
	switch {
	case werr != nil && !errors.Is(werr, errMoveEnded):
		// The export's error is the cause, and the extraction's (a
		// truncated archive) its consequence, unless the export only
		// saw the extraction stop.
		return fmt.Errorf("read the distro's files: %w", werr)
	case xerr != nil:
		// Only a full file system is the caller's to act on; the rest
		// (ErrCorrupt and such) is not a fault of the request, so it is
		// not mapped to ErrInvalid as an import's archive errors are.
		if errors.Is(xerr, archive.ErrInsufficientStorage) {
			return fmt.Errorf("write the distro's files: %w: %w", ErrInsufficientStorage, xerr)
		}
		return fmt.Errorf("write the distro's files: %w", xerr)
	}
	if err := moveRename(tree, dst); err != nil {
		return fmt.Errorf("move the copy into place: %w", err)
	}
	return nil
}

// stepWriter calls moveStep with op's progress after each write.
type stepWriter struct {
	w  io.Writer
	op *Operation
}

func (s *stepWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	moveStep(s.op.done.Load())
	return n, err
}

// recoverMoves finishes or undoes the moves a crash stopped, from their
// journals in tmp/ (finishMove). Manager.recover calls it before it
// empties tmp/ and before it looks at the distros, which then have their
// files where their rows say. Only the store's errors are returned.
func (m *Manager) recoverMoves(ctx context.Context) error {
	entries, err := os.ReadDir(m.cfg.tmpDir())
	if err != nil {
		return nil // recover's own read of tmp/ says why
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), moveJournalPrefix) || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(m.cfg.tmpDir(), e.Name())
		b, err := os.ReadFile(p)
		var j moveJournal
		if err == nil {
			err = json.Unmarshal(b, &j)
		}
		if err != nil || j.ID == "" || j.From == "" || j.To == "" {
			// A journal cut short by the crash: the move had
			// touched nothing yet.
			m.log.Warn("ignoring an unreadable move journal", "path", p, "err", err)
			os.Remove(p)
			continue
		}
		if err := m.finishMove(ctx, j); err != nil {
			return err
		}
		os.Remove(p)
	}
	return nil
}

// finishMove brings the distro of journal j to one place after a crash
// stopped its move, deciding by its row and by where its files are (see
// move): before the row's switch the move is undone; after it, finished.
func (m *Manager) finishMove(ctx context.Context, j moveJournal) error {
	rows, err := m.cfg.Store.Distros(ctx)
	if err != nil {
		return err
	}
	var d store.Distro
	taken := false // another distro lives in From or To (a journal kept past its move)
	for _, r := range rows {
		if r.ID == j.ID {
			d = r
		} else if r.Location == j.From || r.Location == j.To {
			taken = true
		}
	}
	if d.ID == "" || d.Version != j.Version || taken {
		m.log.Warn("a move a crash stopped names a distro that is gone or changed, or a location another distro took; leaving its files", "distro", j.Name, "from", j.From, "to", j.To)
		return nil
	}
	st := m.storage(j.Version)
	src, dst, staging := st.path(j.From), st.path(j.To), filepath.Join(j.To, stagingName)
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	atFrom, atTo := exists(src), exists(dst)
	old := d
	old.Location = j.From
	// undo removes what the move made in To.
	undo := func() {
		if err := archive.RemoveAll(staging); err != nil {
			m.log.Warn("cannot remove an interrupted move's staging", "distro", d.Name, "path", staging, "err", err)
		}
		if j.Created {
			os.Remove(j.To)
		}
	}
	setLocation := func(loc string) error {
		d.Location = loc
		return m.cfg.Store.UpdateDistro(ctx, d)
	}
	switch d.Location {
	case j.To:
		if atTo {
			m.log.Info("finishing a move a crash stopped: removing the old files", "distro", d.Name, "path", j.From)
			archive.RemoveAll(staging)
			m.removeFiles(old)
			return nil
		}
		if atFrom {
			// The row was switched but the rename did not reach the
			// disk: the distro is where its files are.
			m.log.Info("undoing a move a crash stopped: the files are still in the old location", "distro", d.Name, "path", j.From)
			if err := setLocation(j.From); err != nil {
				return err
			}
			undo()
			return nil
		}
	case j.From:
		if !exists(staging) {
			// The move had not claimed To: nothing there is its.
			if j.Created {
				os.Remove(j.To)
			}
			return nil
		}
		switch {
		case atFrom:
			m.log.Info("undoing a move a crash stopped: removing its copy", "distro", d.Name, "path", j.To)
			if atTo {
				if err := archive.RemoveAll(dst); err != nil {
					m.log.Warn("cannot remove an interrupted move's copy", "distro", d.Name, "path", dst, "err", err)
				}
			}
			undo()
			return nil
		case atTo:
			// Renamed, not yet switched: back where the row says.
			m.log.Info("undoing a move a crash stopped: moving the files back", "distro", d.Name, "from", j.To, "to", j.From)
			if err := moveRename(dst, src); err != nil {
				// Then forward: the files are whole where they are.
				m.log.Warn("cannot move the files back; the distro takes their new location", "distro", d.Name, "path", j.To, "err", err)
				if err := setLocation(j.To); err != nil {
					return err
				}
				archive.RemoveAll(staging)
				m.removeFiles(old)
				return nil
			}
			undo()
			return nil
		}
	default:
		m.log.Warn("a move a crash stopped names locations its distro is in neither of; leaving its files", "distro", d.Name, "location", d.Location, "from", j.From, "to", j.To)
		return nil
	}
	m.log.Warn("a move a crash stopped left the distro's files in neither location", "distro", d.Name, "from", j.From, "to", j.To)
	return nil
}
