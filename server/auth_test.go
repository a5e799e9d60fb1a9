package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/store"
)

// call sends one request to s and returns the recorder.
func call(t *testing.T, s *Server, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	r.Host = "localhost:7070"
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func bearerHdr(v string) map[string]string { return map[string]string{"Authorization": "Bearer " + v} }

func loginSession(t *testing.T, s *Server, token string) string {
	t.Helper()
	w := call(t, s, "POST", "/api/v1/login", bearerHdr(token))
	if w.Code != 200 {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	var out struct{ Session string }
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Session == "" {
		t.Fatalf("login reply %s: %v", w.Body, err)
	}
	return out.Session
}

func newTicket(t *testing.T, s *Server, cred string) string {
	t.Helper()
	w := call(t, s, "POST", "/api/v1/tickets", bearerHdr(cred))
	if w.Code != 201 {
		t.Fatalf("ticket: %d %s", w.Code, w.Body)
	}
	var out struct{ Ticket string }
	json.Unmarshal(w.Body.Bytes(), &out)
	return out.Ticket
}

// TestNoAmbientCredential: what a browser sends by itself — the old token
// cookie, or nothing — authorizes nothing, while the same token as a header does
// (so the probe could succeed).
func TestNoAmbientCredential(t *testing.T) {
	s := New(Config{Token: "secret"})
	if w := call(t, s, "GET", "/api/v1/version", bearerHdr("secret")); w.Code != 200 {
		t.Fatalf("control: the token as a header: %d", w.Code)
	}
	for _, cookie := range []string{"subsys_token=secret", "subsys_session=secret", "token=secret"} {
		if w := call(t, s, "GET", "/api/v1/version", map[string]string{"Cookie": cookie}); w.Code != 401 {
			t.Errorf("cookie %q: status %d, want 401", cookie, w.Code)
		}
	}
	// The old login URL is no longer a GET that hands out a credential.
	w := call(t, s, "GET", "/login?token=secret", nil)
	if c := w.Header().Get("Set-Cookie"); c != "" {
		t.Errorf("GET /login sets a cookie: %s", c)
	}
}

// TestSessionLifecycle: the token makes a session; the session authorizes API
// calls but cannot make sessions, fetch the login URL or rotate the token;
// logout and idle expiry end it.
func TestSessionLifecycle(t *testing.T) {
	s := New(Config{Token: "secret", PublicURL: "http://localhost:7070", SessionIdle: time.Hour})
	now := time.Now()
	s.auth.now = func() time.Time { return now }
	ses := loginSession(t, s, "secret")
	if ses == "secret" || !strings.HasPrefix(ses, "subsys_session_") {
		t.Fatalf("session %q is not a credential of its own", ses)
	}
	if w := call(t, s, "GET", "/api/v1/version", bearerHdr(ses)); w.Code != 200 {
		t.Fatalf("session: %d", w.Code)
	}
	for _, p := range []struct{ method, path string }{{"POST", "/api/v1/login"}, {"GET", "/api/v1/dashboard"}, {"POST", "/api/v1/token/rotate"}} {
		if w := call(t, s, p.method, p.path, bearerHdr(ses)); w.Code != 403 {
			t.Errorf("%s %s with a session: %d, want 403", p.method, p.path, w.Code)
		}
	}
	if w := call(t, s, "GET", "/api/v1/dashboard", bearerHdr("secret")); w.Code != 200 || !strings.Contains(w.Body.String(), "/#token=secret") {
		t.Errorf("dashboard URL with the token: %d %s", w.Code, w.Body)
	}
	// Idle expiry.
	now = now.Add(59 * time.Minute)
	if w := call(t, s, "GET", "/api/v1/version", bearerHdr(ses)); w.Code != 200 {
		t.Fatalf("session used within the idle time: %d", w.Code)
	}
	now = now.Add(61 * time.Minute)
	if w := call(t, s, "GET", "/api/v1/version", bearerHdr(ses)); w.Code != 401 {
		t.Fatalf("session idle past the limit: %d, want 401", w.Code)
	}
	// Logout.
	ses2 := loginSession(t, s, "secret")
	if w := call(t, s, "POST", "/api/v1/logout", bearerHdr(ses2)); w.Code != 204 {
		t.Fatalf("logout: %d", w.Code)
	}
	if w := call(t, s, "GET", "/api/v1/version", bearerHdr(ses2)); w.Code != 401 {
		t.Fatalf("session after logout: %d, want 401", w.Code)
	}
}

// TestTickets: a ticket opens one websocket or event stream, once, within its
// lifetime, and nothing else.
func TestTickets(t *testing.T) {
	s := New(Config{Token: "secret"})
	now := time.Now()
	s.auth.now = func() time.Time { return now }
	ses := loginSession(t, s, "secret")

	tk := newTicket(t, s, ses)
	// Not a ticket route: refused even with a fresh ticket.
	if w := call(t, s, "GET", "/api/v1/version?ticket="+tk, nil); w.Code != 401 {
		t.Errorf("ticket on a plain route: %d, want 401", w.Code)
	}
	// The terminal route: the ticket authorizes, and the non-upgrade is then
	// refused before any handler runs (the Manager is nil: a handler would panic).
	tk = newTicket(t, s, ses)
	w := call(t, s, "GET", "/api/v1/distros/x/terminal?command=touch+/pwned&ticket="+tk, nil)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "websocket_required") {
		t.Fatalf("terminal without upgrade: %d %s", w.Code, w.Body)
	}
	// Spent.
	if w := call(t, s, "GET", "/api/v1/distros/x/terminal?ticket="+tk, nil); w.Code != 401 {
		t.Errorf("spent ticket: %d, want 401", w.Code)
	}
	// Expired.
	tk = newTicket(t, s, ses)
	now = now.Add(ticketTTL + time.Second)
	if w := call(t, s, "GET", "/api/v1/distros/x/terminal?ticket="+tk, nil); w.Code != 401 {
		t.Errorf("expired ticket: %d, want 401", w.Code)
	}
}

// TestWebsocketRoutesNeedUpgrade: with a full credential, a GET of a websocket
// route that is not an upgrade is refused before its handler (which, with no
// Manager, would panic) — an <img src> cannot start a command.
func TestWebsocketRoutesNeedUpgrade(t *testing.T) {
	s := New(Config{Token: "secret"})
	for _, p := range []string{"/api/v1/distros/d/terminal?user=root&command=id", "/api/v1/distros/d/exec/ws?argv=id"} {
		w := call(t, s, "GET", p, bearerHdr("secret"))
		if w.Code != 400 {
			t.Errorf("GET %s without Upgrade: %d, want 400", p, w.Code)
		}
	}
	// Export is not a GET any more.
	if w := call(t, s, "GET", "/api/v1/distros/d/export", bearerHdr("secret")); w.Code != 405 {
		t.Errorf("GET export: %d, want 405", w.Code)
	}
}

// TestRotateEndsSessions: rotation writes a new token file (0600), the old
// token and every session stop working, sessions stored in SQLite too, and a
// server started later does not accept them either.
func TestRotateEndsSessions(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(context.Background(), filepath.Join(dir, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tokenFile := filepath.Join(dir, "token")
	if err := WriteTokenFile(tokenFile, "old-token"); err != nil {
		t.Fatal(err)
	}
	s := New(Config{Token: "old-token", TokenFile: tokenFile, Sessions: db})
	ses := loginSession(t, s, "old-token")

	// A server restarted with the same token keeps the session (it is stored).
	s2 := New(Config{Token: "old-token", TokenFile: tokenFile, Sessions: db})
	if w := call(t, s2, "GET", "/api/v1/version", bearerHdr(ses)); w.Code != 200 {
		t.Fatalf("stored session after restart: %d", w.Code)
	}

	if w := call(t, s, "POST", "/api/v1/token/rotate", bearerHdr("old-token")); w.Code != 200 {
		t.Fatalf("rotate: %d %s", w.Code, w.Body)
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	newTok := strings.TrimSpace(string(b))
	if newTok == "old-token" || len(newTok) != 64 {
		t.Fatalf("token file after rotate: %q", newTok)
	}
	if fi, _ := os.Stat(tokenFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	for _, cred := range []string{"old-token", ses} {
		if w := call(t, s, "GET", "/api/v1/version", bearerHdr(cred)); w.Code != 401 {
			t.Errorf("after rotate, %.20s…: %d, want 401", cred, w.Code)
		}
	}
	if w := call(t, s, "GET", "/api/v1/version", bearerHdr(newTok)); w.Code != 200 {
		t.Errorf("new token: %d", w.Code)
	}
	// A server started with the new token does not take the old session from
	// the database.
	s3 := New(Config{Token: newTok, TokenFile: tokenFile, Sessions: db})
	if w := call(t, s3, "GET", "/api/v1/version", bearerHdr(ses)); w.Code != 401 {
		t.Errorf("old session on a new server: %d, want 401", w.Code)
	}
}

// TestSessionSecretNotStored: the database holds a hash, not the secret.
func TestSessionSecretNotStored(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subsys.db")
	db, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Token: "secret", Sessions: db})
	ses := loginSession(t, s, "secret")
	db.Close()
	for _, f := range []string{path, path + "-wal"} {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), ses) {
			t.Errorf("%s holds the session secret", f)
		}
		if strings.Contains(string(b), hashSecret(ses)) {
			return // the probe sees what is stored: the hash is there
		}
	}
	t.Error("neither the database nor its WAL holds the session's hash: the probe could not see the secret either")
}

// TestUnixPeers: a unix-socket peer is authorized by its credentials alone.
func TestUnixPeers(t *testing.T) {
	s := New(Config{Token: "secret"})
	for _, tc := range []struct {
		peer Peer
		want int
	}{
		{Peer{PID: 1, UID: 0, GID: 0}, 200},
		{Peer{PID: 1, UID: 65534, GID: 65534}, 403},
		{Peer{PID: -1, UID: -1, GID: -1}, 403},
	} {
		r := httptest.NewRequest("GET", "/api/v1/version", nil)
		r.Host = "anything" // the Host check is for browsers; a socket peer has none
		r = r.WithContext(context.WithValue(r.Context(), peerKey{}, tc.peer))
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("peer %+v: %d, want %d (%s)", tc.peer, w.Code, tc.want, w.Body)
		}
	}
	_ = http.StatusOK
}

