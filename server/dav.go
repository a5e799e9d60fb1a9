package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/net/webdav"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// The WebDAV share: /dav/{name}/ serves distro name's files (as its
// default user) to file managers, davfs2 and rclone, like WSL's \\wsl$.
//
// Who may use it: HTTP Basic with the API token as the password (any user
// name), or a unix-socket peer that the API admits. A browser caches Basic
// credentials and sends them by itself, to any page's requests, so every
// request a browser could make is refused before authentication: one with
// an Origin header or any Sec-Fetch-* header (browsers send Sec-Fetch-Site
// on every request; file managers, davfs2 and rclone send neither). No
// cookie is set or read here, and the Host check of every route applies.

func init() {
	// chi answers 405 to methods it does not know.
	for _, m := range []string{"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK"} {
		chi.RegisterMethod(m)
	}
}

// davLocks keeps one WebDAV lock system per distro for the server's life:
// a client's LOCK must hold across its requests.
type davLocks struct {
	mu sync.Mutex
	ls map[string]webdav.LockSystem
}

func (d *davLocks) get(name string) webdav.LockSystem {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ls == nil {
		d.ls = map[string]webdav.LockSystem{}
	}
	ls, ok := d.ls[name]
	if !ok {
		ls = webdav.NewMemLS()
		d.ls[name] = ls
	}
	return ls
}

// browserRequest reports whether r carries a header only browsers send.
func browserRequest(r *http.Request) bool {
	if _, ok := r.Header["Origin"]; ok {
		return true
	}
	for k := range r.Header {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), "Sec-Fetch-") {
			return true
		}
	}
	return false
}

// davAuthorized reports whether r may use the share.
func (s *Server) davAuthorized(r *http.Request) (bool, error) {
	if p, ok := peerOf(r.Context()); ok {
		if !s.peerAllowed(p) {
			return false, &httpError{Status: http.StatusForbidden, Code: api.CodeForbiddenPeer,
				Msg: fmt.Sprintf("uid %d may not use subsys: only root and members of the %q group may", p.UID, PeerGroup)}
		}
		return true, nil
	}
	if _, pass, ok := r.BasicAuth(); ok {
		return s.auth.isToken(pass), nil
	}
	if b := bearer(r); b != "" {
		return s.auth.isToken(b), nil
	}
	return false, nil
}

