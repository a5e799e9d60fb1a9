package netmgr

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Port states, as Port.State reports them.
const (
	// PortLocal: the port is reachable from this host only.
	PortLocal = "local"
	// PortLAN: the port is reachable from the LAN too (within its allowlist).
	PortLAN = "lan"
	// PortConflict: the LAN side could not be opened because another socket holds
	// the address; Error names the holder. subsys never shares a port.
	PortConflict = "conflict"
	// PortError: the port is not exposed as asked for another reason (Error).
	PortError = "error"
	// PortClosed: nothing listens on the port now; its setting is kept and
	// applied when it appears.
	PortClosed = "closed"
)

// V1 LAN defaults, the server setting v1_lan_default.
const (
	// LANDefaultOff: a version 1 port reaches the LAN only after its toggle is
	// turned on, whatever address it is bound to.
	LANDefaultOff = "off"
	// LANDefaultFollowBind: WSL 1's behaviour: a port bound to a non-loopback
	// address is on the LAN until its toggle is turned off.
	LANDefaultFollowBind = "follow-bind"
)

// DefaultScanInterval is how often the PortManager looks for listening sockets
// when nothing asks it sooner: a new or closed port shows within it.
const DefaultScanInterval = 500 * time.Millisecond

// conflictRetry is how long a LAN listener that could not bind waits before it
// is tried again.
const conflictRetry = 2 * time.Second

// Distro is a running distro whose ports the PortManager watches.
type Distro struct {
	// ID is the distro's id, by which its settings are stored.
	ID string
	// Name is the distro's name, as PortsEvent reports it.
	Name string
	// PIDNamespace names the distro's processes (see PIDNamespace); sockets
	// that they hold are the distro's ports. Empty: the distro's ports are not
	// host sockets (version 2) and are not discovered here.
	PIDNamespace string
	// Cgroup is the distro's cgroup v2 path ("/subsys/ID"), when it has one:
	// processes in it or below it are the distro's too, also those of a PID
	// namespace nested in the distro's.
	Cgroup string
	// Guest, for a version 2 distro, lists its listening sockets (which are
	// not the host's) and reaches them; nil for version 1.
	Guest GuestNet
}

// GuestNet is a version 2 distro's network as the PortManager reaches it:
// its sockets live in the utility VM, and each connection to one goes
// through the VM's agent.
type GuestNet interface {
	// Listeners lists the distro's listening sockets (Address as bound in
	// the VM; Inode and UID are not set).
	Listeners(ctx context.Context) ([]Listener, error)
	// Dial connects to target, an address and port in the VM ("tcp").
	Dial(ctx context.Context, proto string, target netip.AddrPort) (net.Conn, error)
}

// PortSetting is how one port of a distro is exposed.
type PortSetting struct {
	// LAN: other hosts may connect.
	LAN bool `json:"lan"`
	// Allow lists the source prefixes that may connect from the LAN; empty
	// allows any.
	Allow []netip.Prefix `json:"allow"`
	// LANAddress is the one host address the port is exposed on; the zero Addr
	// means every address of the host.
	LANAddress netip.Addr `json:"lan_address"`
	// Localhost: the port is reachable on host loopback. Version 1 ports are
	// host ports, so it matters for version 2 only.
	Localhost bool `json:"localhost"`
}

// DefaultPortSetting is the setting of a port nobody has configured.
var DefaultPortSetting = PortSetting{Localhost: true}

// PortUpdate changes some fields of a PortSetting; nil fields stay.
type PortUpdate struct {
	// LAN, when set, replaces PortSetting.LAN.
	LAN *bool
	// Allow, when set, replaces PortSetting.Allow (normalized).
	Allow *[]netip.Prefix
	// LANAddress, when set, replaces PortSetting.LANAddress; the zero Addr
	// means every address again.
	LANAddress *netip.Addr
	// Localhost, when set, replaces PortSetting.Localhost.
	Localhost *bool
}

// PortKey names a port: protocol and number.
type PortKey struct {
	// Proto is "tcp" or "udp".
	Proto string
	// Port is 1-65535.
	Port uint16
}