// TestStreamsEndWithTheirCredential: an event stream or websocket opened with a
// ticket ends when the session that fetched the ticket logs out, and every one
// ends when the token is rotated; one that is not ended keeps running (so the
// probe could see a stream stay open).
func TestStreamsEndWithTheirCredential(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	s := New(Config{Token: "secret", TokenFile: tokenFile})
	// A stand-in for a long-lived handler: it runs until its request's context
	// ends, behind the real authentication.
	type stream struct{ started, done chan struct{} }
	open := func(ticket string) stream {
		st := stream{make(chan struct{}), make(chan struct{})}
		h := s.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(st.started)
			<-r.Context().Done()
		}))
		go func() {
			defer close(st.done)
			r := httptest.NewRequest("GET", "/api/v1/events?ticket="+ticket, nil)
			h.ServeHTTP(httptest.NewRecorder(), r)
		}()
		select {
		case <-st.started:
		case <-st.done:
			t.Fatal("the stream was refused")
		case <-time.After(5 * time.Second):
			t.Fatal("the stream did not start")
		}
		return st
	}
	ended := func(st stream) bool {
		select {
		case <-st.done:
			return true
		case <-time.After(2 * time.Second):
			return false
		}
	}
	sesA, sesB := loginSession(t, s, "secret"), loginSession(t, s, "secret")
	a, b := open(newTicket(t, s, sesA)), open(newTicket(t, s, sesB))
	if w := call(t, s, "POST", "/api/v1/logout", bearerHdr(sesA)); w.Code != 204 {
		t.Fatalf("logout: %d", w.Code)
	}
	if !ended(a) {
		t.Error("a stream of a logged-out session is still open")
	}
	if ended(b) {
		t.Fatal("another session's stream ended with the logout")
	}
	tok := open(newTicket(t, s, "secret"))
	if w := call(t, s, "POST", "/api/v1/token/rotate", bearerHdr("secret")); w.Code != 200 {
		t.Fatalf("rotate: %d %s", w.Code, w.Body)
	}
	if !ended(b) || !ended(tok) {
		t.Error("streams are still open after the token was rotated")
	}
}
