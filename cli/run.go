package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/gorilla/websocket"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// The stream protocol of /exec/ws (see server/exec.go and openapi.yaml).
const (
	chanStdin  = 0
	chanStdout = 1
	chanStderr = 2
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
		RunE: withClient(g, func(ctx context.Context, c *client, args []string) error {
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
		RunE: withClient(g, func(ctx context.Context, c *client, args []string) error {
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

type control struct {
	Type   string `json:"type"`
	Cols   uint16 `json:"cols,omitempty"`
	Rows   uint16 `json:"rows,omitempty"`
	Name   string `json:"name,omitempty"`
	Code   int    `json:"code,omitempty"`
	Signal string `json:"signal,omitempty"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// runStream runs argv over the streaming exec websocket and returns exitError
// with the remote exit code.
func runStream(ctx context.Context, c *client, o *runOpts, argv []string) error {
	name := o.distro
	if name == "" {
		var list []distro
		if err := c.json(ctx, http.MethodGet, "/distros", nil, &list); err != nil {
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
	conn, err := c.dialWS(ctx, distroPath(name)+"/exec/ws")
	if err != nil {
		return err
	}
	defer conn.Close()
	var wmu sync.Mutex
	send := func(kind int, b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return conn.WriteMessage(kind, b)
	}
	sendCtl := func(v control) error {
		b, _ := json.Marshal(v)
		return send(websocket.TextMessage, b)
	}
	start := map[string]any{"argv": argv, "user": o.user, "cwd": o.cwd, "tty": tty, "login": o.login}
	if tty {
		if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			start["cols"], start["rows"] = w, h
		}
		if os.Getenv("TERM") != "" {
			start["env"] = []string{"TERM=" + os.Getenv("TERM")}
		}
	}
	b, _ := json.Marshal(start)
	if err := send(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("run: send the command: %w", err)
	}
	// Wait for "started" (or an error) before touching the terminal.
	for {
		kind, msg, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("run: connection closed: %w", err)
		}
		if kind != websocket.TextMessage {
			continue
		}
		var ctl control
		json.Unmarshal(msg, &ctl)
		if ctl.Type == "error" && ctl.Error != nil {
			return errors.New(sanitize(ctl.Error.Message))
		}
		if ctl.Type == "started" {
			break
		}
	}
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
						sendCtl(control{Type: "resize", Cols: uint16(w), Rows: uint16(h)})
					}
					continue
				}
				sendCtl(control{Type: "signal", Name: strings.TrimPrefix(unixSignalName(s), "SIG")})
			case <-done:
				return
			}
		}
	}()
	go func() {
		buf := make([]byte, 32<<10)
		buf[0] = chanStdin
		for {
			n, err := os.Stdin.Read(buf[1:])
			if n > 0 {
				if send(websocket.BinaryMessage, buf[:n+1]) != nil {
					return
				}
			}
			if err != nil {
				if err == io.EOF && !tty {
					sendCtl(control{Type: "eof"})
				}
				return
			}
		}
	}()
	for {
		kind, msg, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("run: connection lost: %w", err)
		}
		if kind == websocket.BinaryMessage {
			if len(msg) == 0 {
				continue
			}
			switch msg[0] {
			case chanStdout:
				os.Stdout.Write(msg[1:])
			case chanStderr:
				os.Stderr.Write(msg[1:])
			}
			continue
		}
		var ctl control
		if json.Unmarshal(msg, &ctl) != nil {
			continue
		}
		switch ctl.Type {
		case "exit":
			if ctl.Code != 0 {
				return exitError{code: ctl.Code}
			}
			return nil
		case "error":
			if ctl.Error != nil {
				return errors.New(sanitize(ctl.Error.Message))
			}
		}
	}
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
