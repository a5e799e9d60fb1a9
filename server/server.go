// Package server is subsys's HTTP face: the REST API under /api/v1, browser
// sessions and single-use tickets, the streaming exec and terminal websockets, and
// the security checks every request passes (Host allow-list, Origin check, a
// credential that is never ambient — see auth.go —, body limits, security
// headers). It serves TCP listeners for browsers and scripts and the unix socket
// the CLI uses. cli imports it, to build and run it in serve; nothing else does.
package server

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/netmgr"
	"github.com/subsys-dev/subsys/vmm"
)

// OpenAPI is the REST API's description, served at /api/v1/openapi.yaml and used by
// tests to validate responses.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Config configures a Server.
type Config struct {
	// Manager runs distros. Required.
	Manager *vmm.Manager
	// Ports exposes distro ports (GET/PUT …/ports) and streams their changes;
	// nil answers 501 there.
	Ports *netmgr.PortManager
	// PortProxy runs portproxy rules; nil answers 501 on /portproxy.
	PortProxy *netmgr.PortProxy
	// Token is the API token: it authorizes everything and is traded for
	// browser sessions. Required.
	Token string
	// TokenFile is where Token is kept; POST /api/v1/token/rotate rewrites it.
	TokenFile string
	// Sessions keeps browser sessions across restarts; nil keeps them in memory.
	Sessions SessionStore
	// SessionIdle ends a browser session unused this long; 0 means 12 h.
	SessionIdle time.Duration
	// PublicURL is the browsers' base URL (http://localhost:7070), for the
	// login URL GET /api/v1/dashboard answers.
	PublicURL string
	// Profiling serves Go's pprof under /api/v1/debug/pprof/, behind the same
	// authentication as the API (the token or the socket; not a session).
	Profiling bool
	// AllowedHosts are extra Host names accepted besides localhost, *.localhost,
	// 127.0.0.1 and [::1] (any port).
	AllowedHosts []string
	// Version is reported by GET /api/v1/version.
	Version string
	// MaxJSONBytes bounds JSON request bodies; 0 means 1 MiB.
	MaxJSONBytes int64
	// MaxUploadBytes bounds tarball uploads; 0 means 64 GiB.
	MaxUploadBytes int64
	// MaxOutputBytes caps each of stdout and stderr in exec replies; 0 means 16 MiB.
	MaxOutputBytes int
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Server serves the API. Create it with New.
type Server struct {
	cfg  Config
	log  *slog.Logger
	mux  http.Handler
	auth *authState
	dav  davLocks // the WebDAV share's locks (dav.go)
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxJSONBytes == 0 {
		cfg.MaxJSONBytes = 1 << 20
	}
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = 64 << 30
	}
	if cfg.MaxOutputBytes == 0 {
		cfg.MaxOutputBytes = 16 << 20
	}
	if cfg.SessionIdle == 0 {
		cfg.SessionIdle = 12 * time.Hour
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.auth = newAuthState(cfg.Token, cfg.TokenFile, cfg.SessionIdle, cfg.Sessions)
	s.mux = s.routes()
	return s
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.securityHeaders, s.checkHost, s.logRequests)
	r.Group(func(r chi.Router) {
		r.Use(s.checkOrigin, s.authenticate)
		r.Route("/api/v1", func(r chi.Router) {
			r.Post("/login", s.handle(s.handleLogin))
			r.Post("/logout", s.handle(s.handleLogout))
			r.Post("/tickets", s.handle(s.handleTicket))
			r.With(s.adminOnly).Get("/dashboard", s.handle(s.handleDashboardURL))
			r.With(s.adminOnly).Post("/token/rotate", s.handle(s.handleRotateToken))
			if s.cfg.Profiling {
				r.With(s.adminOnly).Mount("/debug/pprof", profiler())
			}
			r.Get("/openapi.yaml", s.handle(s.handleOpenAPI))
			r.Get("/version", s.handle(s.handleVersion))
			r.Get("/status", s.handle(s.handleStatus))
			r.Get("/vm", s.handle(s.handleVM))
			r.Get("/vm/console", s.handle(s.handleVMConsole))
			r.Post("/vm/reclaim", s.handle(s.handleVMReclaim))
			r.Get("/events", s.handle(s.handleEvents))
			r.Get("/settings", s.handle(s.handleGetSettings))
			r.Put("/settings", s.handle(s.handlePutSettings))
			r.Post("/shutdown", s.handle(s.handleShutdown))
			r.Get("/distros", s.handle(s.handleListDistros))
			r.Post("/distros", s.handle(s.handleImport))
			r.Post("/distros/install", s.handle(s.handleInstall))
			r.Get("/catalog", s.handle(s.handleCatalog))
			r.Route("/distros/{name}", func(r chi.Router) {
				r.Get("/", s.handle(s.handleGetDistro))
				r.Patch("/", s.handle(s.handleUpdateDistro))
				r.Delete("/", s.handle(s.handleUnregister))
				r.Post("/start", s.handle(s.handleStart))
				r.Post("/terminate", s.handle(s.handleTerminate))
				r.Post("/clone", s.handle(s.handleClone))
				r.Post("/set-version", s.handle(s.handleSetVersion))
				r.Post("/resize", s.handle(s.handleResize))
				r.Post("/compact", s.handle(s.handleCompact))
				r.Post("/move", s.handle(s.handleMove))
				r.Get("/snapshots", s.handle(s.handleListSnapshots))
				r.Post("/snapshots", s.handle(s.handleTakeSnapshot))
				r.Post("/snapshots/{snap}/restore", s.handle(s.handleRestoreSnapshot))
				r.Delete("/snapshots/{snap}", s.handle(s.handleDeleteSnapshot))
				// POST: an export takes the distro's operation lock and records an
				// operation, so it is not a GET (no GET changes anything).
				r.Post("/export", s.handle(s.handleExport))
				r.Post("/exec", s.handle(s.handleExec))
				r.With(s.requireUpgrade).Get("/exec/ws", s.handle(s.handleExecStream))
				r.Get("/metrics", s.handle(s.handleMetrics))
				r.With(s.requireUpgrade).Get("/terminal", s.handle(s.handleTerminal))
				r.Get("/terminals", s.handle(s.handleListTerminals))
				r.Delete("/terminals/{id}", s.handle(s.handleKillTerminal))
				r.Get("/ports", s.handle(s.handleListPorts))
				r.Put("/ports/{proto}/{port}", s.handle(s.handlePutPort))
				r.Get("/files/*", s.handleFiles(s.handleFilesGet))
				r.Put("/files/*", s.handleFiles(s.handleFilesPut))
				r.Post("/files/*", s.handleFiles(s.handleFilesPost))
				r.Delete("/files/*", s.handleFiles(s.handleFilesDelete))
			})
			r.Get("/portproxy", s.handle(s.handleListRules))
			r.Post("/portproxy", s.handle(s.handleAddRule))
			r.Get("/portproxy/{id}", s.handle(s.handleGetRule))
			r.Delete("/portproxy/{id}", s.handle(s.handleDeleteRule))
			r.Get("/operations/{id}", s.handle(s.handleGetOperation))
			r.Delete("/operations/{id}", s.handle(s.handleCancelOperation))
			r.NotFound(s.handle(func(w http.ResponseWriter, r *http.Request) error {
				return &httpError{Status: http.StatusNotFound, Code: api.CodeNotFound, Msg: "no such API path: " + r.URL.Path}
			}))
			r.MethodNotAllowed(s.handle(func(w http.ResponseWriter, r *http.Request) error {
				return &httpError{Status: http.StatusMethodNotAllowed, Code: api.CodeMethodNotAllowed, Msg: r.Method + " is not allowed on " + r.URL.Path}
			}))
		})
	})
	// The WebDAV share authenticates on its own and refuses browsers (dav.go).
	r.HandleFunc("/dav/{name}", s.handleDAV)
	r.HandleFunc("/dav/{name}/*", s.handleDAV)
	// The dashboard's files hold no secrets: they load without a credential, and
	// the page signs in with the token from the login URL's fragment (#token=)
	// or asks for it.
	r.Get("/*", s.uiHandler())
	return r
}

// Serve serves on every listener (TCP for browsers and scripts, the CLI's unix
// socket) until ctx ends, then shuts down gracefully: the base context is
// cancelled first so that streaming exec sessions end instead of holding
// Shutdown open.
func (s *Server) Serve(ctx context.Context, lns ...net.Listener) error {
	if err := s.auth.pruneSessions(ctx); err != nil {
		s.log.Warn("old browser sessions not pruned", "err", err)
	}
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second, // slowloris
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- hs.Serve(ln) }()
	}
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	cancelBase()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e := hs.Shutdown(sctx); err == nil {
		err = e
	}
	for range lns {
		if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
			err = e
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
