package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
)

// withClient runs a verb with a client of the server; what it returns is shown
// sanitized.
func withClient(g *globals, f func(ctx context.Context, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := g.client()
		if err != nil {
			return shown(err)
		}
		return shown(f(cmd.Context(), c, args))
	}
}

func newListCmd(g *globals) *cobra.Command {
	var verbose, running bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls", "l"},
		Short:   "List distros (like wsl -l -v)",
		Args:    cobra.NoArgs,
		RunE: withClient(g, func(ctx context.Context, c *client.Client, _ []string) error {
			list, err := c.List(ctx)
			if err != nil {
				return err
			}
			if running {
				kept := list[:0]
				for _, d := range list {
					if d.State == api.StateRunning {
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

// operationBar returns a progress callback that drives a bar titled what,
// and the bar, for commands that wait on an operation.
func operationBar(what string) (func(api.Operation), *progressbar.ProgressBar) {
	bar := newBar(-1, what)
	var message string
	return func(o api.Operation) {
		if o.Message != message {
			// What the server says it is doing ("layer 2 of 5"), as
			// untrusted as any of its words.
			message = o.Message
			bar.Describe(what + " (" + sanitize(message) + ")")
		}
		if o.Progress.Total > 0 {
			bar.ChangeMax64(o.Progress.Total)
		}
		bar.Set64(o.Progress.Done)
	}, bar
}

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
	var location, size string
	var version int
	var vhd bool
	cmd := &cobra.Command{
		Use:   "import NAME [LOCATION] FILE|-",
		Short: "Import a root file system tarball (tar, tar.gz, tar.xz, tar.zst), or a raw ext4 image, as a new distro",
		Long: "Import a root file system tarball (tar, tar.gz, tar.bz2, tar.xz, tar.zst; `-` reads stdin) as a new distro,\n" +
			"as `wsl --import NAME LOCATION FILE` does; LOCATION (or --location) is the directory for its files.\n" +
			"A FILE ending in .img, or --vhd, is a raw ext4 disk image (what `export --format img` writes): a version 2 distro.\n" +
			"--size caps a version 2 distro's disk (256G, 512M; binary units).",
		Args: cobra.RangeArgs(2, 3),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			name, src := args[0], args[len(args)-1]
			if len(args) == 3 {
				if location != "" {
					return fmt.Errorf("import %s: give the location as an argument or as --location, not both", name)
				}
				location = args[1]
			}
			raw := vhd || strings.HasSuffix(strings.ToLower(src), ".img")
			if raw && version == 1 {
				return fmt.Errorf("import %s: a disk image is a version 2 distro; leave out --version 1", name)
			}
			opt := client.ImportOptions{Version: version, RawImage: raw}
			if size != "" {
				n, err := parseSize(size)
				if err != nil {
					return fmt.Errorf("import %s: --size: %w", name, err)
				}
				opt.DiskSize = n
			}
			if location != "" {
				abs, err := filepath.Abs(location)
				if err != nil {
					return fmt.Errorf("import %s: location %s: %w", name, location, err)
				}
				opt.Location = abs
			}
			var in io.Reader = os.Stdin
			opt.Size = -1
			if src != "-" {
				f, err := os.Open(src)
				if err != nil {
					return fmt.Errorf("import %s: %w", name, err)
				}
				defer f.Close()
				if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
					opt.Size = st.Size()
				}
				in = f
			}
			bar := newBar(opt.Size, "importing "+name)
			opt.OnUpload = func(n int64) { bar.Set64(n) }
			if _, err := c.Import(ctx, name, in, opt); err != nil {
				bar.Exit()
				return err
			}
			bar.Finish()
			fmt.Fprintf(stderr, "Imported %s.\n", sanitize(name))
			return nil
		}),
	}
	cmd.Flags().StringVar(&location, "location", "", "directory for the distro's files (default: the data directory)")
	cmd.Flags().IntVar(&version, "version", 0, "distro version: 1 (shared kernel) or 2 (utility VM) (default: the server's default_version)")
	cmd.Flags().BoolVar(&vhd, "vhd", false, "FILE is a raw ext4 disk image, not a tarball (implied by a name ending in .img); version 2")
	cmd.Flags().StringVar(&size, "size", "", "largest size of a version 2 distro's disk, e.g. 256G or 512M (default: the server's)")
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
	case strings.HasSuffix(name, ".img"):
		return "img"
	}
	return "tar"
}

func newExportCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "export NAME FILE|-",
		Short: "Export a distro's root file system as a tarball, or a version 2 distro's disk image",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			name, dst := args[0], args[1]
			if format == "" {
				format = formatFromName(dst)
			}
			archive, err := c.Export(ctx, name, format)
			if err != nil {
				return err
			}
			defer archive.Close()
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
			if _, err := io.Copy(io.MultiWriter(out, bar), archive); err != nil {
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
	cmd.Flags().StringVar(&format, "format", "", "tar, tar.gz, tar.zst, tar.xz, or img (a version 2 distro's raw ext4 image) (default: from FILE's name, else tar)")
	return cmd
}

func simple(g *globals, use, short string, nargs int, run func(ctx context.Context, c *client.Client, args []string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(nargs), RunE: withClient(g, run)}
}

func newTerminateCmd(g *globals) *cobra.Command {
	return simple(g, "terminate NAME", "Stop every process of a distro", 1, func(ctx context.Context, c *client.Client, a []string) error {
		_, err := c.Terminate(ctx, a[0])
		return err
	})
}

func newShutdownCmd(g *globals) *cobra.Command {
	return simple(g, "shutdown", "Terminate every running distro", 0, func(ctx context.Context, c *client.Client, a []string) error {
		return c.Shutdown(ctx)
	})
}

func newUnregisterCmd(g *globals) *cobra.Command {
	return simple(g, "unregister NAME", "Delete a distro and all its files", 1, func(ctx context.Context, c *client.Client, a []string) error {
		if err := c.Unregister(ctx, a[0]); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "Unregistered %s.\n", sanitize(a[0]))
		return nil
	})
}

