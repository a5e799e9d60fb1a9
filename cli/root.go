// Package cli is the subsys command line: `serve` runs the server, every other verb
// is a thin user of package client over its REST API, with the verbs a WSL user
// knows (list, import, export, run, terminate, shutdown, unregister, set-default,
// set-version, …), printing what the server supplies through sanitize. main calls Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/client"
)

// Build carries what main knows about the build.
type Build struct {
	// Version of this build, shown by `subsys version`.
	Version string
	// Agent returns the static subsys-agent program, embedded at build time;
	// nil (or a nil func) when the build did not include it (then SUBSYS_AGENT
	// must name the file). A func, called by serve alone, because reading the
	// program copies megabytes that no client verb needs at its start.
	Agent func() []byte
	// VMInitrd returns the Windows utility VM's initrd that `make
	// cross-windows` embeds (`subsys vm-initrd`: the agent and the build
	// host's e2fsprogs), nil when the build has none; only serve on Windows
	// calls it.
	VMInitrd func() []byte
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
	// Errors quote the server, and through it distros: sanitized like everything
	// else the CLI prints (sanitize leaves clean text as it is).
	fmt.Fprintln(os.Stderr, "subsys:", sanitize(err.Error()))
	return 1
}

// globals are the flags every verb shares.
type globals struct {
	// data is the data directory, absolute once the command line is parsed.
	data string
	// dataSet is whether --data was given.
	dataSet bool
	// url is --url: the server over TCP instead of the socket.
	url string
}

// Output of the verbs' messages and tables (not of data they pass through, as
// from `run` or `export -`); tests swap them.
var (
	stdout io.Writer = os.Stdout
	stderr io.Writer = os.Stderr
)

func newRoot(b Build) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "subsys",
		Short:         "Run and manage Linux distributions, like WSL, from a browser, a REST API or this command line",
		SilenceUsage:  true,
		SilenceErrors: true,
		// The data directory is absolute from here on, for every verb: serve
		// records paths under it, and a client's messages name its socket.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			abs, err := filepath.Abs(g.data)
			if err != nil {
				return fmt.Errorf("--data %s: %w", g.data, err)
			}
			g.data, g.dataSet = abs, cmd.Flags().Changed("data")
			return nil
		},
	}
	// A verb with a PersistentPreRunE of its own runs it after the root's, not
	// instead of it.
	cobra.EnableTraverseRunHooks = true
	root.PersistentFlags().StringVar(&g.data, "data", DefaultDataDir(), "data directory (holds the server's socket "+SocketName+" and its token)")
	root.PersistentFlags().StringVar(&g.url, "url", "", "reach the server at this URL with a token (default: $SUBSYS_URL; if neither is set, its unix socket in the data directory)")
	root.AddCommand(
		newServeCmd(b, g),
		newListCmd(g), newImportCmd(g), newExportCmd(g), newRunCmd(g), newShellCmd(g),
		newTerminateCmd(g), newShutdownCmd(g), newUnregisterCmd(g), newSetDefaultCmd(g),
		newCloneCmd(g), newRenameCmd(g), newSetUserCmd(g), newSetSystemdCmd(g), newStatusCmd(g), newVersionCmd(b, g), newVMInitrdCmd(b),
		newPortsCmd(g), newExposeCmd(g), newPortProxyCmd(g), newDashboardCmd(g), newTokenCmd(g),
		newSetVersionCmd(g), newVMCmd(g), newResizeCmd(g), newCompactCmd(g), newMoveCmd(g), newInstallCmd(g), newSnapshotCmd(g), newLimitsCmd(g),
		newCpCmd(g), newFilesCmd(g),
	)
	return root
}

// DefaultDataDir is /var/lib/subsys for root, else $XDG_DATA_HOME/subsys
// (~/.local/share/subsys): the server's and the client's default alike.
func DefaultDataDir() string { return client.DefaultDataDir() }
