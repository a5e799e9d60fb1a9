package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/subsys-dev/subsys/server"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/ns"
	"github.com/subsys-dev/subsys/vmm/qemu"
)

// newPlatform is Linux's wiring: version 1 in namespaces on the host's
// kernel (vmm/ns), version 2 in one QEMU utility VM (vmm/qemu) whose /init
// is the same static agent.
func newPlatform(ctx context.Context, pc platformConfig) (*platform, error) {
	v1 := ns.New(ns.Config{AgentPath: pc.agentPath, RunDir: pc.runDir, Cgroup: "subsys", Logger: pc.log})
	v2, err := qemu.NewBackend(qemu.BackendConfig{
		Dir:      filepath.Join(pc.dataDir, "vm"),
		RunDir:   filepath.Join(pc.runDir, "vm"),
		Agent:    func() ([]byte, error) { return os.ReadFile(pc.agentPath) },
		Settings: func(ctx context.Context) (vmm.Settings, error) { return vmm.ReadSettings(ctx, pc.db) },
		Logger:   pc.log,
		// passt and virtiofsd where installed; the environment can name
		// others or turn them off ("off": slirp, 9p).
		Passt:             programFromEnv("SUBSYS_PASST", qemu.LookupPasst),
		Virtiofsd:         programFromEnv("SUBSYS_VIRTIOFSD", qemu.LookupVirtiofsd),
		VirtiofsdMaxFiles: intFromEnv("SUBSYS_VIRTIOFSD_MAX_FILES", pc.log),
		NoMemoryHotplug:   os.Getenv("SUBSYS_VIRTIO_MEM") == "off",
		ExtraQEMUArgs:     strings.Fields(os.Getenv("SUBSYS_QEMU_ARGS")),
	})
	if err != nil {
		return nil, err
	}
	return &platform{
		backends:     map[int]vmm.Backend{1: v1, 2: v2},
		guest:        v2,
		distroCgroup: v1.DistroCgroup,
		close:        func() { v2.Close() },
	}, nil
}

// programFromEnv is the program the environment variable names: its value, ""
// for "off", or lookup's answer when it is unset.
func programFromEnv(name string, lookup func() string) string {
	switch v := os.Getenv(name); v {
	case "":
		return lookup()
	case "off":
		return ""
	default:
		return v
	}
}

// intFromEnv is the environment variable's value as a number, 0 when unset
// or not a number (which it logs).
func intFromEnv(name string, log *slog.Logger) int {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		log.Warn("ignoring an environment variable that is not a count", "name", name, "value", v)
		return 0
	}
	return n
}

// prepareDataDir creates the data directory (0700), open to the subsys
// group's search where that group exists.
func prepareDataDir(dataDir string, log *slog.Logger) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	openDataDirToGroup(dataDir, log)
	return nil
}

// openDataDirToGroup lets members of the subsys group reach the socket: the
// data directory becomes 0710 with that group (search, no listing), so they
// can open subsys.sock by name and nothing else — the token stays 0600 and
// every other entry 0700. Without the group it stays 0700.
func openDataDirToGroup(dataDir string, log *slog.Logger) {
	gid, ok := server.PeerGroupID()
	if !ok {
		return
	}
	if err := os.Chown(dataDir, -1, gid); err != nil {
		log.Warn("data directory stays root-only", "group", server.PeerGroup, "err", err)
		return
	}
	if err := os.Chmod(dataDir, 0o710); err != nil {
		log.Warn("data directory stays root-only", "group", server.PeerGroup, "err", err)
	}
}

// listenSocket opens the CLI's unix socket: mode 0660 and group subsys where
// that group exists (its members may use subsys, as with incus-admin), else
// 0600. The server authorizes each peer by SO_PEERCRED too, so the mode is a
// second lock, not the only one.
func listenSocket(path string, log *slog.Logger) (net.Listener, error) {
	// A socket left by a server that died; a live server would still hold it,
	// and then our TCP listen above would usually have failed first.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: another subsys server is serving this data directory", path)
		}
		os.Remove(path)
	}
	old := unixUmask(0o177)
	ln, err := net.Listen("unix", path)
	unixUmask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if gid, ok := server.PeerGroupID(); ok {
		if err := os.Chown(path, -1, gid); err == nil {
			os.Chmod(path, 0o660)
		} else {
			log.Warn("socket stays root-only", "group", server.PeerGroup, "err", err)
		}
	}
	return ln, nil
}
