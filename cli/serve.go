package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/client"
	"github.com/subsys-dev/subsys/netmgr"
	"github.com/subsys-dev/subsys/server"
	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// platformConfig is what serve hands the host system's wiring (newPlatform
// in serve_linux.go, serve_windows.go).
type platformConfig struct {
	dataDir, runDir string
	// agentPath is the agent program installed in the data directory.
	agentPath string
	// vmInitrd is the embedded Windows VM initrd, or nil (see Build.VMInitrd).
	vmInitrd func() []byte
	db       *store.DB
	log      *slog.Logger
}

// platform is what the host system contributes to serve: its distro
// backends by version and what the network manager needs of them.
type platform struct {
	backends map[int]vmm.Backend
	// guest reaches the version 2 distros' sockets through the utility
	// VM's agent; nil without a version 2 backend.
	guest guestDialer
	// distroCgroup is the version 1 distros' cgroup for the LAN firewall;
	// nil without a version 1 backend.
	distroCgroup func() (id uint64, level uint32, ok bool)
	// close stops the backends that need it, after the Manager.
	close func()
}

// v1Cgroup is distroCgroup's answer, or none without version 1.
func (p *platform) v1Cgroup() (uint64, uint32, bool) {
	if p.distroCgroup == nil {
		return 0, 0, false
	}
	return p.distroCgroup()
}

// guestDialer is a version 2 backend's network as the port manager uses it
// (*qemu.Backend, *hcs.Backend): a distro's listening sockets, and
// connections to an address inside the VM.
type guestDialer interface {
	Listeners(ctx context.Context, id string) ([]agent.Listener, error)
	Dial(ctx context.Context, network, address string) (net.Conn, error)
}

type serveOpts struct {
	listen       string
	allowedHosts []string
	tlsCert      string
	tlsKey       string
	logLevel     string
	sessionIdle  time.Duration
	profiling    bool
}

func newServeCmd(b Build, g *globals) *cobra.Command {
	o := &serveOpts{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the subsys server (REST API, dashboard, distros)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), b, g.data, o)
		},
	}
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:7070", "address to listen on; a non-loopback address needs --tls-cert and --tls-key")
	cmd.Flags().StringSliceVar(&o.allowedHosts, "allow-host", nil, "extra Host names to accept (besides localhost, 127.0.0.1, [::1])")
	cmd.Flags().StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file")
	cmd.Flags().StringVar(&o.tlsKey, "tls-key", "", "TLS key file")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().DurationVar(&o.sessionIdle, "session-idle", 12*time.Hour, "end a browser session unused this long")
	cmd.Flags().BoolVar(&o.profiling, "pprof", false, "serve Go's profiles at /api/v1/debug/pprof/ (needs the token or the socket)")
	cmd.Flags().MarkHidden("pprof")
	return cmd
}

// loadToken reads the API token from the data directory, creating it (mode 0600)
// on first start.
func loadToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "token")
	b, err := os.ReadFile(path)
	if err == nil && len(bytes.TrimSpace(b)) >= 32 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", err
		}
		return string(bytes.TrimSpace(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read token: %w", err)
	}
	tok := server.NewToken()
	if err := server.WriteTokenFile(path, tok); err != nil {
		return "", err
	}
	return tok, nil
}

