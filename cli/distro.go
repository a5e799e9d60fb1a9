package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func withClient(g *globals, f func(ctx context.Context, c *client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := g.client()
		if err != nil {
			return err
		}
		return f(cmd.Context(), c, args)
	}
}

func newListCmd(g *globals) *cobra.Command {
	var verbose, running bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls", "l"},
		Short:   "List distros (like wsl -l -v)",
		Args:    cobra.NoArgs,
		RunE: withClient(g, func(ctx context.Context, c *client, _ []string) error {
			var list []distro
			if err := c.json(ctx, http.MethodGet, "/distros", nil, &list); err != nil {
				return err
			}
			if running {
				kept := list[:0]
				for _, d := range list {
					if d.State == "Running" {
						kept = append(kept, d)
					}
				}
				list = kept
			}
			if len(list) == 0 {
				if running {
					fmt.Fprintln(stdout, "There are no running distros.")
				} else {
					fmt.Fprintln(stdout, "There are no installed distros. Import one with: subsys import NAME TARBALL")
				}
				return nil
			}
			if !verbose {
				for _, d := range list {
					if d.Default {
						fmt.Fprintf(stdout, "%s (Default)\n", sanitize(d.Name))
					} else {
						fmt.Fprintln(stdout, sanitize(d.Name))
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 4, ' ', 0)
			fmt.Fprintln(tw, "  NAME\tSTATE\tVERSION")
			for _, d := range list {
				mark := " "
				if d.Default {
					mark = "*"
				}
				row(tw, mark+" "+d.Name, d.State, d.Version)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, d := range list {
				if d.AgentOutdated || d.Message != "" {
					fmt.Fprintf(stderr, "note: %s: %s\n", sanitize(d.Name), sanitize(d.Message))
				}
			}
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show state and version")
	cmd.Flags().BoolVar(&running, "running", false, "only running distros")
	return cmd
}

// showProgress is whether to draw progress bars: only on a terminal.
func showProgress() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

func newBar(total int64, desc string) *progressbar.ProgressBar {
	if !showProgress() {
		return progressbar.DefaultBytesSilent(total, desc)
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetDescription(desc), progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100_000_000),
		progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(), progressbar.OptionSpinnerType(14),
		progressbar.OptionFullWidth())
}

func newImportCmd(g *globals) *cobra.Command {
	var location string
	var version int
	cmd := &cobra.Command{
		Use:   "import NAME TARBALL|-",
		Short: "Import a root file system tarball (tar, tar.gz, tar.xz, tar.zst) as a new distro",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(g, func(ctx context.Context, c *client, args []string) error {
			name, src := args[0], args[1]
			var in io.Reader = os.Stdin
			size := int64(-1)
			if src != "-" {
				f, err := os.Open(src)
				if err != nil {
					return fmt.Errorf("import %s: %w", name, err)
				}
				defer f.Close()
				if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
					size = st.Size()
				}
				in = f
			}
			bar := newBar(size, "importing "+name)
			q := url.Values{"name": {name}, "version": {strconv.Itoa(version)}}
			if location != "" {
				abs, err := filepath.Abs(location)
				if err != nil {
					return fmt.Errorf("--location %s: %w", location, err)
				}
				q.Set("location", abs)
			}
			req, err := c.request(ctx, http.MethodPost, "/distros", q, io.NopCloser(io.TeeReader(in, bar)))
			if err != nil {
				return err
			}
			req.ContentLength = size // -1: unknown, sent chunked
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := c.send(req)
			if err != nil {
				bar.Exit()
				return fmt.Errorf("import %s: %w", name, err)
			}
			defer resp.Body.Close()
			var op operation
			if err := jsonDecode(resp.Body, &op); err != nil {
				return err
			}
			if _, err := c.wait(ctx, op, nil); err != nil {
				bar.Exit()
				return err
			}
			bar.Finish()
			fmt.Fprintf(stderr, "Imported %s.\n", sanitize(name))
			return nil
		}),
	}
	cmd.Flags().StringVar(&location, "location", "", "directory for the distro's files (default: the data directory)")
	cmd.Flags().IntVar(&version, "version", 1, "distro version: 1 (shared kernel) or 2 (utility VM)")
	return cmd
}

// formatFromName picks an export format from a file name's ending.
func formatFromName(name string) string {
	switch {
	case strings.HasSuffix(name, ".tar.gz"), strings.HasSuffix(name, ".tgz"):
		return "tar.gz"
	case strings.HasSuffix(name, ".tar.zst"), strings.HasSuffix(name, ".tzst"):
		return "tar.zst"
	case strings.HasSuffix(name, ".tar.xz"), strings.HasSuffix(name, ".txz"):
		return "tar.xz"
	}
	return "tar"
}

func newExportCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "export NAME FILE|-",
		Short: "Export a distro's root file system as a tarball",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(g, func(ctx context.Context, c *client, args []string) error {
			name, dst := args[0], args[1]
			if format == "" {
				format = formatFromName(dst)
			}
			// POST: an export does work (and a GET that does work is what a
			// cross-site page could trigger); the body stays empty.
			req, err := c.request(ctx, http.MethodPost, distroPath(name)+"/export", url.Values{"format": {format}}, nil)
			if err != nil {
				return err
			}
			resp, err := c.send(req)
			if err != nil {
				return fmt.Errorf("export %s: %w", name, err)
			}
			defer resp.Body.Close()
			var out io.Writer = os.Stdout
			var tmp *os.File
			if dst != "-" {
				// Write beside the target and rename at the end: a failed export never
				// leaves a short file under the requested name.
				tmp, err = os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*")
				if err != nil {
					return fmt.Errorf("export %s: %w", name, err)
				}
				defer os.Remove(tmp.Name())
				defer tmp.Close()
				out = tmp
			}
			bar := newBar(-1, "exporting "+name)
			if _, err := io.Copy(io.MultiWriter(out, bar), resp.Body); err != nil {
				bar.Exit()
				return fmt.Errorf("export %s: transfer broken: %w", name, err)
			}
			bar.Finish()
			if tmp != nil {
				if err := tmp.Sync(); err != nil {
					return fmt.Errorf("export %s: %w", name, err)
				}
				if err := tmp.Close(); err != nil {
					return fmt.Errorf("export %s: %w", name, err)
				}
				if err := os.Chmod(tmp.Name(), 0o644); err != nil {
					return fmt.Errorf("export %s: %w", name, err)
				}
				if err := os.Rename(tmp.Name(), dst); err != nil {
					return fmt.Errorf("export %s: %w", name, err)
				}
				fmt.Fprintf(stderr, "Exported %s to %s.\n", sanitize(name), sanitize(dst))
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&format, "format", "", "tar, tar.gz, tar.zst or tar.xz (default: from FILE's name, else tar)")
	return cmd
}

func simple(g *globals, use, short string, nargs int, run func(ctx context.Context, c *client, args []string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(nargs), RunE: withClient(g, run)}
}

func distroPath(name string) string { return "/distros/" + url.PathEscape(name) }

func newTerminateCmd(g *globals) *cobra.Command {
	return simple(g, "terminate NAME", "Stop every process of a distro", 1, func(ctx context.Context, c *client, a []string) error {
		return c.json(ctx, http.MethodPost, distroPath(a[0])+"/terminate", nil, nil)
	})
}

func newShutdownCmd(g *globals) *cobra.Command {
	return simple(g, "shutdown", "Terminate every running distro", 0, func(ctx context.Context, c *client, a []string) error {
		return c.json(ctx, http.MethodPost, "/shutdown", nil, nil)
	})
}

func newUnregisterCmd(g *globals) *cobra.Command {
	return simple(g, "unregister NAME", "Delete a distro and all its files", 1, func(ctx context.Context, c *client, a []string) error {
		if err := c.json(ctx, http.MethodDelete, distroPath(a[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "Unregistered %s.\n", sanitize(a[0]))
		return nil
	})
}

func newSetDefaultCmd(g *globals) *cobra.Command {
	return simple(g, "set-default NAME", "Make a distro the default one", 1, func(ctx context.Context, c *client, a []string) error {
		return c.json(ctx, http.MethodPatch, distroPath(a[0]), map[string]any{"default": true}, nil)
	})
}

func newRenameCmd(g *globals) *cobra.Command {
	return simple(g, "rename NAME NEW", "Rename a distro", 2, func(ctx context.Context, c *client, a []string) error {
		return c.json(ctx, http.MethodPatch, distroPath(a[0]), map[string]any{"name": a[1]}, nil)
	})
}

func newSetUserCmd(g *globals) *cobra.Command {
	return simple(g, "set-user NAME USER", "Set the user commands run as by default", 2, func(ctx context.Context, c *client, a []string) error {
		return c.json(ctx, http.MethodPatch, distroPath(a[0]), map[string]any{"default_user": a[1]}, nil)
	})
}

func newCloneCmd(g *globals) *cobra.Command {
	return simple(g, "clone NAME NEW", "Copy a distro into a new one", 2, func(ctx context.Context, c *client, a []string) error {
		var op operation
		if err := c.json(ctx, http.MethodPost, distroPath(a[0])+"/clone", map[string]string{"name": a[1]}, &op); err != nil {
			return err
		}
		bar := newBar(-1, "cloning "+a[0])
		_, err := c.wait(ctx, op, func(o operation) { bar.Set64(o.Progress.Done) })
		if err != nil {
			bar.Exit()
			return err
		}
		bar.Finish()
		fmt.Fprintf(stderr, "Cloned %s to %s.\n", sanitize(a[0]), sanitize(a[1]))
		return nil
	})
}

func newStatusCmd(g *globals) *cobra.Command {
	return simple(g, "status", "Show the server's status", 0, func(ctx context.Context, c *client, a []string) error {
		var st struct {
			Version string `json:"version"`
			Distros int    `json:"distros"`
			Running int    `json:"running"`
			Default string `json:"default"`
		}
		if err := c.json(ctx, http.MethodGet, "/status", nil, &st); err != nil {
			return err
		}
		def := st.Default
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(stdout, "Server: %s (version %s)\nDefault distro: %s\nDistros: %d, running: %d\n",
			sanitize(c.where()), sanitize(st.Version), sanitize(def), st.Distros, st.Running)
		return nil
	})
}

func newVersionCmd(b Build, g *globals) *cobra.Command {
	return &cobra.Command{Use: "version", Short: "Show the versions of this program and of the server", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(stdout, "subsys version: %s\n", b.Version)
			c, err := g.client()
			if err != nil {
				fmt.Fprintf(stdout, "server: %s\n", sanitize(err.Error()))
				return nil
			}
			var v struct {
				Version string `json:"version"`
			}
			if err := c.json(cmd.Context(), http.MethodGet, "/version", nil, &v); err != nil {
				var ae *apiError
				if errors.As(err, &ae) {
					return err
				}
				var nr *notRunningError
				if errors.As(err, &nr) {
					fmt.Fprintln(stdout, "server: not running")
				} else {
					fmt.Fprintln(stdout, "server: not reachable:", sanitize(err.Error()))
				}
				return nil
			}
			fmt.Fprintf(stdout, "server version: %s\n", sanitize(v.Version))
			return nil
		}}
}
