package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/store"
)

// Who may do what, and why it is shaped so:
//
//   - The API token (the file in the data directory) authorizes everything, sent
//     as "Authorization: Bearer <token>". Scripts and remote clients use it.
//   - A peer on the unix socket is authorized by its credentials (SO_PEERCRED):
//     root, or a member of the "subsys" group. The CLI uses it. On Windows
//     (peer_windows.go) it is the user who runs the server, or an elevated
//     member of Administrators, as the peer's process token says.
//   - A browser never holds the token. The dashboard trades it once (POST
//     /api/v1/login) for a session secret of its own, keeps that in localStorage
//     (scoped to scheme+host+port, so a page on another localhost port cannot read
//     it) and sends it as "Authorization: Bearer <session>". A session ends after
//     an idle time, at POST /api/v1/logout, and when the token is replaced.
//   - A websocket or EventSource cannot set headers, so those routes (and the
//     export download, a form POST) also take a ticket: a random string good for
//     one request within ticketTTL, fetched with a header-authenticated POST
//     /api/v1/tickets. A ticket in a URL is therefore worth nothing once used.
//   - Nothing the browser sends by itself — cookies, HTTP auth, client
//     certificates — authorizes anything, so a page on any origin can make the
//     browser send requests here and they all answer 401.

// credKind is how a request was authorized.
type credKind int

const (
	credNone credKind = iota
	// credToken: the API token.
	credToken
	// credPeer: a unix-socket peer allowed by its credentials.
	credPeer
	// credSession: a browser session.
	credSession
	// credTicket: a single-use ticket (websocket, SSE, export).
	credTicket
)

// ticketTTL is how long a ticket is good for: enough to open the websocket it
// was fetched for, short enough that one left in a log is worthless.
const ticketTTL = 30 * time.Second

// sessionTouchEvery bounds how often a session's last use is written to the
// database: the idle expiry is hours, so a minute's precision is plenty.
const sessionTouchEvery = time.Minute

// SessionStore keeps browser sessions across server restarts; *store.DB is one.
type SessionStore interface {
	CreateSession(ctx context.Context, s store.Session) error
	GetSession(ctx context.Context, idHash string) (store.Session, error)
	TouchSession(ctx context.Context, idHash string, t time.Time) error
	DeleteSession(ctx context.Context, idHash string) error
	DeleteSessionsExcept(ctx context.Context, tokenHash string, idleBefore time.Time) (int64, error)
}

// authState holds the credentials the server accepts. The token can change
// (rotation), so everything reads it under mu.
type authState struct {
	mu        sync.Mutex
	token     string
	tokenFile string
	idle      time.Duration
	db        SessionStore
	// sessions caches the sessions seen since start: id hash → last use. The
	// database is the record; the cache saves a query per request.
	sessions map[string]*sessionEntry
	tickets  map[string]ticketEntry // by ticket hash
	// rotated is closed (and replaced) when the token is rotated: long-lived
	// requests (event streams, websockets) made with the old credentials end.
	rotated chan struct{}
	now     func() time.Time
}

type sessionEntry struct {
	lastUsed    time.Time
	lastWritten time.Time
	// ended is closed when the session ends (logout, expiry), so that its
	// open websockets and event streams end with it.
	ended chan struct{}
}

type ticketEntry struct {
	expires time.Time
	// ended is the ended channel of the session that fetched the ticket (nil
	// for the token): what the ticket opens lives no longer than its session.
	ended chan struct{}
}

