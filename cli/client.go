package cli

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
)

// systemDataDir is the data directory of a server run by root (see DefaultDataDir).
const systemDataDir = "/var/lib/subsys"

// client talks to the REST API, over the server's unix socket or over TCP.
type client struct {
	// base is the URL requests go to: http://localhost over the socket.
	base *url.URL
	// token is sent as a bearer token over TCP; empty over the socket, where the
	// server knows the caller by its credentials.
	token string
	// socket is the unix socket's path, "" over TCP.
	socket string
	http   *http.Client
	ws     *websocket.Dialer
}

// apiError is an error reply of the API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

// Error is the server's message, sanitized: it may quote distro-supplied text.
func (e *apiError) Error() string { return sanitize(e.Message) }

// notRunningError says that no server listens on the socket.
type notRunningError struct {
	socket string
	err    error
}

func (e *notRunningError) Error() string {
	if errors.Is(e.err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("the subsys server is not running (nothing answers on %s): start it with `subsys serve`", e.socket)
	}
	return fmt.Sprintf("the subsys server is not running (no socket at %s): start it with `subsys serve`", e.socket)
}

func (e *notRunningError) Unwrap() error { return e.err }

// client returns a client for the server: the URL in --url or SUBSYS_URL with
// the token in SUBSYS_TOKEN or the data directory when one is set, else the unix
// socket in the data directory. There is no other fallback: a TCP port on this
// host may belong to any local user, and a client that tried a well-known port
// when the server is down would hand its token to whoever bound it first.
func (g *globals) client() (*client, error) {
	raw := g.url
	if raw == "" {
		raw = os.Getenv("SUBSYS_URL")
	}
	if raw == "" {
		return socketClient(g.socketPath()), nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http://host:port or https://host:port", raw)
	}
	tok := os.Getenv("SUBSYS_TOKEN")
	if tok == "" {
		path := filepath.Join(g.data, "token")
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read the token for %s: %w (set SUBSYS_TOKEN, or --data to the server's data directory)", u.Redacted(), err)
		}
		tok = strings.TrimSpace(string(b))
	}
	dialer := *websocket.DefaultDialer
	return &client{base: u, token: tok, http: &http.Client{}, ws: &dialer}, nil
}

// socketPath is the server's socket: in the data directory; for a user who is
// not root and named no --data, root's server when the user runs none of their
// own (the socket lets in members of the subsys group). Only root can create
// anything in /var/lib, so that is no address another user could take.
func (g *globals) socketPath() string {
	own := filepath.Join(g.data, SocketName)
	if g.dataSet || os.Geteuid() == 0 || g.data == systemDataDir {
		return own
	}
	if _, err := os.Lstat(own); err == nil {
		return own
	}
	sys := filepath.Join(systemDataDir, SocketName)
	if fi, err := os.Lstat(sys); err == nil && fi.Mode().Type() == os.ModeSocket {
		return sys
	}
	return own
}

// socketClient returns a client that reaches the server through the unix socket
// at path, with Host: localhost and no token.
func socketClient(path string) *client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOTSOCK):
			return nil, &notRunningError{socket: path, err: err}
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("no access to the subsys server's socket %s: run as root, or as a member of the subsys group: %w", path, err)
		}
		return nil, fmt.Errorf("connect to the subsys server's socket %s: %w", path, err)
	}
	// No Proxy: nothing in the environment may send these requests elsewhere.
	tr := &http.Transport{DialContext: dial, MaxIdleConns: 4, IdleConnTimeout: 30 * time.Second}
	return &client{
		base:   &url.URL{Scheme: "http", Host: "localhost"},
		socket: path,
		http:   &http.Client{Transport: tr},
		ws:     &websocket.Dialer{NetDialContext: dial, HandshakeTimeout: 45 * time.Second},
	}
}

// where names the server for messages: its socket or its URL.
func (c *client) where() string {
	if c.socket != "" {
		return c.socket
	}
	return c.base.Redacted()
}

func (c *client) url(path string, q url.Values) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1" + path
	u.RawQuery = q.Encode()
	return u.String()
}

