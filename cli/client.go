package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// serveFile is where `serve` records its URL for clients on the same machine.
const serveFile = "serve.json"

// serveInfo is the content of serveFile.
type serveInfo struct {
	URL string `json:"url"`
}

// client talks to the REST API.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// apiError is an error reply of the API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

func (g *globals) client() (*client, error) {
	raw := g.url
	if raw == "" {
		raw = os.Getenv("SUBSYS_URL")
	}
	if raw == "" {
		if b, err := os.ReadFile(filepath.Join(g.data, serveFile)); err == nil {
			var si serveInfo
			if json.Unmarshal(b, &si) == nil {
				raw = si.URL
			}
		}
	}
	if raw == "" {
		raw = "http://127.0.0.1:7070"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("server URL %q: want http://host:port", raw)
	}
	tok := g.token
	if tok == "" {
		tok = os.Getenv("SUBSYS_TOKEN")
	}
	if tok == "" {
		b, err := os.ReadFile(filepath.Join(g.data, "token"))
		if err != nil {
			return nil, fmt.Errorf("read token: %w (is `subsys serve` running with --data %s? or set SUBSYS_TOKEN)", err, g.data)
		}
		tok = strings.TrimSpace(string(b))
	}
	return &client{base: u, token: tok, http: &http.Client{}}, nil
}

func (c *client) url(path string, q url.Values) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1" + path
	u.RawQuery = q.Encode()
	return u.String()
}

// do sends a request and decodes a JSON reply into out (unless out is nil). A
// non-2xx reply becomes *apiError.
func (c *client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string, out any) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the subsys server at %s: %w (start it with `subsys serve`)", c.base, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return resp, decodeAPIError(resp)
	}
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
		return &apiError{Status: resp.StatusCode, Code: "http", Message: fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))}
	}
	return &apiError{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
}

func (c *client) json(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	_, err := c.do(ctx, method, path, nil, body, ct, out)
	return err
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
		if _, err := c.do(ctx, http.MethodGet, "/operations/"+op.ID, url.Values{"wait": {"1"}}, nil, "", &next); err != nil {
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
		return op, fmt.Errorf("%s %s failed: %s", op.Kind, op.Distro, op.Error)
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
}

func jsonDecode(r io.Reader, v any) error {
	if err := json.NewDecoder(r).Decode(v); err != nil {
		return fmt.Errorf("decode server reply: %w", err)
	}
	return nil
}
