// Command subsys-agent is the agent that runs as PID 1 of a version 1 distro. The
// subsys server starts it in new mount, PID, UTS and IPC namespaces and talks to
// it over the unix socket given with -socket; see package agent.
//
// The same binary is /init of version 2's utility VM: run as PID 1 with no
// arguments (the kernel passes none), or with -vm, it is the VM's agent
// (agent.RunVM), which starts each distro's agent as a copy of itself.
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
	"strings"

	"github.com/subsys-dev/subsys/vmm/agent"
)

func main() {
	var cfg agent.InitConfig
	flag.StringVar(&cfg.Socket, "socket", "", "host `path` of the unix socket to serve on")
	flag.StringVar(&cfg.PIDFile, "pidfile", "", "host `path` to write the agent's host pid to")
	flag.StringVar(&cfg.RootFS, "root", "", "host `dir`ectory of the distro's root file system")
	flag.StringVar(&cfg.Hostname, "hostname", "", "the distro's hostname")
	flag.StringVar(&cfg.HostRoot, "host-root", "/", "host `dir`ectory to bind at /mnt/host; empty for none")
	flag.IntVar(&cfg.HostRootFD, "host-root-fd", 0, "inherited `fd` of a detached mount tree to attach at /mnt/host (the utility VM's)")
	flag.BoolVar(&cfg.VMDevices, "vm-devices", false, "give the distro the VM's loop, fuse and tun devices (version 2 only)")
	flag.Func("add-host", "an /etc/hosts entry `name=address` (repeatable)", func(v string) error {
		name, addr, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("want name=address, got %q", v)
		}
		if cfg.Hosts == nil {
			cfg.Hosts = map[string]string{}
		}
		cfg.Hosts[name] = addr
		return nil
	})
	flag.BoolVar(&cfg.Systemd, "systemd", false, "make the distro's systemd its PID 1, with this agent beside it")
	beside := flag.Bool("beside-systemd", false, "serve as the agent beside systemd (started by the distro's PID 1 before it becomes systemd)")
	listenFD := flag.Int("listen-fd", 0, "with -beside-systemd: the inherited `fd` of the listening socket")
	vm := flag.Bool("vm", false, "run as the utility VM's /init (the default as PID 1 with no arguments)")
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
	if *vm || (os.Getpid() == 1 && len(os.Args) == 1) {
		// As /init, returning would panic the kernel; RunVM returns only
		// when it cannot set up, and the VM then ends (panic=-1), which is
		// what the host should see.
		err := agent.RunVM(context.Background(), agent.VMConfig{Logger: cfg.Logger})
		cfg.Logger.Error("subsys-agent: vm agent failed", "err", err)
		os.Exit(1)
	}
	if *beside {
		if err := agent.RunBesideSystemd(context.Background(), agent.BesideConfig{ListenFD: *listenFD, Logger: cfg.Logger}); err != nil {
			cfg.Logger.Error("agent beside systemd failed", "err", err)
			os.Exit(1)
		}
		return
	}
	if err := agent.RunInit(context.Background(), cfg); err != nil {
		cfg.Logger.Error("agent failed", "err", err)
		os.Exit(1)
	}
}