// PortStore keeps per-port settings across restarts, by distro id.
type PortStore interface {
	// PortSettings returns every stored setting, by distro id and port.
	PortSettings(ctx context.Context) (map[string]map[PortKey]PortSetting, error)
	// PutPortSetting stores the setting of one port of a distro, replacing
	// the one stored before.
	PutPortSetting(ctx context.Context, distroID string, k PortKey, s PortSetting) error
}

// Port is one listening port of a distro, how it is exposed, and its counters.
type Port struct {
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// Port is the port number.
	Port uint16 `json:"port"`
	// Address is the bind address; 0.0.0.0 or :: mean every address.
	Address netip.Addr `json:"address"`
	// Process and PID name the process holding the socket; "" and 0 when
	// none was found, and for a closed port.
	Process string `json:"process"`
	PID     int    `json:"pid"`
	// PortSetting is the port's setting; its LAN is the effective one (the
	// follow-bind default when the port has no setting of its own).
	PortSetting
	// State is PortLocal, PortLAN, PortConflict, PortError or PortClosed.
	State string `json:"state"`
	// Error says why the state is PortConflict or PortError.
	Error string `json:"error,omitempty"`
	// Connections counts live TCP connections to the port (UDP: flows through
	// subsys's LAN proxy).
	Connections int64 `json:"connections"`
	// BytesIn and BytesOut count traffic to and from the port since subsys
	// first saw it: IP packets, headers included, when the firewall counts
	// them, else the payload through subsys's LAN proxy.
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
}

// PortsConfig configures a PortManager.
type PortsConfig struct {
	// Distros lists the running distros. Required.
	Distros func(ctx context.Context) ([]Distro, error)
	// Store keeps settings; nil keeps them in memory.
	Store PortStore
	// Firewall keeps LAN-off ports of wildcard binds off the LAN, and counts
	// bytes. nil: such ports are reported in state error, since nothing stops
	// LAN traffic to them.
	Firewall *Firewall
	// LANDefault returns LANDefaultOff or LANDefaultFollowBind; nil means off.
	LANDefault func(ctx context.Context) string
	// Interval between scans; default DefaultScanInterval.
	Interval time.Duration
	// HostAddresses lists the host's own unicast addresses; default: every
	// interface address (see hostAddresses).
	HostAddresses func() ([]netip.Addr, error)
	// Logger receives exposure changes at Info and failures at Warn; default
	// slog.Default().
	Logger *slog.Logger
}

// PortManager discovers the listening ports of running version 1 distros and
// exposes each as its setting says: proxies from the LAN addresses to a port
// bound to loopback, firewall rules for one bound to every address, and the cut
// of connections that a setting no longer allows. One goroutine (Run) owns
// every proxy and the firewall; the other methods talk to it.
type PortManager struct {
	cfg  PortsConfig
	log  *slog.Logger
	kick chan chan struct{}
	// setMu serializes Set.
	setMu sync.Mutex

	mu       sync.Mutex
	subs     map[chan PortsEvent]struct{}
	settings map[string]map[PortKey]PortSetting // by distro id
	ports    map[string][]Port                  // last scan, by distro id
	loaded   bool

	// Owned by the Run goroutine.
	owners    map[uint64]socketOwner // inode → owner; distroID "" for non-distro sockets
	proxies   map[proxyKey]*lanProxy
	retryAt   map[proxyKey]time.Time
	proxyErrs map[proxyKey]error // why a wanted LAN listener is not open
	published map[string][]Port
	distros   map[string]Distro
	guestErrs map[string]string // the last error listing a v2 distro's ports, logged once
}

// socketOwner is the process holding a socket, and its distro.
type socketOwner struct {
	distroID string
	pid      int
	comm     string
}

// proxyKey names one LAN listener of a loopback-bound port.
type proxyKey struct {
	proto  string
	listen netip.AddrPort
}

// lanProxy is a running LAN listener and what it was made for.
type lanProxy struct {
	distroID string
	target   netip.AddrPort
	allow    string
	// guest: target is in the VM of a version 2 distro, dialed through its
	// GuestNet.
	guest bool
	proxy *Proxy
}

