package cli

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/client"
	"github.com/subsys-dev/subsys/server"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the API token browsers and remote scripts log in with",
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the API token; every browser session ends",
		Long: `Replace the API token in the data directory (mode 0600) with a new random one.
The old token stops working at once and every browser session made with it ends;
` + "`subsys dashboard`" + ` prints a login URL with the new one. When the server is not
running, the token file is rewritten here, and the server uses it when it starts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return shown(err)
			}
			r, err := c.RotateToken(cmd.Context())
			var nr *client.NotRunningError
			switch {
			case errors.As(err, &nr):
				// Nothing listens on the socket: the token is the file's alone.
				path, err := rotateTokenFile(filepath.Dir(nr.Socket))
				if err != nil {
					return shown(fmt.Errorf("rotate the token: %w", err))
				}
				fmt.Fprintf(stdout, "The subsys server is not running: wrote a new token to %s; the server uses it when it starts.\n", sanitize(path))
			case err != nil:
				return shown(fmt.Errorf("rotate the token: %w", err))
			default:
				fmt.Fprintf(stdout, "Replaced the token: the new one is in %s.\n", sanitize(r.TokenFile))
			}
			fmt.Fprintln(stdout, "The old token no longer works, and every browser session has ended. To log in again: subsys dashboard")
			if c.Socket() == "" {
				fmt.Fprintln(stdout, "This client used the old token (SUBSYS_TOKEN or the token file): give it the new one.")
			}
			return nil
		},
	}
	cmd.AddCommand(rotate)
	return cmd
}

// rotateTokenFile replaces dir/token with a new random token (32 bytes as 64
// hex characters and a newline, mode 0600), atomically: a server starting at
// the same time reads the old token or the new one, never half of one.
func rotateTokenFile(dir string) (string, error) {
	path := filepath.Join(dir, "token")
	if err := server.WriteTokenFile(path, server.NewToken()); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return path, nil
}