// installAgent writes the embedded agent into the data directory (named by its
// hash, so a running distro's agent binary is never overwritten) and returns its path.
func installAgent(b Build, dataDir string) (string, error) {
	if p := os.Getenv("SUBSYS_AGENT"); p != "" {
		return p, nil
	}
	var program []byte
	if b.Agent != nil {
		program = b.Agent()
	}
	if len(program) == 0 {
		return "", errors.New("this build has no embedded agent: build with `make build`, or set SUBSYS_AGENT to a subsys-agent binary")
	}
	sum := sha256.Sum256(program)
	// One folder per build keeps the program's own name, which is what `ps` in a
	// distro shows for PID 1.
	dir := filepath.Join(dataDir, "bin", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "subsys-agent")
	if existing, err := os.ReadFile(path); err == nil && bytes.Equal(existing, program) {
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, ".agent-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(program); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func serve(ctx context.Context, b Build, dataDir string, o *serveOpts) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	tls := o.tlsCert != "" || o.tlsKey != ""
	if !isLoopback(o.listen) && !tls {
		return fmt.Errorf("--listen %s is not a loopback address: that needs --tls-cert and --tls-key", o.listen)
	}
	if err := prepareDataDir(dataDir, log); err != nil {
		return err
	}
	token, err := loadToken(dataDir)
	if err != nil {
		return err
	}
	agentPath, err := installAgent(b, dataDir)
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, filepath.Join(dataDir, "subsys.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	runDir := filepath.Join(dataDir, "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return err
	}
	plat, err := newPlatform(ctx, platformConfig{dataDir: dataDir, runDir: runDir, agentPath: agentPath, vmInitrd: b.VMInitrd, db: db, log: log})
	if err != nil {
		return err
	}
	defer plat.close()
	mgr, err := vmm.New(ctx, vmm.Config{
		Store:    db,
		DataDir:  dataDir,
		Backends: plat.backends,
		Logger:   log,
	})
	if err != nil {
		return err
	}
	defer mgr.Close()
	netCtx, stopNet := context.WithCancel(ctx)
	ports, portProxy, netDone := startNetwork(netCtx, db, mgr, plat, log)
	defer func() { stopNet(); netDone() }()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host := ln.Addr().String()
	if strings.HasPrefix(host, "127.0.0.1:") {
		// localhost, not 127.0.0.1: browsers treat http://localhost as a
		// secure context, and it is the name the Host check expects first.
		host = "localhost:" + strings.TrimPrefix(host, "127.0.0.1:")
	}
	base := scheme + "://" + host
	sock, err := listenSocket(filepath.Join(dataDir, SocketName), log)
	if err != nil {
		ln.Close()
		return err
	}
	srv := server.New(server.Config{Manager: mgr, Ports: ports, PortProxy: portProxy, Token: token,
		TokenFile: filepath.Join(dataDir, "token"), Sessions: db, SessionIdle: o.sessionIdle, PublicURL: base,
		Profiling: o.profiling, AllowedHosts: o.allowedHosts, Version: b.Version, Logger: log})
	log.Info("subsys serving", "url", base, "socket", sock.Addr().String(), "data", dataDir)
	// The login URL carries the token: it goes to a terminal only, never to a
	// log or the journal. `subsys dashboard` prints a fresh one at any time.
	if term.IsTerminal(int(os.Stderr.Fd())) {
		fmt.Fprintf(os.Stderr, "\nsubsys is running. Open the dashboard:\n\n    %s/#token=%s\n\n", base, token)
	} else {
		log.Info("run `subsys dashboard` for the browser login URL")
	}
	if tls {
		ln = tlsListener(ln, o.tlsCert, o.tlsKey)
	}
	return srv.Serve(ctx, ln, sock)
}

// SocketName is the CLI's unix socket in the data directory: the name the
// client package looks for.
const SocketName = client.SocketName

// startNetwork starts the network manager: the port manager that exposes distro
// ports (with the nftables firewall when this process may use it) and the
// portproxy rules. Both run until ctx ends; wait returns when they have stopped.
func startNetwork(ctx context.Context, db *store.DB, mgr *vmm.Manager, plat *platform, log *slog.Logger) (*netmgr.PortManager, *netmgr.PortProxy, func()) {
	fw, err := netmgr.OpenFirewall(ctx, log)
	if err != nil {
		if plat.distroCgroup != nil {
			log.Warn("no firewall: version 1 ports bound to every address reach the LAN whatever their setting", "err", err)
		} else {
			// No version 1 (Windows): version 2 ports reach the LAN only
			// through the port manager's own listeners, which need none.
			log.Info("no firewall: version 2 ports reach the LAN only when their setting says so", "err", err)
		}
		fw = nil
	} else if id, level, ok := plat.v1Cgroup(); ok {
		// LAN connections to a distro's port no scan has seen yet are dropped
		// too — from now, not from the first scan: opening the firewall
		// emptied its table.
		fw.SetDistroCgroup(id, level)
		if err := fw.Apply(ctx, nil); err != nil {
			log.Warn("firewall: distro cgroup rule not installed", "err", err)
		}
	}
	dbs := netmgr.DBStore{DB: db}
	ports := netmgr.NewPortManager(netmgr.PortsConfig{
		Store:    dbs,
		Firewall: fw,
		Logger:   log.With("component", "ports"),
		Distros: func(ctx context.Context) ([]netmgr.Distro, error) {
			running, err := mgr.RunningDistros(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]netmgr.Distro, len(running))
			for i, d := range running {
				out[i] = netmgr.Distro{ID: d.ID, Name: d.Name, PIDNamespace: d.PIDNamespace, Cgroup: d.Cgroup}
				if d.Version == 2 && plat.guest != nil {
					out[i].Guest = guestNet{vm: plat.guest, id: d.ID}
				}
			}
			return out, nil
		},
		LANDefault: func(ctx context.Context) string {
			st, err := mgr.Settings(ctx)
			if err != nil {
				return netmgr.LANDefaultOff
			}
			return st.V1LANDefault
		},
	})
	rules := netmgr.NewPortProxy(netmgr.PortProxyConfig{Store: dbs, Logger: log.With("component", "portproxy")})
	if err := rules.Load(ctx); err != nil {
		log.Warn("portproxy rules not loaded", "err", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := ports.Run(ctx); err != nil {
			log.Error("port manager stopped", "err", err)
		}
	})
	wg.Go(func() {
		if err := rules.Run(ctx); err != nil {
			log.Error("portproxy stopped", "err", err)
		}
	})
	return ports, rules, wg.Wait
}

// guestNet is a version 2 distro's network for the port manager: its
// listeners and connections go through the utility VM's agent.
type guestNet struct {
	vm guestDialer
	id string
}

func (g guestNet) Listeners(ctx context.Context) ([]netmgr.Listener, error) {
	ls, err := g.vm.Listeners(ctx, g.id)
	if err != nil {
		return nil, err
	}
	out := make([]netmgr.Listener, 0, len(ls))
	for _, l := range ls {
		a, err := netip.ParseAddr(l.Address)
		if err != nil || (l.Proto != netmgr.TCP && l.Proto != netmgr.UDP) {
			continue // not a socket the VM's agent should report
		}
		out = append(out, netmgr.Listener{Proto: l.Proto, Address: a.Unmap(), Port: l.Port, PID: l.PID, Process: l.Process})
	}
	return out, nil
}

func (g guestNet) Dial(ctx context.Context, proto string, target netip.AddrPort) (net.Conn, error) {
	return g.vm.Dial(ctx, proto, target.String())
}