// NewPortManager returns a PortManager; Run starts it.
func NewPortManager(cfg PortsConfig) *PortManager {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultScanInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HostAddresses == nil {
		cfg.HostAddresses = hostAddresses
	}
	return &PortManager{
		cfg:       cfg,
		log:       cfg.Logger,
		kick:      make(chan chan struct{}),
		subs:      map[chan PortsEvent]struct{}{},
		settings:  map[string]map[PortKey]PortSetting{},
		ports:     map[string][]Port{},
		owners:    map[uint64]socketOwner{},
		proxies:   map[proxyKey]*lanProxy{},
		retryAt:   map[proxyKey]time.Time{},
		proxyErrs: map[proxyKey]error{},
		published: map[string][]Port{},
		distros:   map[string]Distro{},
		guestErrs: map[string]string{},
	}
}

// Run loads the stored settings and scans every Interval, and whenever Set or
// Rescan asks, until ctx ends. Then it closes the LAN proxies (cutting their
// connections) and returns. The firewall's rules for ports that distros still
// hold stay, so that ports with LAN off stay off while no server runs (the next
// Run replaces them); when no distro holds a port, the table is deleted.
func (m *PortManager) Run(ctx context.Context) error {
	if err := m.load(ctx); err != nil {
		return err
	}
	defer m.finish(ctx)
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	m.scan(ctx)
	for {
		var waiting []chan struct{}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case d := <-m.kick:
			// Every kick already sent is answered by the scan below, which
			// starts after it; one sent during the scan waits for the next.
			waiting = append(waiting, d)
			for more := true; more; {
				select {
				case d := <-m.kick:
					waiting = append(waiting, d)
				default:
					more = false
				}
			}
		}
		m.scan(ctx)
		for _, d := range waiting {
			close(d)
		}
	}
}

// load reads the stored settings once.
func (m *PortManager) load(ctx context.Context) error {
	if m.cfg.Store == nil {
		return nil
	}
	all, err := m.cfg.Store.PortSettings(ctx)
	if err != nil {
		return fmt.Errorf("load port settings: %w", err)
	}
	m.mu.Lock()
	for id, ps := range all {
		if m.settings[id] == nil {
			m.settings[id] = map[PortKey]PortSetting{}
		}
		for k, s := range ps {
			if _, ok := m.settings[id][k]; !ok {
				m.settings[id][k] = s
			}
		}
	}
	m.loaded = true
	m.mu.Unlock()
	return nil
}

