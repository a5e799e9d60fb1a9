// Command subsys-agent is the agent that runs as PID 1 of a version 1 distro. The
// subsys server starts it in new mount, PID, UTS and IPC namespaces and talks to
// it over the unix socket given with -socket; see package agent.
//
// It must be built static, with CGO_ENABLED=0, so that no privileged process ever
// loads a library out of a distro:
//
//	CGO_ENABLED=0 go build -o subsys-agent ./vmm/agent/cmd/subsys-agent
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/subsys-dev/subsys/vmm/agent"
)

func main() {
	var cfg agent.InitConfig
	flag.StringVar(&cfg.Socket, "socket", "", "host `path` of the unix socket to serve on")
	flag.StringVar(&cfg.PIDFile, "pidfile", "", "host `path` to write the agent's host pid to")
	flag.StringVar(&cfg.RootFS, "root", "", "host `dir`ectory of the distro's root file system")
	flag.StringVar(&cfg.Hostname, "hostname", "", "the distro's hostname")
	debug := flag.Bool("debug", false, "log at debug level")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println(agent.Version)
		return
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := agent.RunInit(context.Background(), cfg); err != nil {
		cfg.Logger.Error("agent failed", "err", err)
		os.Exit(1)
	}
}
