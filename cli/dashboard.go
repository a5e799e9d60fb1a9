package cli

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/subsys-dev/subsys/client"
)

func newDashboardCmd(g *globals) *cobra.Command {
	var noBrowser bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print a login URL for the browser dashboard, and open it",
		Long: `Print a fresh login URL for the browser dashboard. On a terminal of a desktop
session (DISPLAY or WAYLAND_DISPLAY set) it also opens in the default browser,
unless --no-browser. The URL carries the token: treat it as a password.`,
		Args: cobra.NoArgs,
		RunE: withClient(g, func(ctx context.Context, c *client.Client, _ []string) error {
			raw, err := c.DashboardURL(ctx)
			if err != nil {
				return fmt.Errorf("dashboard: %w", err)
			}
			u, err := loginURL(raw)
			if err != nil {
				return fmt.Errorf("dashboard: %w", err)
			}
			fmt.Fprintln(stdout, u)
			if !noBrowser && hasDisplay() && term.IsTerminal(int(os.Stdout.Fd())) {
				openBrowser(u) // best effort: the URL is printed either way
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "only print the URL")
	return cmd
}

// loginURL checks the URL the server sent for the browser: an absolute http or
// https URL with nothing a terminal or a shell would act on. What is handed to
// the desktop's URL opener must not be a file, or a scheme some other program
// handles.
func loginURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("the server sent an unexpected login URL %q", sanitize(raw))
	}
	if sanitize(raw) != raw {
		return "", fmt.Errorf("the server sent a login URL with control characters: %q", sanitize(raw))
	}
	return raw, nil
}

// hasDisplay reports whether this runs in a graphical session.
func hasDisplay() bool { return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "" }

// openBrowser opens the login URL with xdg-open, in the background, ignoring
// errors. The URL holds the token, and a program's arguments are readable by
// every local user (ps, /proc/PID/cmdline) for as long as it runs — a browser
// started by xdg-open may run for days. So what xdg-open gets is a page of the
// user's own (mode 0600, in a 0700 directory) that sends the browser on to the
// URL, as Jupyter does.
func openBrowser(loginURL string) {
	opener, err := exec.LookPath("xdg-open")
	if err != nil {
		return
	}
	page, err := writeRedirectPage(loginURL)
	if err != nil {
		return
	}
	cmd := exec.Command(opener, page)
	detach(cmd)
	if cmd.Start() == nil {
		cmd.Process.Release()
	}
}

// redirectDir is the user's private directory for the redirect page: under
// $XDG_RUNTIME_DIR (per-user, mode 0700, emptied at logout) when there is one,
// else under the user's cache directory.
func redirectDir() (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		var err error
		if base, err = os.UserCacheDir(); err != nil {
			return "", fmt.Errorf("no directory for the dashboard page: %w", err)
		}
	}
	dir := filepath.Join(base, "subsys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("check %s: %w", dir, err)
	}
	if !fi.IsDir() || !ownedPrivate(fi) {
		return "", errors.New(dir + " is not a private directory of this user")
	}
	return dir, nil
}

// writeRedirectPage writes (replacing the last one) an HTML page that sends the
// browser to loginURL, and returns its path.
func writeRedirectPage(loginURL string) (string, error) {
	dir, err := redirectDir()
	if err != nil {
		return "", err
	}
	esc := html.EscapeString(loginURL)
	page := `<!doctype html>
<html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0;url=` + esc + `"><title>subsys</title></head>
<body><p><a href="` + esc + `">Open the subsys dashboard</a></p></body></html>
`
	f, err := os.CreateTemp(dir, ".dashboard-*.html") // mode 0600
	if err != nil {
		return "", fmt.Errorf("write the dashboard page: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if _, err := f.WriteString(page); err != nil {
		f.Close()
		return "", fmt.Errorf("write the dashboard page: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write the dashboard page: %w", err)
	}
	path := filepath.Join(dir, "dashboard.html")
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("write the dashboard page: %w", err)
	}
	return path, nil
}
