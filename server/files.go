package server

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// The files API: /api/v1/distros/{name}/files/{path}. Every operation runs
// in the distro's agent as the distro's user (see vmm.Files).

// fileError maps the files API's errors to the statuses and codes of its
// contract; the rest go to classify.
func fileError(err error) error {
	var he *httpError
	if err == nil || errors.As(err, &he) {
		return err
	}
	mk := func(status int, code string) error {
		return &httpError{Status: status, Code: code, Msg: err.Error()}
	}
	switch {
	case errors.Is(err, vmm.ErrNotFound):
		return mk(http.StatusNotFound, api.CodeDistroNotFound)
	case errors.Is(err, agent.ErrUserNotFound):
		return mk(http.StatusNotFound, api.CodeUserNotFound)
	case errors.Is(err, agent.ErrNoSuchFile):
		return mk(http.StatusNotFound, api.CodeFileNotFound)
	case errors.Is(err, agent.ErrPermission):
		return mk(http.StatusForbidden, api.CodePermissionDenied)
	case errors.Is(err, agent.ErrFileExists):
		return mk(http.StatusConflict, api.CodeFileExists)
	case errors.Is(err, agent.ErrDirNotEmpty):
		return mk(http.StatusConflict, api.CodeDirectoryNotEmpty)
	case errors.Is(err, agent.ErrNotDir):
		return mk(http.StatusBadRequest, api.CodeNotADirectory)
	case errors.Is(err, agent.ErrIsDir):
		return mk(http.StatusBadRequest, api.CodeIsADirectory)
	case errors.Is(err, agent.ErrInvalidPath):
		return mk(http.StatusBadRequest, api.CodeInvalidPath)
	}
	return err
}

// handleFiles adapts a files handler: its errors take the files API's codes.
func (s *Server) handleFiles(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return fileError(h(w, r))
	})
}

// filePath is the distro path the request names: the rest of the URL path
// after …/files/, percent-decoded.
func filePath(r *http.Request) (string, error) {
	rest := chi.URLParam(r, "*")
	if r.URL.RawPath != "" {
		// chi routed on the escaped path, so the wildcard is escaped too.
		u, err := url.PathUnescape(rest)
		if err != nil {
			return "", fmt.Errorf("%w: %v", agent.ErrInvalidPath, err)
		}
		rest = u
	}
	return agent.CleanPath("/" + rest)
}

// files resolves the distro and user of a files request and its path.
func (s *Server) files(r *http.Request) (*vmm.Files, string, error) {
	p, err := filePath(r)
	if err != nil {
		return nil, "", err
	}
	f, err := s.cfg.Manager.Files(r.Context(), chi.URLParam(r, "name"), r.URL.Query().Get("user"))
	if err != nil {
		return nil, "", err
	}
	return f, p, nil
}

// apiFileInfo is the API's form of an agent's FileInfo.
func apiFileInfo(fi agent.FileInfo) api.FileInfo {
	return api.FileInfo{Name: fi.Name, Path: fi.Path, Type: fi.Type, Size: fi.Size,
		Mode: fmt.Sprintf("%04o", fi.Mode), MTime: fi.MTime, User: fi.User, Group: fi.Group, Target: fi.Target}
}

func apiFileList(dir string, entries []agent.FileInfo) api.FileList {
	l := api.FileList{Path: dir, Entries: make([]api.FileInfo, 0, len(entries))}
	for _, e := range entries {
		l.Entries = append(l.Entries, apiFileInfo(e))
	}
	slices.SortFunc(l.Entries, func(a, b api.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return l
}

// queryFlag reads a boolean query parameter ("1", "true").
func queryFlag(r *http.Request, name string) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return v
}

func (s *Server) handleFilesGet(w http.ResponseWriter, r *http.Request) error {
	f, p, err := s.files(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	q := r.URL.Query()
	switch {
	case queryFlag(r, "stat"):
		fi, err := f.Stat(ctx, p, false)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, apiFileInfo(fi))
		return nil
	case q.Has("archive"):
		if a := q.Get("archive"); a != "tar.gz" {
			return badRequest("archive must be tar.gz", nil)
		}
		return s.serveArchive(w, r, f, p)
	}
	fr, err := f.Open(ctx, p)
	if errors.Is(err, agent.ErrIsDir) {
		_, entries, err := f.List(ctx, p)
		if err != nil {
			return err
		}
		w.Header().Set(api.HeaderFileType, api.FileTypeDir)
		writeJSON(w, http.StatusOK, apiFileList(p, entries))
		return nil
	}
	if err != nil {
		return err
	}
	defer fr.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set(api.HeaderFileType, api.FileTypeFile)
	if fr.Info().Size == 0 {
		// Empty, or a /proc or /sys file whose size says nothing: send
		// what reading it gives, without a length or ranges.
		h.Set("Last-Modified", fr.Info().MTime.UTC().Format(http.TimeFormat))
		if _, err := io.Copy(w, fr); err != nil {
			panic(http.ErrAbortHandler)
		}
		return nil
	}
	// ServeContent answers Range and If-Modified-Since; a read that fails
	// midway ends the connection, so a client never takes a short file for
	// a whole one.
	http.ServeContent(w, r, "", fr.Info().MTime, &failingReader{fr})
	return nil
}

// failingReader turns a read error after the reply began into an aborted
// connection (http.ServeContent would otherwise end the reply as if
// complete).
type failingReader struct{ r io.ReadSeeker }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		panic(http.ErrAbortHandler)
	}
	return n, err
}