func newSetDefaultCmd(g *globals) *cobra.Command {
	return simple(g, "set-default NAME", "Make a distro the default one", 1, func(ctx context.Context, c *client.Client, a []string) error {
		_, err := c.SetDefault(ctx, a[0])
		return err
	})
}

func newRenameCmd(g *globals) *cobra.Command {
	return simple(g, "rename NAME NEW", "Rename a distro", 2, func(ctx context.Context, c *client.Client, a []string) error {
		_, err := c.Rename(ctx, a[0], a[1])
		return err
	})
}

func newSetUserCmd(g *globals) *cobra.Command {
	return simple(g, "set-user NAME USER", "Set the user commands run as by default", 2, func(ctx context.Context, c *client.Client, a []string) error {
		_, err := c.SetDefaultUser(ctx, a[0], a[1])
		return err
	})
}

func newSetSystemdCmd(g *globals) *cobra.Command {
	cmd := simple(g, "set-systemd NAME on|off", "Boot a distro with its own systemd as PID 1, or not (from its next start)", 2, func(ctx context.Context, c *client.Client, a []string) error {
		var on bool
		switch strings.ToLower(a[1]) {
		case "on", "true", "yes", "1":
			on = true
		case "off", "false", "no", "0":
		default:
			return fmt.Errorf("set-systemd %s: say on or off, not %q", a[0], a[1])
		}
		d, err := c.SetSystemd(ctx, a[0], on)
		if err != nil {
			return err
		}
		if d.State == api.StateRunning {
			fmt.Fprintf(os.Stderr, "%s runs now; the change applies from its next start (subsys terminate %s)\n", sanitize(d.Name), sanitize(d.Name))
		}
		return nil
	})
	cmd.Example = "  subsys set-systemd debian on\n  subsys terminate debian   # it boots systemd at its next start"
	return cmd
}

func newCloneCmd(g *globals) *cobra.Command {
	return simple(g, "clone NAME NEW", "Copy a distro into a new one", 2, func(ctx context.Context, c *client.Client, a []string) error {
		bar := newBar(-1, "cloning "+a[0])
		_, err := c.Clone(ctx, a[0], a[1], func(o api.Operation) { bar.Set64(o.Progress.Done) })
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
	return simple(g, "status", "Show the server's status", 0, func(ctx context.Context, c *client.Client, a []string) error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		def := st.Default
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(stdout, "Server: %s (version %s)\nDefault distro: %s\nDistros: %d, running: %d\n",
			sanitize(c.Where()), sanitize(st.Version), sanitize(def), st.Distros, st.Running)
		// The VM's part is extra: a server that cannot say (an older one, with
		// no /vm) still gets its status shown.
		vm, err := c.VM(ctx)
		if err != nil {
			fmt.Fprintf(stdout, "VM: unknown (%s)\n", sanitize(err.Error()))
			return nil
		}
		printVM(stdout, vm, time.Now())
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
			v, err := c.Version(cmd.Context())
			if err != nil {
				var ae *api.Error
				if errors.As(err, &ae) {
					return shown(err)
				}
				var nr *client.NotRunningError
				if errors.As(err, &nr) {
					fmt.Fprintln(stdout, "server: not running")
				} else {
					fmt.Fprintln(stdout, "server: not reachable:", sanitize(err.Error()))
				}
				return nil
			}
			fmt.Fprintf(stdout, "server version: %s\n", sanitize(v))
			return nil
		}}
}
