package server

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/subsys-dev/subsys/api"
)

func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer a browser sends
		// "Origin: null" on its form POSTs (the export download), which the
		// Origin check must refuse. Other origins still get no Referer.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// AllowedHost reports whether host (a Host header value, with or without port) is
// a name this server answers to. Checking it on every request defeats DNS
// rebinding: a rebound attacker name arrives with Host (and Origin) set to that name.
func AllowedHost(host string, extra []string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		name = host[1 : len(host)-1]
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	switch {
	case name == "localhost", strings.HasSuffix(name, ".localhost"):
		return true
	case name == "127.0.0.1", name == "::1":
		return true
	}
	for _, e := range extra {
		if strings.EqualFold(name, e) {
			return true
		}
	}
	return false
}

func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A unix-socket peer cannot be a rebound browser: its Host is whatever
		// the CLI wrote, and the kernel vouches for who it is.
		if _, unix := peerOf(r.Context()); !unix && !AllowedHost(r.Host, s.cfg.AllowedHosts) {
			s.writeError(w, r, &httpError{Status: http.StatusForbidden, Code: api.CodeForbiddenHost,
				Msg: "host " + r.Host + " is not an allowed name for this server"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkOrigin refuses cross-site state changes and websocket upgrades: a request
// from a browser carries Origin (and Sec-Fetch-Site); it must be our own origin.
// Clients that send neither (the CLI, scripts) pass on to the token check.
func (s *Server) checkOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upgrade := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
		if !safe || upgrade {
			if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
				s.writeError(w, r, &httpError{Status: http.StatusForbidden, Code: api.CodeForbiddenOrigin, Msg: "cross-site request refused"})
				return
			}
			if o := r.Header.Get("Origin"); o != "" && !s.sameOrigin(o, r.Host) {
				s.writeError(w, r, &httpError{Status: http.StatusForbidden, Code: api.CodeForbiddenOrigin, Msg: "origin " + o + " is not allowed"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, host) && AllowedHost(u.Host, s.cfg.AllowedHosts)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer (flush, hijack).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		level := slog.LevelDebug
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			level = slog.LevelInfo
		}
		s.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start))
	})
}

// Hijack passes websocket upgrades through to the real writer.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

// Flush passes streaming flushes through to the real writer.
func (s *statusRecorder) Flush() {
	http.NewResponseController(s.ResponseWriter).Flush()
}
