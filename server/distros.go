package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/catalog"
)

// decodeJSON reads a bounded JSON body into v, refusing unknown fields so that a
// typo in a script is an error, not a silent no-op.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxJSONBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &httpError{Status: http.StatusRequestEntityTooLarge, Code: api.CodeTooLarge, Msg: fmt.Sprintf("request body over %d bytes", mbe.Limit)}
		}
		return badRequest("bad JSON body: "+err.Error(), nil)
	}
	if dec.More() {
		return badRequest("bad JSON body: trailing data", nil)
	}
	return nil
}

func actorCtx(r *http.Request) *http.Request {
	return r.WithContext(vmm.WithActor(r.Context(), "api:"+r.RemoteAddr))
}

func (s *Server) handleListDistros(w http.ResponseWriter, r *http.Request) error {
	list, err := s.cfg.Manager.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiDistros(list))
	return nil
}

func (s *Server) handleGetDistro(w http.ResponseWriter, r *http.Request) error {
	d, err := s.cfg.Manager.Get(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiDistro(d))
	return nil
}

func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var req vmm.ImportRequest
	if ct == "application/json" {
		var b api.ImportRequest
		if err := s.decodeJSON(w, r, &b); err != nil {
			return err
		}
		if b.Source.Path == "" {
			return badRequest("source.path is required (or send the tarball as the request body)", nil)
		}
		req = vmm.ImportRequest{Name: b.Name, Version: b.Version, Location: b.Location, Path: b.Source.Path, SizeBytes: b.Size}
		switch b.Source.Format {
		case "", "tar":
		case "img":
			req.RawImage = true
		default:
			return badRequest("source.format must be tar (a tarball, any compression) or img (a raw ext4 disk image)", nil)
		}
	} else {
		q := r.URL.Query()
		req = vmm.ImportRequest{Name: q.Get("name"), Location: q.Get("location"), RawImage: ct == api.ContentTypeRawDiskImage}
		if v := q.Get("version"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return badRequest("version must be 1 or 2", nil)
			}
			req.Version = n
		}
		if v := q.Get("size"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return badRequest("size must be a positive number of bytes", nil)
			}
			req.SizeBytes = n
		}
		if r.ContentLength > s.cfg.MaxUploadBytes {
			return &httpError{Status: http.StatusRequestEntityTooLarge, Code: api.CodeTooLarge, Msg: fmt.Sprintf("upload over %d bytes", s.cfg.MaxUploadBytes)}
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxUploadBytes)
		req.Body, req.Size = r.Body, max(r.ContentLength, 0)
	}
	op, err := s.cfg.Manager.Import(r.Context(), req)
	if err != nil {
		return err
	}
	if req.Body != nil {
		// A cancel must reach an import whose upload has stalled: it is blocked
		// reading the body, so end that read (a past deadline) when the
		// operation stops.
		handlerDone := make(chan struct{})
		defer close(handlerDone)
		go func() {
			select {
			case <-op.Cancelled():
				http.NewResponseController(w).SetReadDeadline(time.Now())
			case <-handlerDone:
			}
		}()
		// The handler must not return while the operation still reads the body.
		// Extraction streams, so once the body is read the rest is a rename: wait for
		// the result and report a bad archive as 400 rather than a 202 that failed.
		<-op.BodyDone()
		select {
		case <-op.Done():
		case <-time.After(30 * time.Second):
		}
		if err := op.Err(); err != nil {
			return err
		}
	}
	w.Header().Set("Location", "/api/v1/operations/"+op.ID())
	writeJSON(w, http.StatusAccepted, apiOperation(op.Info()))
	return nil
}

func (s *Server) handleUpdateDistro(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var u api.DistroUpdate
	if err := s.decodeJSON(w, r, &u); err != nil {
		return err
	}
	d, err := s.cfg.Manager.Update(r.Context(), chi.URLParam(r, "name"), vmmUpdate(u))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiDistro(d))
	return nil
}