// authHeader is what authenticates a request: the bearer token over TCP,
// nothing over the socket.
func (c *client) authHeader() http.Header {
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	return h
}

// request builds an API request for path (under /api/v1) with its credentials.
func (c *client) request(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
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
// non-2xx reply becomes *apiError, with the body read and closed.
func (c *client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.reachError(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return resp, decodeAPIError(resp)
	}
	return resp, nil
}

// reachError explains a failure to reach the server.
func (c *client) reachError(err error) error {
	var nr *notRunningError
	if errors.As(err, &nr) {
		return nr
	}
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // drop `Get "http://localhost/api/v1/…":`
	}
	if c.socket != "" {
		return fmt.Errorf("cannot reach the subsys server on %s: %w", c.socket, err)
	}
	return fmt.Errorf("cannot reach the subsys server at %s: %w (is it running?)", c.where(), err)
}

// do sends a request and decodes a JSON reply into out (unless out is nil). A
// non-2xx reply becomes *apiError.
func (c *client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string, out any) (*http.Response, error) {
	req, err := c.request(ctx, method, path, q, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.send(req)
	if err != nil {
		return resp, err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp, fmt.Errorf("decode reply of %s %s: %w", method, path, err)
		}
	}
	return resp, nil
}

func decodeAPIError(resp *http.Response) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &body) != nil || body.Error.Message == "" {
		text := strings.TrimSpace(string(b))
		if len(text) > 512 {
			text = text[:512] + "…"
		}
		return &apiError{Status: resp.StatusCode, Code: "http", Message: fmt.Sprintf("%s: %s", resp.Status, text)}
	}
	return &apiError{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
}

func (c *client) json(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	_, err := c.do(ctx, method, path, nil, body, ct, out)
	return err
}

// dialWS opens the websocket at path (under /api/v1), over the socket or TCP.
func (c *client) dialWS(ctx context.Context, path string) (*websocket.Conn, error) {
	u, _ := url.Parse(c.url(path, nil))
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	conn, resp, err := c.ws.DialContext(ctx, u.String(), c.authHeader())
	if err != nil {
		if resp != nil && resp.StatusCode >= 300 {
			defer resp.Body.Close()
			return nil, decodeAPIError(resp)
		}
		return nil, c.reachError(err)
	}
	return conn, nil
}

// operation is the API's operation object.
type operation struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Distro   string `json:"distro"`
	Status   string `json:"status"`
	Progress struct {
		Done  int64 `json:"done"`
		Total int64 `json:"total"`
	} `json:"progress"`
	Error string `json:"error"`
}

// wait long-polls an operation until it ends, calling progress on each step.
func (c *client) wait(ctx context.Context, op operation, progress func(operation)) (operation, error) {
	for op.Status == "running" {
		if progress != nil {
			progress(op)
		}
		var next operation
		if _, err := c.do(ctx, http.MethodGet, "/operations/"+url.PathEscape(op.ID), url.Values{"wait": {"1"}}, nil, "", &next); err != nil {
			return op, err
		}
		op = next
		if ctx.Err() != nil {
			return op, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
	if progress != nil {
		progress(op)
	}
	if op.Status != "success" {
		return op, fmt.Errorf("%s %s failed: %s", sanitize(op.Kind), sanitize(op.Distro), sanitize(op.Error))
	}
	return op, nil
}

// distro is the API's distro object.
type distro struct {
	Name        string `json:"name"`
	ID          string `json:"id"`
	Version     int    `json:"version"`
	State       string `json:"state"`
	Default     bool   `json:"default"`
	Location    string `json:"location"`
	DefaultUser string `json:"default_user"`
	// AgentOutdated: the distro runs an agent of another protocol version
	// (from before an upgrade); Message says what to do.
	AgentOutdated bool   `json:"agent_outdated"`
	Message       string `json:"message"`
}

func jsonDecode(r io.Reader, v any) error {
	if err := json.NewDecoder(r).Decode(v); err != nil {
		return fmt.Errorf("decode server reply: %w", err)
	}
	return nil
}
