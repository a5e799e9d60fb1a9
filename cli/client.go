package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/subsys-dev/subsys/client"
)

// client returns a client for the server: the URL in --url or SUBSYS_URL with
// the token in SUBSYS_TOKEN or the data directory when one is set, else the unix
// socket in the data directory (see client.SocketPath for a user without a
// server of their own). There is no other fallback: a TCP port on this host
// may belong to any local user, and a client that tried a well-known port when
// the server is down would hand its token to whoever bound it first.
func (g *globals) client() (*client.Client, error) {
	raw := g.url
	if raw == "" {
		raw = os.Getenv("SUBSYS_URL")
	}
	if raw == "" {
		sock := client.SocketPath("")
		if g.dataSet {
			sock = client.SocketPath(g.data)
		}
		return client.New(client.Config{Socket: sock})
	}
	u, err := client.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	tok := os.Getenv("SUBSYS_TOKEN")
	if tok == "" {
		b, err := os.ReadFile(filepath.Join(g.data, "token"))
		if err != nil {
			return nil, fmt.Errorf("read the token for %s: %w (set SUBSYS_TOKEN, or --data to the server's data directory)", u.Redacted(), err)
		}
		tok = strings.TrimSpace(string(b))
	}
	return client.New(client.Config{URL: raw, Token: tok})
}

// shownError is an error as the CLI shows it: sanitized, since it may quote
// the server and through it a distro (sanitize leaves clean text as it is).
// errors.As still finds what it wraps (an exitError, a *client.NotRunningError).
type shownError struct{ err error }

func (e shownError) Error() string { return sanitize(e.err.Error()) }

func (e shownError) Unwrap() error { return e.err }

// shown wraps err (nil stays nil) for showing.
func shown(err error) error {
	if err == nil {
		return nil
	}
	return shownError{err}
}