func (s *Server) handleUnregister(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	if err := s.cfg.Manager.Unregister(r.Context(), chi.URLParam(r, "name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleStart(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	d, err := s.cfg.Manager.Start(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiDistro(d))
	return nil
}

func (s *Server) handleTerminate(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	name := chi.URLParam(r, "name")
	if err := s.cfg.Manager.Terminate(r.Context(), name); err != nil {
		return err
	}
	d, err := s.cfg.Manager.Get(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiDistro(d))
	return nil
}

func (s *Server) handleShutdown(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	if err := s.cfg.Manager.Shutdown(r.Context()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleClone(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var b api.CloneRequest
	if err := s.decodeJSON(w, r, &b); err != nil {
		return err
	}
	op, err := s.cfg.Manager.Clone(r.Context(), chi.URLParam(r, "name"), b.Name)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/operations/"+op.ID())
	writeJSON(w, http.StatusAccepted, apiOperation(op.Info()))
	return nil
}

func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	name := chi.URLParam(r, "name")
	format := archive.Tar
	if f := r.URL.Query().Get("format"); f == string(vmm.FormatImage) {
		format = vmm.FormatImage
	} else if f != "" {
		var err error
		if format, err = archive.ParseFormat(f); err != nil {
			return badRequest("format must be tar, tar.gz, tar.zst, tar.xz or img (a version 2 distro's disk image)", err)
		}
	}
	d, err := s.cfg.Manager.Get(r.Context(), name)
	if err != nil {
		return err
	}
	ew := &exportWriter{w: w, name: d.Name, format: format}
	if err := s.cfg.Manager.Export(r.Context(), d.Name, ew, format); err != nil {
		if !ew.started {
			return err
		}
		// The status line is gone: abort the stream so the client sees a broken
		// transfer instead of a short, valid-looking archive.
		s.log.Warn("export failed mid-stream", "distro", d.Name, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// exportWriter sends headers with the first byte, so an export that fails before
// writing anything still gets a proper JSON error.
type exportWriter struct {
	w       http.ResponseWriter
	name    string
	format  archive.Format
	started bool
}

func (e *exportWriter) Write(p []byte) (int, error) {
	if !e.started {
		e.started = true
		e.w.Header().Set("Content-Type", "application/octet-stream")
		e.w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", e.name+"."+string(e.format)))
		e.w.WriteHeader(http.StatusOK)
	}
	return e.w.Write(p)
}

var _ io.Writer = (*exportWriter)(nil)

// handleSetVersion converts a distro to the version the body names, as `wsl
// --set-version` does: 202 with the operation, which copies the distro's
// files into the other version's form.
func (s *Server) handleSetVersion(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var b api.SetVersionRequest
	if err := s.decodeJSON(w, r, &b); err != nil {
		return err
	}
	op, err := s.cfg.Manager.SetVersion(r.Context(), chi.URLParam(r, "name"), b.Version)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/operations/"+op.ID())
	writeJSON(w, http.StatusAccepted, apiOperation(op.Info()))
	return nil
}

func (s *Server) handleGetOperation(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs < 0 {
			return badRequest("wait must be a number of seconds", nil)
		}
		wait = time.Duration(min(secs, 3600) * float64(time.Second))
	}
	info, err := s.cfg.Manager.WaitOperation(r.Context(), id, wait)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiOperation(info))
	return nil
}

func (s *Server) handleCancelOperation(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	info, err := s.cfg.Manager.CancelOperation(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiOperation(info))
	return nil
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, api.Version{Version: s.cfg.Version})
	return nil
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) error {
	list, err := s.cfg.Manager.List(r.Context())
	if err != nil {
		return err
	}
	running, def := 0, ""
	for _, d := range list {
		if d.State == vmm.StateRunning {
			running++
		}
		if d.Default {
			def = d.Name
		}
	}
	writeJSON(w, http.StatusOK, api.Status{Version: s.cfg.Version, Distros: len(list), Running: running, Default: def})
	return nil
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(OpenAPI)
	return nil
}

// handleResize sets a version 2 distro's disk size: 202 with the operation,
// which grows a running distro's disk online, or checks and resizes a
// stopped one's in the VM.
func (s *Server) handleResize(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var b api.ResizeRequest
	if err := s.decodeJSON(w, r, &b); err != nil {
		return err
	}
	op, err := s.cfg.Manager.Resize(r.Context(), chi.URLParam(r, "name"), b.Size)
	if err != nil {
		return err
	}
	return acceptOperation(w, op)
}

// handleCompact gives a version 2 distro's free disk blocks back to the
// host: 202 with the operation. The body, if any, is an empty JSON object.
func (s *Server) handleCompact(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	if r.ContentLength != 0 {
		var b struct{}
		if err := s.decodeJSON(w, r, &b); err != nil {
			return err
		}
	}
	op, err := s.cfg.Manager.Compact(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	return acceptOperation(w, op)
}

// handleMove moves a stopped distro's files to another directory: 202 with
// the operation.
func (s *Server) handleMove(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var b api.MoveRequest
	if err := s.decodeJSON(w, r, &b); err != nil {
		return err
	}
	op, err := s.cfg.Manager.Move(r.Context(), chi.URLParam(r, "name"), b.Location)
	if err != nil {
		return err
	}
	return acceptOperation(w, op)
}

// acceptOperation answers 202 with op and its address.
func acceptOperation(w http.ResponseWriter, op *vmm.Operation) error {
	w.Header().Set("Location", "/api/v1/operations/"+op.ID())
	writeJSON(w, http.StatusAccepted, apiOperation(op.Info()))
	return nil
}

// handleInstall makes a distro from the catalog or a tarball's address:
// 202 with the install operation.
func (s *Server) handleInstall(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var b api.InstallRequest
	if err := s.decodeJSON(w, r, &b); err != nil {
		return err
	}
	op, err := s.cfg.Manager.Install(r.Context(), vmm.InstallRequest{Name: b.Name, Source: b.Source, Version: b.Version,
		Location: b.Location, SizeBytes: b.SizeBytes, Variant: b.Variant, Include: b.Include, Mirror: b.Mirror, SHA256: b.SHA256})
	if err != nil {
		return err
	}
	return acceptOperation(w, op)
}

// handleCatalog lists the releases this server can install.
func (s *Server) handleCatalog(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, convertAll(s.cfg.Manager.Catalog(), func(e catalog.Entry) api.CatalogEntry { return api.CatalogEntry(e) }))
	return nil
}

// handleListSnapshots lists a distro's snapshots, the oldest first.
func (s *Server) handleListSnapshots(w http.ResponseWriter, r *http.Request) error {
	list, err := s.cfg.Manager.Snapshots(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, convertAll(list, func(v vmm.DistroSnapshot) api.DistroSnapshot { return api.DistroSnapshot(v) }))
	return nil
}

// handleTakeSnapshot copies a stopped distro's files into a new snapshot:
// 202 with the operation.
func (s *Server) handleTakeSnapshot(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var b api.SnapshotRequest
	if r.ContentLength != 0 {
		if err := s.decodeJSON(w, r, &b); err != nil {
			return err
		}
	}
	op, err := s.cfg.Manager.TakeSnapshot(r.Context(), chi.URLParam(r, "name"), b.Name)
	if err != nil {
		return err
	}
	return acceptOperation(w, op)
}

// handleRestoreSnapshot puts a snapshot's files in place of the stopped
// distro's: 202 with the operation.
func (s *Server) handleRestoreSnapshot(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	op, err := s.cfg.Manager.Restore(r.Context(), chi.URLParam(r, "name"), chi.URLParam(r, "snap"))
	if err != nil {
		return err
	}
	return acceptOperation(w, op)
}

// handleDeleteSnapshot removes a snapshot: 204.
func (s *Server) handleDeleteSnapshot(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	if err := s.cfg.Manager.DeleteSnapshot(r.Context(), chi.URLParam(r, "name"), chi.URLParam(r, "snap")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
