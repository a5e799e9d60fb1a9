package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/subsys-dev/subsys/api"
)

// SocketName is the server's unix socket in its data directory.
const SocketName = "subsys.sock"

// SystemDataDir is the data directory of a server run by root.
const SystemDataDir = "/var/lib/subsys"

// Config says which server a Client talks to, and how.
type Config struct {
	// Socket is the path of the server's unix socket, <data>/subsys.sock; it
	// is used when URL is empty. The server knows a socket peer by its
	// credentials (root, or a member of the subsys group), so no token is
	// sent. Default, with URL empty too: SocketPath("").
	Socket string
	// URL reaches the server over TCP instead: http://host:port or
	// https://host:port (a path prefix is kept). Default: empty, the socket.
	URL string
	// Token is sent as Authorization: Bearer to URL; required with URL (the
	// token file in the server's data directory holds it; ReadToken reads it).
	// Never sent over the socket.
	Token string
	// Transport carries the HTTP requests (not the websockets); tests wrap it.
	// Default: over the socket, a transport that dials only the socket; over
	// URL, http.DefaultTransport.
	Transport http.RoundTripper
}

// Client talks to one subsys server. Its methods may be called from several
// goroutines at once; every one takes a context that bounds the request.
type Client struct {
	// base is the URL requests go to: http://localhost over the socket.
	base *url.URL
	// token is the bearer token over TCP; empty over the socket.
	token string
	// socket is the unix socket's path, "" over TCP.
	socket string
	http   *http.Client
	ws     *websocket.Dialer
}

// New returns a client for the server cfg names. It connects to nothing
// yet: a server that is not running shows in the first call's error
// (*NotRunningError).
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		if cfg.Socket == "" {
			cfg.Socket = SocketPath("")
		}
		return newSocketClient(cfg), nil
	}
	u, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("server %s: a URL needs the API token (the file token in the server's data directory)", u.Redacted())
	}
	tr := cfg.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	dialer := *websocket.DefaultDialer
	return &Client{base: u, token: cfg.Token, http: &http.Client{Transport: tr}, ws: &dialer}, nil
}

// FromEnvironment returns a client for the server the subsys CLI would reach:
// with SUBSYS_URL set, that URL and the token in SUBSYS_TOKEN, else in the
// file token of dataDir; otherwise the unix socket subsys.sock in dataDir.
// dataDir "" means DefaultDataDir(), and then also the system server's socket
// for a user other than root who runs no server of their own (see SocketPath).
//
// There is no other fallback: a TCP port on this host may belong to any local
// user, and a client that tried a well-known port when the server is down
// would hand its token to whoever bound it first.
func FromEnvironment(dataDir string) (*Client, error) {
	raw := os.Getenv("SUBSYS_URL")
	if raw == "" {
		return New(Config{Socket: SocketPath(dataDir)})
	}
	u, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	tok := os.Getenv("SUBSYS_TOKEN")
	if tok == "" {
		if dataDir == "" {
			dataDir = DefaultDataDir()
		}
		if tok, err = ReadToken(dataDir); err != nil {
			return nil, fmt.Errorf("token for %s: %w (or set SUBSYS_TOKEN)", u.Redacted(), err)
		}
	}
	return New(Config{URL: raw, Token: tok})
}

// ParseURL checks a server URL: http or https, with a host.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http://host:port or https://host:port", raw)
	}
	return u, nil
}

// ReadToken reads the API token from the file token in a server's data
// directory (mode 0600: root's, for a server run by root).
func ReadToken(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "token"))
	if err != nil {
		return "", fmt.Errorf("read the token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// DefaultDataDir is where a server of this user keeps its data:
// /var/lib/subsys for root, else $XDG_DATA_HOME/subsys
// (~/.local/share/subsys), made absolute; on Windows %LOCALAPPDATA%\subsys.
func DefaultDataDir() string {
	if dir, ok := platformDataDir(); ok {
		return dir
	}
	if os.Geteuid() == 0 {
		return SystemDataDir
	}
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".local", "share")
	}
	if abs, err := filepath.Abs(filepath.Join(dir, "subsys")); err == nil {
		return abs
	}
	return filepath.Join(dir, "subsys")
}

// SocketPath is the socket of the server with data directory dataDir. With
// dataDir "" it is the default: DefaultDataDir's, unless the caller is not
// root, runs no server of its own and root's server is there, whose socket
// admits members of the subsys group. Only root can create anything in
// /var/lib, so that is no address another user could take.
func SocketPath(dataDir string) string {
	if dataDir != "" {
		return filepath.Join(dataDir, SocketName)
	}
	own := filepath.Join(DefaultDataDir(), SocketName)
	if os.Geteuid() == 0 || !systemServer {
		return own
	}
	if _, err := os.Lstat(own); err == nil {
		return own
	}
	sys := filepath.Join(SystemDataDir, SocketName)
	if fi, err := os.Lstat(sys); err == nil && fi.Mode().Type() == os.ModeSocket {
		return sys
	}
	return own
}

// NotRunningError says that no server listens on the socket.
type NotRunningError struct {
	// Socket is the path that was dialled.
	Socket string
	// Err is the dial's error.
	Err error
}