// Rescan asks the Run goroutine for a scan now and waits until it is done (or
// ctx ends, or Run does not take the request within 30 s).
func (m *PortManager) Rescan(ctx context.Context) error {
	done := make(chan struct{})
	// A scan in progress (sock_diag, /proc, nftables, each bounded by 5 s)
	// must end before Run takes the kick.
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case m.kick <- done:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("port manager is not running")
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ports returns the listening ports of a distro found by the last scan.
func (m *PortManager) Ports(distroID string) []Port {
	m.mu.Lock()
	defer m.mu.Unlock()
	return clonePorts(m.ports[distroID])
}

// Setting returns the stored setting of a port, or DefaultPortSetting.
func (m *PortManager) Setting(distroID string, k PortKey) (PortSetting, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.settings[distroID][k]
	if !ok {
		return DefaultPortSetting, false
	}
	return s, true
}

// Set validates and stores a change to one port's setting, applies it (a LAN
// listener opened or closed, firewall rules replaced, connections the setting
// no longer allows cut) and returns the port as it is then: one entry per
// listening socket on that port, or one in state PortClosed when none listens.
func (m *PortManager) Set(ctx context.Context, d Distro, k PortKey, u PortUpdate) ([]Port, error) {
	if k.Proto != TCP && k.Proto != UDP {
		return nil, fmt.Errorf("%w: protocol %q: want tcp or udp", ErrInvalid, k.Proto)
	}
	if k.Port == 0 {
		return nil, fmt.Errorf("%w: port must be 1-65535", ErrInvalid)
	}
	// One change at a time: read, store and remember must not interleave
	// with another PUT on the same port.
	m.setMu.Lock()
	defer m.setMu.Unlock()
	cur, _ := m.Setting(d.ID, k)
	next := cur
	if u.LAN != nil {
		next.LAN = *u.LAN
	}
	if u.Localhost != nil {
		next.Localhost = *u.Localhost
	}
	if u.Allow != nil {
		next.Allow = normalizeAllow(*u.Allow)
	}
	if u.LANAddress != nil {
		next.LANAddress = u.LANAddress.Unmap().WithZone("")
	}
	if err := next.Validate(); err != nil {
		return nil, err
	}
	if m.cfg.Store != nil {
		if err := m.cfg.Store.PutPortSetting(ctx, d.ID, k, next); err != nil {
			return nil, fmt.Errorf("store setting of %s port %d: %w", k.Proto, k.Port, err)
		}
	}
	m.mu.Lock()
	if m.settings[d.ID] == nil {
		m.settings[d.ID] = map[PortKey]PortSetting{}
	}
	m.settings[d.ID][k] = next
	m.mu.Unlock()
	m.log.Info("port setting changed", "distro", d.Name, "proto", k.Proto, "port", k.Port,
		"lan", next.LAN, "allow", prefixList(next.Allow), "lan_address", addrString(next.LANAddress), "localhost", next.Localhost)
	if err := m.Rescan(ctx); err != nil {
		return nil, err
	}
	return portsOf(m.Ports(d.ID), k, next), nil
}

// Validate checks a setting: at most MaxAllow valid prefixes, and a LAN address
// that is a unicast, non-loopback address when set.
func (s PortSetting) Validate() error {
	if len(s.Allow) > MaxAllow {
		return fmt.Errorf("%w: %d allow prefixes, at most %d", ErrInvalid, len(s.Allow), MaxAllow)
	}
	for _, p := range s.Allow {
		if !p.IsValid() {
			return fmt.Errorf("%w: allow prefix %q", ErrInvalid, p)
		}
	}
	if a := s.LANAddress; a.IsValid() && (a.IsLoopback() || a.IsUnspecified() || a.IsMulticast()) {
		return fmt.Errorf("%w: lan_address %s is not a unicast LAN address", ErrInvalid, a)
	}
	return nil
}

// ParsePrefixes parses source prefixes as the API and the CLI take them: CIDR
// prefixes or single addresses (a host prefix), blanks ignored; the result is
// masked, IPv4-mapped prefixes made IPv4, sorted and without duplicates.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is neither a CIDR prefix nor an address", ErrInvalid, s)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	if len(out) > MaxAllow {
		return nil, fmt.Errorf("%w: %d allow prefixes, at most %d", ErrInvalid, len(out), MaxAllow)
	}
	return normalizeAllow(out), nil
}

// scan is one pass: discover and plan (look, planScan), apply the plan
// (applyProxies, applyFirewall, cutConnections), and report it (report).
// Errors are logged; the next pass tries again.
func (m *PortManager) scan(ctx context.Context) {
	plan, running, hostAddrs, ok := m.look(ctx)
	if !ok {
		return
	}
	m.applyProxies(plan, running)
	fwErr := m.applyFirewall(ctx, plan)
	var conns []Socket
	if plan.hasTCP() {
		// One dump serves both the cut and the connection counts.
		var err error
		if conns, err = Connections(ctx); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			// Unsupported (no sock_diag: Windows) is so on every pass:
			// the connection counts are then absent, not an error.
			m.log.Warn("list connections", "err", err)
		}
	}
	m.cutConnections(ctx, plan, hostAddrs, conns)
	m.report(ctx, plan, running, fwErr, conns)
}

// finish runs when Run ends: it closes the LAN listeners, and leaves firewall
// rules only for the ports that running distros still hold.
func (m *PortManager) finish(ctx context.Context) {
	m.closeProxies()
	if m.cfg.Firewall == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	plan, running, _, ok := m.look(ctx)
	switch {
	case !ok: // keep the rules as they are: LAN-off must stay off
	case len(running) == 0:
		if err := m.cfg.Firewall.Close(); err != nil {
			m.log.Warn("delete firewall table", "err", err)
		}
	default:
		_ = m.applyFirewall(ctx, plan)
	}
}

