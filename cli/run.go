package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
)

type runOpts struct {
	distro, user, cwd string
	login             bool
}

func newRunCmd(g *globals) *cobra.Command {
	o := &runOpts{}
	cmd := &cobra.Command{
		Use:   "run [-d NAME] [-u USER] [--cd DIR] [--] [CMD ARGS…]",
		Short: "Run a command in a distro (the default one without -d); without a command, open a login shell",
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			o.login = len(args) == 0
			return runStream(ctx, c, o, args)
		}),
	}
	cmd.Flags().SetInterspersed(false) // everything after the command is the command's
	cmd.Flags().StringVarP(&o.distro, "distribution", "d", "", "distro to run in (default: the default distro)")
	cmd.Flags().StringVarP(&o.user, "user", "u", "", "user to run as (default: the distro's default user)")
	cmd.Flags().StringVar(&o.cwd, "cd", "", "working directory inside the distro")
	return cmd
}

func newShellCmd(g *globals) *cobra.Command {
	o := &runOpts{login: true}
	cmd := &cobra.Command{
		Use:   "shell [NAME]",
		Short: "Open the user's login shell in a distro",
		Args:  cobra.MaximumNArgs(1),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			if len(args) == 1 {
				o.distro = args[0]
			}
			return runStream(ctx, c, o, nil)
		}),
	}
	cmd.Flags().StringVarP(&o.user, "user", "u", "", "user to run as")
	cmd.Flags().StringVar(&o.cwd, "cd", "", "working directory inside the distro")
	return cmd
}

// runStream runs argv over the streaming exec websocket and returns exitError
// with the remote exit code.
func runStream(ctx context.Context, c *client.Client, o *runOpts, argv []string) error {
	name := o.distro
	if name == "" {
		list, err := c.List(ctx)
		if err != nil {
			return err
		}
		for _, d := range list {
			if d.Default {
				name = d.Name
			}
		}
		if name == "" {
			return fmt.Errorf("there is no default distro: import one, or name one with -d")
		}
	}
	tty := term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))
	start := api.ExecStart{Argv: argv, User: o.user, Cwd: o.cwd, TTY: tty, Login: o.login}
	if tty {
		if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			start.Cols, start.Rows = uint16(w), uint16(h)
		}
		if os.Getenv("TERM") != "" {
			start.Env = []string{"TERM=" + os.Getenv("TERM")}
		}
	}
	p, err := c.ExecStream(ctx, name, start)
	if err != nil {
		return runError(err)
	}
	defer p.Close()
	// The command runs: only now is the terminal made raw.
	if tty {
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err == nil {
			defer term.Restore(int(os.Stdin.Fd()), old)
		}
	}
	sigs := make(chan os.Signal, 4)
	if tty {
		if resizeSignal != nil {
			signal.Notify(sigs, resizeSignal)
		}
	} else {
		signal.Notify(sigs, forwardedSignals...)
	}
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == resizeSignal {
					if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
						p.Resize(uint16(w), uint16(h))
					}
					continue
				}
				p.Signal(strings.TrimPrefix(unixSignalName(s), "SIG"))
			case <-done:
				return
			}
		}
	}()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := os.Stdin.Read(buf)
			if n > 0 {
				if _, err := p.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				if err == io.EOF && !tty {
					p.CloseStdin()
				}
				return
			}
		}
	}()
	st, err := p.Wait(os.Stdout, os.Stderr)
	if err != nil {
		return runError(err)
	}
	if st.Code != 0 {
		return exitError{code: st.Code}
	}
	return nil
}

// runError says which verb lost its connection; an error the server sent
// (the command could not start, the distro is unknown) speaks for itself.
func runError(err error) error {
	var ae *api.Error
	var nr *client.NotRunningError
	var ue *client.UnreachableError
	if errors.As(err, &ae) || errors.As(err, &nr) || errors.As(err, &ue) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("run: %w", err)
}

func unixSignalName(s os.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGTERM:
		return "TERM"
	}
	return signalNameOther(s)
}