func newAuthState(token, tokenFile string, idle time.Duration, db SessionStore) *authState {
	return &authState{token: token, tokenFile: tokenFile, idle: idle, db: db,
		sessions: map[string]*sessionEntry{}, tickets: map[string]ticketEntry{}, rotated: make(chan struct{}), now: time.Now}
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// randomSecret returns 32 random bytes in hex, with a prefix that tells a reader
// of a log or a config file what kind of secret it is.
func randomSecret(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return prefix + hex.EncodeToString(b)
}

// isToken reports whether got is the API token, in constant time.
func (a *authState) isToken(got string) bool {
	a.mu.Lock()
	tok := a.token
	a.mu.Unlock()
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1
}

// login makes a new browser session and returns its secret.
func (a *authState) login(ctx context.Context, userAgent string) (string, error) {
	secret := randomSecret("subsys_session_")
	a.mu.Lock()
	tokenHash := hashSecret(a.token)
	now := a.now()
	a.mu.Unlock()
	if a.db != nil {
		if err := a.db.CreateSession(ctx, store.Session{IDHash: hashSecret(secret), TokenHash: tokenHash,
			CreatedAt: now, LastUsedAt: now, UserAgent: truncate(userAgent, 200)}); err != nil {
			return "", err
		}
	}
	a.mu.Lock()
	a.sessions[hashSecret(secret)] = &sessionEntry{lastUsed: now, lastWritten: now, ended: make(chan struct{})}
	a.mu.Unlock()
	return secret, nil
}

// session reports whether secret is a live session, and records its use. It
// returns the session's ended channel.
func (a *authState) session(ctx context.Context, secret string) (chan struct{}, bool) {
	if !strings.HasPrefix(secret, "subsys_session_") {
		return nil, false
	}
	id := hashSecret(secret)
	a.mu.Lock()
	now := a.now()
	e, ok := a.sessions[id]
	tokenHash := hashSecret(a.token)
	a.mu.Unlock()
	if !ok {
		// Made before this server started: ask the database, which also knows
		// whether it was made with the current token.
		if a.db == nil {
			return nil, false
		}
		s, err := a.db.GetSession(ctx, id)
		if err != nil || s.TokenHash != tokenHash {
			return nil, false
		}
		e = &sessionEntry{lastUsed: s.LastUsedAt, lastWritten: s.LastUsedAt, ended: make(chan struct{})}
		a.mu.Lock()
		if cur, ok := a.sessions[id]; ok {
			e = cur
		} else {
			a.sessions[id] = e
		}
		a.mu.Unlock()
	}
	a.mu.Lock()
	if now.Sub(e.lastUsed) > a.idle {
		if _, ok := a.sessions[id]; ok {
			delete(a.sessions, id)
			close(e.ended)
		}
		a.mu.Unlock()
		if a.db != nil {
			a.db.DeleteSession(context.WithoutCancel(ctx), id)
		}
		return nil, false
	}
	e.lastUsed = now
	write := now.Sub(e.lastWritten) >= sessionTouchEvery
	if write {
		e.lastWritten = now
	}
	a.mu.Unlock()
	if write && a.db != nil {
		a.db.TouchSession(context.WithoutCancel(ctx), id, now)
	}
	return e.ended, true
}

// logout ends the session with this secret.
func (a *authState) logout(ctx context.Context, secret string) error {
	id := hashSecret(secret)
	a.mu.Lock()
	if e, ok := a.sessions[id]; ok {
		delete(a.sessions, id)
		close(e.ended)
	}
	a.mu.Unlock()
	if a.db != nil {
		return a.db.DeleteSession(ctx, id)
	}
	return nil
}

// newTicket returns a ticket good for one request within ticketTTL; what it
// opens ends when ended (the fetching session's) is closed.
func (a *authState) newTicket(ended chan struct{}) (string, time.Time) {
	t := randomSecret("subsys_ticket_")
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for k, e := range a.tickets { // drop the expired ones: the map stays small
		if now.After(e.expires) {
			delete(a.tickets, k)
		}
	}
	exp := now.Add(ticketTTL)
	a.tickets[hashSecret(t)] = ticketEntry{expires: exp, ended: ended}
	return t, exp
}

// useTicket spends a ticket: true once, for a ticket that has not expired. It
// returns the ended channel the ticket carries.
func (a *authState) useTicket(t string) (chan struct{}, bool) {
	if t == "" {
		return nil, false
	}
	id := hashSecret(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.tickets[id]
	delete(a.tickets, id)
	if !ok || a.now().After(e.expires) {
		return nil, false
	}
	if e.ended != nil {
		select {
		case <-e.ended: // its session ended since
			return nil, false
		default:
		}
	}
	return e.ended, true
}

// NewToken returns a new API token: 32 random bytes in hex.
func NewToken() string { return randomSecret("") }

// rotate replaces the token, writes it to the token file, and ends every
// session and ticket.
func (a *authState) rotate(ctx context.Context) error {
	tok := NewToken()
	if a.tokenFile == "" {
		return errors.New("this server has no token file to rotate")
	}
	if err := WriteTokenFile(a.tokenFile, tok); err != nil {
		return err
	}
	a.mu.Lock()
	a.token = tok
	for _, e := range a.sessions {
		close(e.ended)
	}
	a.sessions = map[string]*sessionEntry{}
	a.tickets = map[string]ticketEntry{}
	close(a.rotated)
	a.rotated = make(chan struct{})
	now := a.now()
	a.mu.Unlock()
	if a.db != nil {
		if _, err := a.db.DeleteSessionsExcept(ctx, hashSecret(tok), now.Add(-a.idle)); err != nil {
			return fmt.Errorf("end sessions: %w", err)
		}
	}
	return nil
}

// pruneSessions deletes stored sessions made with another token or idle too
// long; the server calls it at start.
func (a *authState) pruneSessions(ctx context.Context) error {
	if a.db == nil {
		return nil
	}
	a.mu.Lock()
	tokenHash, cutoff := hashSecret(a.token), a.now().Add(-a.idle)
	a.mu.Unlock()
	_, err := a.db.DeleteSessionsExcept(ctx, tokenHash, cutoff)
	return err
}

// WriteTokenFile replaces the token file atomically (mode 0600): a reader sees
// the old token or the new one, never half of either.
func WriteTokenFile(path, token string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token-*")
	if err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write token: %w", err)
	}
	if _, err := tmp.WriteString(token + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write token: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // the rename itself survives a crash
		d.Close()
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// credKey is the context key of the request's credKind.
type credKey struct{}

func credOf(r *http.Request) credKind {
	k, _ := r.Context().Value(credKey{}).(credKind)
	return k
}

// bearer returns the Authorization: Bearer value, or "".
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// ticketRoute reports whether r may be authorized by a ?ticket=: the routes a
// browser cannot send a header to (websockets, the event stream, and the
// export download, which the dashboard makes as a form POST so that the file
// streams to disk).
func ticketRoute(r *http.Request) bool {
	p := r.URL.Path
	switch r.Method {
	case http.MethodGet:
		return p == "/api/v1/events" || strings.HasSuffix(p, "/terminal") || strings.HasSuffix(p, "/exec/ws")
	case http.MethodPost:
		return strings.HasSuffix(p, "/export")
	}
	return false
}

// authenticate lets a request through when it carries a credential (see the
// comment at the top of this file) and records which kind in its context.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := credNone
		var ended chan struct{} // closed when this credential ends
		if p, ok := peerOf(r.Context()); ok {
			if !s.peerAllowed(p) {
				s.writeError(w, r, &httpError{Status: http.StatusForbidden, Code: api.CodeForbiddenPeer,
					Msg: peerRefusal(p)})
				return
			}
			kind = credPeer
		} else if b := bearer(r); b != "" {
			if s.auth.isToken(b) {
				kind = credToken
			} else if e, ok := s.auth.session(r.Context(), b); ok {
				kind, ended = credSession, e
			}
		} else if ticketRoute(r) {
			if e, ok := s.auth.useTicket(r.URL.Query().Get("ticket")); ok {
				kind, ended = credTicket, e
			}
		}
		if kind == credNone {
			w.Header().Set("WWW-Authenticate", `Bearer realm="subsys"`)
			s.writeError(w, r, &httpError{Status: http.StatusUnauthorized, Code: api.CodeUnauthorized,
				Msg: "missing, wrong or expired credential: send Authorization: Bearer <token from the data directory>, or sign in to the dashboard again"})
			return
		}
		ctx := context.WithValue(r.Context(), credKey{}, kind)
		if ticketRoute(r) && kind != credPeer {
			// A websocket or event stream lives on: it ends when its session
			// does, or when the token is rotated.
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			s.auth.mu.Lock()
			rotated := s.auth.rotated
			s.auth.mu.Unlock()
			go func() {
				select {
				case <-ended: // nil (the token): never
				case <-rotated:
				case <-ctx.Done():
				}
				cancel()
			}()
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// adminOnly admits only the token and socket peers: the routes behind it hand
// out or replace the token itself, which a browser session must not reach.
func (s *Server) adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k := credOf(r); k != credToken && k != credPeer {
			s.writeError(w, r, &httpError{Status: http.StatusForbidden, Code: api.CodeForbidden,
				Msg: "this needs the API token or the CLI's socket, not a browser session"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireUpgrade refuses, before anything starts, a request to a websocket
// route that is not a websocket handshake: an <img src> pointing at
// …/terminal?command=… must not run the command and then fail the upgrade.
func (s *Server) requireUpgrade(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !headerHasToken(r.Header, "Connection", "upgrade") {
			s.writeError(w, r, &httpError{Status: http.StatusBadRequest, Code: api.CodeWebsocketRequired,
				Msg: "this path is a websocket: connect with a websocket client (Upgrade: websocket)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// headerHasToken reports whether a comma-separated header contains tok.
func headerHasToken(h http.Header, name, tok string) bool {
	for _, v := range h.Values(name) {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), tok) {
				return true
			}
		}
	}
	return false
}

// handleLogin trades the API token (Authorization: Bearer) for a browser
// session. Only the token will do: a session cannot make more sessions.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) error {
	if credOf(r) != credToken {
		return &httpError{Status: http.StatusForbidden, Code: api.CodeForbidden, Msg: "log in with the API token"}
	}
	secret, err := s.auth.login(r.Context(), r.UserAgent())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.Login{Session: secret, IdleTimeoutS: int(s.auth.idle / time.Second)})
	return nil
}

// handleLogout ends the session that sent it.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) error {
	if credOf(r) == credSession {
		if err := s.auth.logout(r.Context(), bearer(r)); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleTicket hands out a single-use ticket for a websocket, the event stream
// or an export download.
func (s *Server) handleTicket(w http.ResponseWriter, r *http.Request) error {
	var ended chan struct{}
	if credOf(r) == credSession {
		ended, _ = s.auth.session(r.Context(), bearer(r))
	}
	t, exp := s.auth.newTicket(ended)
	writeJSON(w, http.StatusCreated, api.Ticket{Ticket: t, ExpiresAt: exp.UTC()})
	return nil
}

// handleDashboardURL answers the browser login URL, the token in its fragment
// (a fragment is never sent to a server, logged by one, or put in a Referer).
func (s *Server) handleDashboardURL(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.PublicURL == "" {
		return &httpError{Status: http.StatusNotFound, Code: api.CodeNoDashboard, Msg: "this server has no TCP listener for browsers"}
	}
	s.auth.mu.Lock()
	tok := s.auth.token
	s.auth.mu.Unlock()
	writeJSON(w, http.StatusOK, api.Dashboard{URL: strings.TrimSuffix(s.cfg.PublicURL, "/") + "/#token=" + tok})
	return nil
}

// handleRotateToken replaces the API token and ends every browser session.
func (s *Server) handleRotateToken(w http.ResponseWriter, r *http.Request) error {
	if err := s.auth.rotate(r.Context()); err != nil {
		return err
	}
	s.log.Info("token rotated; every browser session ended", "token_file", s.auth.tokenFile)
	writeJSON(w, http.StatusOK, api.TokenRotation{TokenFile: s.auth.tokenFile})
	return nil
}