func (f *failingReader) Seek(off int64, whence int) (int64, error) { return f.r.Seek(off, whence) }

// serveArchive streams a tar.gz of p.
func (s *Server) serveArchive(w http.ResponseWriter, r *http.Request, f *vmm.Files, p string) error {
	rc, err := f.Archive(r.Context(), p)
	if err != nil {
		return err
	}
	defer rc.Close()
	base := path.Base(p)
	if p == "/" {
		base = "root"
	}
	h := w.Header()
	h.Set("Content-Type", "application/gzip")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": base + ".tar.gz"}))
	if _, err := io.Copy(w, rc); err != nil {
		// Mid-stream: abort the connection so the download fails visibly.
		s.log.Info("file archive failed", "distro", f.Distro(), "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// parseMode reads ?mode= (octal permission bits).
func parseMode(s string) (*uint32, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > 5 {
		return nil, badRequest("mode must be octal permission bits, e.g. 0644", nil)
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return nil, badRequest("mode must be octal permission bits, e.g. 0644", err)
	}
	v := uint32(m)
	return &v, nil
}

func (s *Server) handleFilesPut(w http.ResponseWriter, r *http.Request) error {
	mode, err := parseMode(r.URL.Query().Get("mode"))
	if err != nil {
		return err
	}
	f, p, err := s.files(r)
	if err != nil {
		return err
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxUploadBytes)
	fi, err := f.Write(r.Context(), p, mode, body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiFileInfo(fi))
	return nil
}

func (s *Server) handleFilesPost(w http.ResponseWriter, r *http.Request) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "multipart/form-data":
		return s.uploadFiles(w, r)
	case "application/json":
	default:
		return badRequest("POST …/files/{path} takes multipart/form-data (upload) or application/json (a file action)", nil)
	}
	var act api.FileAction
	if err := s.decodeJSON(w, r, &act); err != nil {
		return err
	}
	var to string
	switch act.Action {
	case api.FileActionMkdir:
	case api.FileActionRename:
		var err error
		if to, err = agent.CleanPath(act.To); err != nil {
			return err
		}
	default:
		return badRequest(`action must be "mkdir" or "rename"`, nil)
	}
	f, p, err := s.files(r)
	if err != nil {
		return err
	}
	var fi agent.FileInfo
	if act.Action == api.FileActionMkdir {
		fi, err = f.Mkdir(r.Context(), p, act.Parents)
	} else {
		fi, err = f.Rename(r.Context(), p, to)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiFileInfo(fi))
	return nil
}

// uploadPart is one spooled file of a multipart upload.
type uploadPart struct {
	name string
	file *os.File
}

// partFileName is the file name a part's Content-Disposition gives, as
// sent: multipart.Part.FileName would cut it to its last element, and an
// upload must refuse "a/b" rather than write "b".
func partFileName(p *multipart.Part) (string, bool) {
	_, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		return "", false
	}
	name, ok := params["filename"]
	return name, ok
}

// spoolUpload reads every file part of a multipart body into temporary
// files, checking each name, so nothing is written into the distro before
// every name is known good. The caller closes the files (they are already
// unlinked).
func spoolUpload(mr *multipart.Reader) ([]uploadPart, error) {
	var parts []uploadPart
	fail := func(err error) ([]uploadPart, error) {
		for _, p := range parts {
			p.file.Close()
		}
		return nil, err
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return fail(err)
			}
			return fail(badRequest("bad multipart body", err))
		}
		name, ok := partFileName(p)
		if !ok {
			p.Close()
			continue // a plain form field
		}
		if !agent.ValidFileName(name) {
			p.Close()
			return fail(&httpError{Status: http.StatusBadRequest, Code: api.CodeInvalidPath,
				Msg: fmt.Sprintf("upload file name %q is not a single path element", name)})
		}
		f, err := os.CreateTemp("", "subsys-upload-")
		if err != nil {
			return fail(fmt.Errorf("spool upload: %w", err))
		}
		os.Remove(f.Name())
		parts = append(parts, uploadPart{name: name, file: f})
		if _, err := io.Copy(f, p); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return fail(err)
			}
			return fail(badRequest("bad multipart body", err))
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fail(fmt.Errorf("spool upload: %w", err))
		}
	}
}

// uploadFiles writes every file part of a multipart body into the directory
// the path names, after checking every name.
func (s *Server) uploadFiles(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxUploadBytes)
	mr, err := r.MultipartReader()
	if err != nil {
		return badRequest("bad multipart body", err)
	}
	parts, err := spoolUpload(mr)
	if err != nil {
		return err
	}
	defer func() {
		for _, p := range parts {
			p.file.Close()
		}
	}()
	f, dir, err := s.files(r)
	if err != nil {
		return err
	}
	written := make([]agent.FileInfo, 0, len(parts))
	for _, p := range parts {
		fi, err := f.Write(r.Context(), path.Join(dir, p.name), nil, p.file)
		if err != nil {
			return err
		}
		written = append(written, fi)
	}
	writeJSON(w, http.StatusOK, apiFileList(dir, written))
	return nil
}

func (s *Server) handleFilesDelete(w http.ResponseWriter, r *http.Request) error {
	if p, err := filePath(r); err == nil && p == "/" {
		return &httpError{Status: http.StatusBadRequest, Code: api.CodeInvalidPath, Msg: "refusing to delete /"}
	}
	f, p, err := s.files(r)
	if err != nil {
		return err
	}
	if err := f.Remove(r.Context(), p, queryFlag(r, "recursive")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
