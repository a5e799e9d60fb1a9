// Command subsys runs Linux distributions beside the host, the way WSL does on
// Windows: `subsys serve` runs the server (REST API, dashboard, distros) and every
// other verb is a client of it. See README.md.
package main

import (
	"embed"
	"os"

	"github.com/subsys-dev/subsys/cli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// embedded holds the static subsys-agent program that `make build` puts in
// embedded/; a plain `go build` without it still works but `serve` then needs
// SUBSYS_AGENT.
//
//go:embed all:embedded
var embedded embed.FS

func main() {
	os.Exit(cli.Main(cli.Build{Version: version, Agent: agent, VMInitrd: vmInitrd}))
}

// agent returns the embedded agent program, nil when the build has none. It
// is read only when serve asks: ReadFile copies the file's megabytes out of
// the binary, and doing that at every start made each client verb several
// times slower (page faults and a garbage collection for bytes it never uses).
func agent() []byte {
	b, err := embedded.ReadFile("embedded/subsys-agent")
	if err != nil {
		return nil
	}
	return b
}

// vmInitrd returns the Windows utility VM's initrd that `make cross-windows`
// puts in embedded/ (the agent and the build host's e2fsprogs), nil when the
// build has none; serve on Windows reads it once.
func vmInitrd() []byte {
	b, err := embedded.ReadFile("embedded/windows-initrd.img")
	if err != nil {
		return nil
	}
	return b
}