// handleDAV serves /dav/{name}/….
func (s *Server) handleDAV(w http.ResponseWriter, r *http.Request) {
	if browserRequest(r) {
		s.writeError(w, r, &httpError{Status: http.StatusForbidden, Code: api.CodeForbiddenOrigin,
			Msg: "the WebDAV share refuses browsers' requests (Origin or Sec-Fetch-* headers): use a file manager, davfs2 or rclone"})
		return
	}
	ok, err := s.davAuthorized(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="subsys", charset="UTF-8"`)
		s.writeError(w, r, &httpError{Status: http.StatusUnauthorized, Code: api.CodeUnauthorized,
			Msg: "the WebDAV share needs HTTP Basic authentication with the API token (the data directory's token file) as the password"})
		return
	}
	name := chi.URLParam(r, "name")
	if err := davLimits(r, "/dav/"+name); err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := s.cfg.Manager.Files(r.Context(), name, "")
	if err != nil {
		s.writeError(w, r, fileError(err))
		return
	}
	ctx := r.Context()
	if r.Method == http.MethodPut {
		// A PUT whose body breaks must not commit what arrived of it: the
		// file system's writer checks this before it renames into place.
		wb := &watchedBody{ReadCloser: r.Body}
		r.Body = wb
		ctx = context.WithValue(ctx, watchedBodyKey{}, wb)
	}
	h := &webdav.Handler{
		Prefix:     "/dav/" + name,
		FileSystem: &davFS{f: f},
		LockSystem: s.dav.get(f.Distro()),
		Logger: func(r *http.Request, err error) {
			if err != nil {
				s.log.Info("webdav", "method", r.Method, "path", r.URL.Path, "err", err)
			}
		},
	}
	h.ServeHTTP(w, r.WithContext(ctx))
}

// davLimits refuses the requests that would walk without bound: a
// PROPFIND of infinite depth (RFC 4918 lets a server refuse it; without a
// Depth header it means infinity, which is taken as 1 instead, as the file
// managers ask anyway), whose walk would go through /proc, /mnt/host and
// every symlink to a directory; and a COPY or MOVE of a directory into
// itself.
func davLimits(r *http.Request, prefix string) error {
	switch r.Method {
	case "PROPFIND":
		switch r.Header.Get("Depth") {
		case "":
			r.Header.Set("Depth", "1")
		case "infinity":
			return &httpError{Status: http.StatusForbidden, Code: api.CodeInvalid, Msg: "PROPFIND of infinite depth is refused: ask for Depth 0 or 1"}
		}
	case "COPY", "MOVE":
		u, err := url.Parse(r.Header.Get("Destination"))
		if err != nil {
			return nil // the webdav handler answers a bad Destination
		}
		src := strings.TrimSuffix(path.Clean(r.URL.Path), "/")
		dst := strings.TrimSuffix(path.Clean(u.Path), "/")
		if strings.HasPrefix(dst+"/", src+"/") && strings.HasPrefix(src, prefix) {
			return &httpError{Status: http.StatusForbidden, Code: api.CodeInvalidPath, Msg: "cannot copy or move a path into itself"}
		}
	}
	return nil
}

// watchedBody remembers whether reading a request body failed.
type watchedBody struct {
	io.ReadCloser
	mu  sync.Mutex
	err error
}

type watchedBodyKey struct{}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

func (b *watchedBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// davFS is a webdav.FileSystem over a distro's files.
type davFS struct {
	f *vmm.Files
}

// davPath checks a name the webdav handler passes (already cleaned by it).
func davPath(op, name string) (string, error) {
	if name == "" {
		name = "/"
	}
	p, err := agent.CleanPath(name)
	if err != nil {
		return "", &os.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	return p, nil
}

// davErr turns the agent's errors into the os errors the webdav package
// tests for with os.IsNotExist, os.IsExist and errors.Is.
func davErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, agent.ErrNoSuchFile):
		return &os.PathError{Op: op, Path: p, Err: fs.ErrNotExist}
	case errors.Is(err, agent.ErrPermission):
		return &os.PathError{Op: op, Path: p, Err: fs.ErrPermission}
	case errors.Is(err, agent.ErrFileExists):
		return &os.PathError{Op: op, Path: p, Err: fs.ErrExist}
	}
	return err
}

func (d *davFS) Mkdir(ctx context.Context, name string, perm os.FileMode) error {
	p, err := davPath("mkdir", name)
	if err != nil {
		return err
	}
	_, err = d.f.Mkdir(ctx, p, false)
	return davErr("mkdir", p, err)
}

func (d *davFS) RemoveAll(ctx context.Context, name string) error {
	p, err := davPath("remove", name)
	if err != nil {
		return err
	}
	if p == "/" {
		return &os.PathError{Op: "remove", Path: p, Err: fs.ErrPermission}
	}
	return davErr("remove", p, d.f.Remove(ctx, p, true))
}

func (d *davFS) Rename(ctx context.Context, oldName, newName string) error {
	from, err := davPath("rename", oldName)
	if err != nil {
		return err
	}
	to, err := davPath("rename", newName)
	if err != nil {
		return err
	}
	_, err = d.f.Rename(ctx, from, to)
	return davErr("rename", from, err)
}

func (d *davFS) Stat(ctx context.Context, name string) (os.FileInfo, error) {
	p, err := davPath("stat", name)
	if err != nil {
		return nil, err
	}
	fi, err := d.f.Stat(ctx, p, true)
	if err != nil {
		return nil, davErr("stat", p, err)
	}
	return davInfo{fi}, nil
}

func (d *davFS) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (webdav.File, error) {
	p, err := davPath("open", name)
	if err != nil {
		return nil, err
	}
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
		if flag&os.O_APPEND != 0 || flag&os.O_TRUNC == 0 {
			// The writes replace a file whole; nothing in x/net/webdav
			// asks for more.
			return nil, &os.PathError{Op: "open", Path: p, Err: errors.ErrUnsupported}
		}
		w, err := d.f.Create(ctx, p, nil)
		if err != nil {
			return nil, davErr("open", p, err)
		}
		wb, _ := ctx.Value(watchedBodyKey{}).(*watchedBody)
		return &davWriter{f: d.f, p: p, w: w, body: wb}, nil
	}
	r, err := d.f.Open(ctx, p)
	if errors.Is(err, agent.ErrIsDir) {
		fi, err := d.f.Stat(ctx, p, true)
		if err != nil {
			return nil, davErr("open", p, err)
		}
		return &davDir{ctx: ctx, f: d.f, p: p, info: fi}, nil
	}
	if err != nil {
		return nil, davErr("open", p, err)
	}
	return &davReader{r: r}, nil
}

// davInfo is an os.FileInfo of an agent's FileInfo.
type davInfo struct{ fi agent.FileInfo }

func (i davInfo) Name() string       { return i.fi.Name }
func (i davInfo) Size() int64        { return i.fi.Size }
func (i davInfo) ModTime() time.Time { return i.fi.MTime }
func (i davInfo) IsDir() bool        { return i.fi.Type == agent.FileTypeDir }
func (i davInfo) Sys() any           { return nil }
func (i davInfo) Mode() fs.FileMode {
	m := fs.FileMode(i.fi.Mode & 0o777)
	switch i.fi.Type {
	case agent.FileTypeDir:
		m |= fs.ModeDir
	case agent.FileTypeSymlink:
		m |= fs.ModeSymlink
	case agent.FileTypeOther:
		m |= fs.ModeIrregular
	}
	return m
}

// davReader is a regular file open for reading.
type davReader struct{ r *vmm.FileReader }

func (f *davReader) Read(p []byte) (int, error)                { return f.r.Read(p) }
func (f *davReader) Seek(off int64, whence int) (int64, error) { return f.r.Seek(off, whence) }
func (f *davReader) Close() error                              { return f.r.Close() }
func (f *davReader) Stat() (fs.FileInfo, error)                { return davInfo{f.r.Info()}, nil }
func (f *davReader) Write([]byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: f.r.Info().Path, Err: fs.ErrPermission}
}
func (f *davReader) Readdir(int) ([]fs.FileInfo, error) {
	return nil, &os.PathError{Op: "readdir", Path: f.r.Info().Path, Err: agent.ErrNotDir}
}

// davDir is a directory open for listing.
type davDir struct {
	ctx     context.Context
	f       *vmm.Files
	p       string
	info    agent.FileInfo
	entries []fs.FileInfo
	read    bool
}

func (d *davDir) Read([]byte) (int, error) {
	return 0, &os.PathError{Op: "read", Path: d.p, Err: agent.ErrIsDir}
}
func (d *davDir) Seek(int64, int) (int64, error) { return 0, nil }
func (d *davDir) Write([]byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: d.p, Err: agent.ErrIsDir}
}
func (d *davDir) Close() error               { return nil }
func (d *davDir) Stat() (fs.FileInfo, error) { return davInfo{d.info}, nil }

// Readdir lists the directory once; a symlink is shown as what it points
// to, so that a link to a directory can be browsed (a dangling one as the
// link).
func (d *davDir) Readdir(count int) ([]fs.FileInfo, error) {
	if !d.read {
		_, entries, err := d.f.List(d.ctx, d.p)
		if err != nil {
			return nil, davErr("readdir", d.p, err)
		}
		d.read = true
		for _, e := range entries {
			if e.Type == agent.FileTypeSymlink {
				if t, err := d.f.Stat(d.ctx, e.Path, true); err == nil {
					t.Name, t.Path = e.Name, e.Path
					e = t
				}
			}
			d.entries = append(d.entries, davInfo{e})
		}
	}
	if count <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	n := min(count, len(d.entries))
	out := d.entries[:n]
	d.entries = d.entries[n:]
	return out, nil
}

// davWriter is a file being written whole: Stat or Close commits it (the
// webdav handler calls Stat for the ETag before Close), unless the request
// body broke.
type davWriter struct {
	f    *vmm.Files
	p    string
	w    *agent.FileWriter
	body *watchedBody
	done bool
	info agent.FileInfo
	err  error
}

func (f *davWriter) Write(p []byte) (int, error) {
	if f.done {
		return 0, &os.PathError{Op: "write", Path: f.p, Err: fs.ErrClosed}
	}
	n, err := f.w.Write(p)
	if err != nil {
		return n, f.f.Wrap(err)
	}
	return n, nil
}

func (f *davWriter) finish() error {
	if f.done {
		return f.err
	}
	f.done = true
	if f.body != nil {
		if err := f.body.failed(); err != nil {
			f.w.Abort()
			f.err = fmt.Errorf("upload of %s broke off: %w", f.p, err)
			return f.err
		}
	}
	f.info, f.err = f.w.Commit()
	f.err = davErr("write", f.p, f.f.Wrap(f.err))
	return f.err
}

func (f *davWriter) Stat() (fs.FileInfo, error) {
	if err := f.finish(); err != nil {
		return nil, err
	}
	return davInfo{f.info}, nil
}

func (f *davWriter) Close() error { return f.finish() }

func (f *davWriter) Read([]byte) (int, error) {
	return 0, &os.PathError{Op: "read", Path: f.p, Err: fs.ErrPermission}
}
func (f *davWriter) Seek(int64, int) (int64, error) {
	return 0, &os.PathError{Op: "seek", Path: f.p, Err: errors.ErrUnsupported}
}
func (f *davWriter) Readdir(int) ([]fs.FileInfo, error) {
	return nil, &os.PathError{Op: "readdir", Path: f.p, Err: agent.ErrNotDir}
}
