package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
)

// newInstallCmd is `subsys install [NAME] [--from SOURCE]`, as `wsl
// --install`: a release built on the server, or a tarball by URL or path.
func newInstallCmd(g *globals) *cobra.Command {
	var req api.InstallRequest
	var size, include string
	var list bool
	cmd := &cobra.Command{
		Use:   "install [NAME] [--from SOURCE]",
		Short: "Install a distro: Debian or Ubuntu built on the server, an OCI image, or a root file system tarball by URL or path",
		Long: "Install a distro, as `wsl --install` does. SOURCE is a release of the catalog (`subsys install --list`;\n" +
			"debian:bookworm by default), built on the server with mmdebstrap from the distribution's own mirror,\n" +
			"an https:// URL of a root file system tarball (--sha256 pins it; plain http:// needs it), or a tarball's\n" +
			"absolute path on the server. Any other SOURCE is an OCI image reference (alpine:3.20,\n" +
			"HOST[:PORT]/org/image:tag, IMAGE@sha256:…), pulled by the server for its platform with the credentials\n" +
			"of its ~/.docker/config.json, over https (plain http only from localhost); the catalog's releases win\n" +
			"for the names they list, and an oci: or docker:// prefix forces an image (oci:debian:bookworm).\n" +
			"NAME defaults to the source's (debian, the image's repository, or the tarball's file name).\n" +
			"Ctrl-C stops the waiting, not the install (cancel it through the API's DELETE /operations/ID).",
		Args: cobra.MaximumNArgs(1),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			if list {
				entries, err := c.Catalog(ctx)
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "SOURCE\tTITLE\tSIZE\tAVAILABLE")
				for _, e := range entries {
					avail := "yes"
					if !e.Available {
						avail = "no: " + e.Why
					}
					size := "~" + formatBytes(e.ApproxBytes)
					if e.ApproxBytes == 0 {
						size = "-"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", sanitize(e.Source), sanitize(e.Title), size, sanitize(avail))
				}
				return w.Flush()
			}
			if len(args) == 1 {
				req.Name = args[0]
			}
			if size != "" {
				n, err := parseSize(size)
				if err != nil {
					return fmt.Errorf("install: %w", err)
				}
				req.SizeBytes = n
			}
			if include != "" {
				req.Include = strings.Split(include, ",")
			}
			if req.Location != "" {
				abs, err := filepath.Abs(req.Location)
				if err != nil {
					return fmt.Errorf("install: location %s: %w", req.Location, err)
				}
				req.Location = abs
			}
			// A path on this machine, relative to where the user is: the
			// server needs it absolute (the CLI and the server share the
			// host over the unix socket).
			if req.Source != "" && !strings.Contains(req.Source, ":") && !filepath.IsAbs(req.Source) {
				abs, err := filepath.Abs(req.Source)
				if err != nil {
					return fmt.Errorf("install: %s: %w", req.Source, err)
				}
				req.Source = abs
			}
			what := req.Source
			if what == "" {
				what = "debian:bookworm"
			}
			progress, bar := operationBar("installing " + what)
			op, err := c.Install(ctx, req, progress)
			if err != nil {
				bar.Exit()
				return err
			}
			bar.Finish()
			fmt.Fprintf(stderr, "Installed %s from %s. Start a shell with: subsys run -d %s\n", sanitize(op.Distro), sanitize(what), sanitize(op.Distro))
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Source, "from", "", "what to install: a catalog release (debian:bookworm), an https:// URL or a server path of a tarball")
	f.IntVar(&req.Version, "version", 0, "1 (shared kernel) or 2 (utility VM); default: the server's default_version")
	f.StringVar(&req.Location, "location", "", "directory for the distro's files (default: the data directory)")
	f.StringVar(&size, "size", "", "a version 2 disk's size, e.g. 64G (default 256G)")
	f.StringVar(&req.Variant, "variant", "", "mmdebstrap variant of a release: minbase (default), buildd, important, standard")
	f.StringVar(&include, "include", "", "more packages for a release, comma-separated (e.g. systemd,openssh-server)")
	f.StringVar(&req.Mirror, "mirror", "", "the release's mirror (default: the distribution's own)")
	f.StringVar(&req.SHA256, "sha256", "", "the tarball's SHA-256, checked before the distro is made")
	f.BoolVar(&list, "list", false, "list the releases the server can install")
	return cmd
}