// look finds the running distros and their listening ports, and plans how to
// expose each. ok is false (and the reason logged) when that could not be found.
func (m *PortManager) look(ctx context.Context) (plan *scanPlan, running map[string]Distro, hostAddrs []netip.Addr, ok bool) {
	distros, err := m.cfg.Distros(ctx)
	if err != nil {
		m.log.Warn("list running distros", "err", err)
		return nil, nil, nil, false
	}
	running = map[string]Distro{}
	var hostDistros []Distro // those whose sockets are host sockets (version 1)
	guests := map[string]bool{}
	for _, d := range distros {
		running[d.ID] = d
		if d.PIDNamespace != "" {
			hostDistros = append(hostDistros, d)
		}
	}
	listeners := map[string][]Listener{}
	if len(hostDistros) > 0 {
		listeners, err = m.discover(ctx, hostDistros)
		if err != nil {
			m.log.Warn("discover distro ports", "err", err)
			return nil, nil, nil, false
		}
	}
	for _, d := range distros {
		if d.Guest == nil {
			continue
		}
		ls, err := d.Guest.Listeners(ctx)
		if err != nil {
			// Its ports keep their last plan's listeners until the VM answers.
			if m.guestErrs[d.ID] != err.Error() {
				m.log.Warn("list a version 2 distro's ports", "distro", d.Name, "err", err)
				m.guestErrs[d.ID] = err.Error()
			}
			m.mu.Lock()
			for _, p := range m.ports[d.ID] {
				ls = append(ls, Listener{Proto: p.Proto, Address: p.Address, Port: p.Port, PID: p.PID, Process: p.Process})
			}
			m.mu.Unlock()
		}
		if err == nil {
			delete(m.guestErrs, d.ID)
		}
		sortListeners(ls)
		listeners[d.ID] = ls
		guests[d.ID] = true
	}
	hostAddrs, err = m.cfg.HostAddresses()
	if err != nil {
		m.log.Warn("list host addresses", "err", err)
	}
	followBind := m.cfg.LANDefault != nil && m.cfg.LANDefault(ctx) == LANDefaultFollowBind
	return m.plan(listeners, guests, hostAddrs, followBind), running, hostAddrs, true
}

// discover lists the listening sockets of the host and keeps those held by
// the distros' processes, by distro id. Which process holds a socket is looked
// up in /proc once per socket, not once per scan.
func (m *PortManager) discover(ctx context.Context, distros []Distro) (map[string][]Listener, error) {
	socks, err := ListeningSockets(ctx)
	if err != nil {
		return nil, err
	}
	live := map[uint64]bool{}
	unknown := map[uint64]bool{}
	for _, s := range socks {
		live[s.Inode] = true
		if _, ok := m.owners[s.Inode]; !ok && s.Inode != 0 {
			unknown[s.Inode] = true
		}
	}
	for inode := range m.owners {
		if !live[inode] {
			delete(m.owners, inode)
		}
	}
	if len(unknown) > 0 {
		found, err := distroSocketOwners(ctx, unknown, distros)
		if err != nil {
			return nil, err
		}
		for inode := range unknown {
			m.owners[inode] = found[inode] // the zero owner: not a distro's
		}
	}
	out := map[string][]Listener{}
	for _, s := range socks {
		o := m.owners[s.Inode]
		if o.distroID == "" {
			continue
		}
		out[o.distroID] = append(out[o.distroID], Listener{
			Proto: s.Proto, Address: s.Local.Addr(), Port: s.Local.Port(),
			PID: o.pid, Process: o.comm, UID: s.UID, Inode: s.Inode,
		})
	}
	for _, ls := range out {
		sortListeners(ls)
	}
	return out, nil
}

// nonNilAllow returns a, or an empty list for nil, so that JSON shows [] and
// not null.
func nonNilAllow(a []netip.Prefix) []netip.Prefix {
	if a == nil {
		return []netip.Prefix{}
	}
	return a
}

// normalizeAllow masks, unmaps, sorts and de-duplicates prefixes.
func normalizeAllow(in []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		if p.IsValid() {
			a := p.Addr().Unmap()
			bits := p.Bits()
			if p.Addr().Is4In6() {
				bits -= 96
			}
			p = netip.PrefixFrom(a, max(bits, 0)).Masked()
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return slices.Compact(out)
}

// prefixList formats prefixes as "a/n,b/m": for logs, and to compare the
// allowlists of two LAN listeners.
func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// addrString formats a, or "" for the zero Addr (every address).
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// hostAddresses lists the unicast addresses of the host's interfaces.
func hostAddresses() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}
