package server

import (
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/subsys-dev/subsys/web"
)

// uiHandler serves the built dashboard: hashed files under /assets/ with a long
// cache, everything else that is not a file falls back to index.html (the UI
// routes on the client), and index.html is never cached so a new build shows at
// once. Without a build it says how to make one.
func (s *Server) uiHandler() http.HandlerFunc {
	dist := web.Dist()
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		if dist == nil {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, `<!doctype html><title>subsys</title><p>subsys is running, but the dashboard is not built: run <code>make web</code> (or <code>make build</code>) and restart. The REST API is at <a href="/api/v1/openapi.yaml">/api/v1</a>.</p>`)
			return nil
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		if fi, err := fs.Stat(dist, name); err != nil || fi.IsDir() {
			name = "index.html"
		}
		if strings.HasPrefix(name, "assets/") {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		http.ServeFileFS(w, r, dist, name)
		return nil
	})
}
