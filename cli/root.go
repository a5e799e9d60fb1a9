// Package cli is the subsys command line: `serve` runs the server, every other verb
// is a client of its REST API, with the verbs a WSL user knows (list, import,
// export, run, terminate, shutdown, unregister, set-default, …). main calls Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// Build carries what main knows about the build.
type Build struct {
	// Version of this build, shown by `subsys version`.
	Version string
	// Agent is the static subsys-agent program, embedded at build time; empty when
	// the build did not include it (then SUBSYS_AGENT must name the file).
	Agent []byte
}

// exitError carries a process exit code through cobra (from `run`).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs the command line and returns the process exit code.
func Main(b Build) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(b)
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "subsys:", err)
	return 1
}

// globals are the flags every client verb shares.
type globals struct {
	data  string
	url   string
	token string
}

func newRoot(b Build) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "subsys",
		Short:         "Run and manage Linux distributions, like WSL, from a browser, a REST API or this command line",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.data, "data", DefaultDataDir(), "data directory (holds the token and the server's address)")
	root.PersistentFlags().StringVar(&g.url, "url", "", "server URL (default: $SUBSYS_URL, else the one the server recorded in the data directory)")
	root.AddCommand(
		newServeCmd(b, g),
		newListCmd(g), newImportCmd(g), newExportCmd(g), newRunCmd(g), newShellCmd(g),
		newTerminateCmd(g), newShutdownCmd(g), newUnregisterCmd(g), newSetDefaultCmd(g),
		newCloneCmd(g), newRenameCmd(g), newSetUserCmd(g), newStatusCmd(g), newVersionCmd(b, g),
		newPortsCmd(g), newExposeCmd(g), newPortProxyCmd(g),
	)
	return root
}

// DefaultDataDir is /var/lib/subsys for root, else $XDG_DATA_HOME/subsys
// (~/.local/share/subsys).
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/subsys"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "subsys")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "subsys")
}