// Error says the server is not running, and how to start it.
func (e *NotRunningError) Error() string {
	if errors.Is(e.Err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("the subsys server is not running (nothing answers on %s): start it with `subsys serve`", e.Socket)
	}
	return fmt.Sprintf("the subsys server is not running (no socket at %s): start it with `subsys serve`", e.Socket)
}

// Unwrap returns the dial's error.
func (e *NotRunningError) Unwrap() error { return e.Err }

// newSocketClient returns a client that reaches the server through its unix
// socket, with Host: localhost and no token.
func newSocketClient(cfg Config) *Client {
	path := cfg.Socket
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOTSOCK):
			return nil, &NotRunningError{Socket: path, Err: err}
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("no access to the subsys server's socket %s: run as root, or as a member of the subsys group: %w", path, err)
		}
		return nil, fmt.Errorf("connect to the subsys server's socket %s: %w", path, err)
	}
	tr := cfg.Transport
	if tr == nil {
		// No Proxy: nothing in the environment may send these requests elsewhere.
		tr = &http.Transport{DialContext: dial, MaxIdleConns: 4, IdleConnTimeout: 30 * time.Second}
	}
	return &Client{
		base:   &url.URL{Scheme: "http", Host: "localhost"},
		socket: path,
		http:   &http.Client{Transport: tr},
		ws:     &websocket.Dialer{NetDialContext: dial, HandshakeTimeout: 45 * time.Second},
	}
}

// Where names the server for messages: its socket or its URL (without
// credentials).
func (c *Client) Where() string {
	if c.socket != "" {
		return c.socket
	}
	return c.base.Redacted()
}

// Socket is the unix socket the client uses; "" over TCP.
func (c *Client) Socket() string { return c.socket }

// url is the address of path, under /api/v1; path is escaped already (its
// parts by url.PathEscape), so that a name with a slash stays one part.
func (c *Client) url(path string, q url.Values) string {
	u := *c.base
	u.RawPath = strings.TrimSuffix(u.EscapedPath(), "/") + "/api/v1" + path
	u.Path, _ = url.PathUnescape(u.RawPath)
	u.RawQuery = q.Encode()
	return u.String()
}

// authHeader is what authenticates a request: the bearer token over TCP,
// nothing over the socket.
func (c *Client) authHeader() http.Header {
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	return h
}

// request builds an API request for path (under /api/v1) with its credentials.
func (c *Client) request(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range c.authHeader() {
		req.Header[k] = v
	}
	return req, nil
}

// send sends req. A failure to reach the server says which server and why; a
// reply that is not 2xx becomes *api.Error, with the body read and closed.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.reachError(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// UnreachableError says that a request did not reach the server, or its
// reply did not come back, for a reason other than NotRunningError's.
type UnreachableError struct {
	// Where is the server's socket or URL.
	Where string
	// Socket is whether Where is a socket.
	Socket bool
	// Err is why.
	Err error
}

// Error says which server could not be reached, and why.
func (e *UnreachableError) Error() string {
	if e.Socket {
		return fmt.Sprintf("cannot reach the subsys server on %s: %v", e.Where, e.Err)
	}
	return fmt.Sprintf("cannot reach the subsys server at %s: %v (is it running?)", e.Where, e.Err)
}

// Unwrap returns why.
func (e *UnreachableError) Unwrap() error { return e.Err }

// reachError explains a failure to reach the server: *NotRunningError or
// *UnreachableError.
func (c *Client) reachError(err error) error {
	var nr *NotRunningError
	if errors.As(err, &nr) {
		return nr
	}
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // drop `Get "http://localhost/api/v1/…":`
	}
	return &UnreachableError{Where: c.Where(), Socket: c.socket != "", Err: err}
}

// decodeError turns a reply that is not 2xx into *api.Error: the API's JSON
// error, or the start of whatever else came (a proxy's page).
func decodeError(resp *http.Response) error {
	var body api.ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &body) != nil || body.Error.Message == "" {
		text := strings.TrimSpace(string(b))
		if len(text) > 512 {
			text = text[:512] + "…"
		}
		return &api.Error{Status: resp.StatusCode, Code: "http", Message: fmt.Sprintf("%s: %s", resp.Status, text)}
	}
	body.Error.Status = resp.StatusCode
	return &body.Error
}

// call sends a request with an optional JSON body (in) and decodes a JSON
// reply into out unless out is nil.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.request(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("decode the reply of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// get is call for a GET that decodes into a new T.
func get[T any](ctx context.Context, c *Client, path string, q url.Values) (T, error) {
	var v T
	err := c.call(ctx, http.MethodGet, path, q, nil, &v)
	return v, err
}

// dialWS opens the websocket at path (under /api/v1), over the socket or TCP.
func (c *Client) dialWS(ctx context.Context, path string, q url.Values) (*websocket.Conn, error) {
	u, _ := url.Parse(c.url(path, q))
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	conn, resp, err := c.ws.DialContext(ctx, u.String(), c.authHeader())
	if err != nil {
		if resp != nil && resp.StatusCode >= 300 {
			defer resp.Body.Close()
			return nil, decodeError(resp)
		}
		return nil, c.reachError(err)
	}
	return conn, nil
}

func distroPath(name string) string { return "/distros/" + url.PathEscape(name) }
