package netmgr

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
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
	ID   string
	Name string
	// PIDNamespace names the distro's processes (see PIDNamespace); sockets
	// that they hold are the distro's ports. Empty: the distro's ports are not
	// host sockets (version 2) and are not discovered here.
	PIDNamespace string
	// Cgroup is the distro's cgroup v2 path ("/subsys/ID"), when it has one:
	// processes in it or below it are the distro's too, also those of a PID
	// namespace nested in the distro's.
	Cgroup string
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
	LAN        *bool
	Allow      *[]netip.Prefix
	LANAddress *netip.Addr
	Localhost  *bool
}

// PortKey names a port: protocol and number.
type PortKey struct {
	Proto string
	Port  uint16
}

// PortStore keeps per-port settings across restarts, by distro id.
type PortStore interface {
	PortSettings(ctx context.Context) (map[string]map[PortKey]PortSetting, error)
	PutPortSetting(ctx context.Context, distroID string, k PortKey, s PortSetting) error
}

// Port is one listening port of a distro, how it is exposed, and its counters.
type Port struct {
	Proto string `json:"proto"`
	Port  uint16 `json:"port"`
	// Address is the bind address; 0.0.0.0 or :: mean every address.
	Address netip.Addr `json:"address"`
	Process string     `json:"process"`
	PID     int        `json:"pid"`
	PortSetting
	// State is PortLocal, PortLAN, PortConflict, PortError or PortClosed.
	State string `json:"state"`
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
	Logger        *slog.Logger
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
	proxy    *Proxy
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
	var out []Port
	for _, p := range m.Ports(d.ID) {
		if p.Proto == k.Proto && p.Port == k.Port {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = []Port{{Proto: k.Proto, Port: k.Port, PortSetting: next, State: PortClosed}}
		out[0].Allow = nonNilAllow(out[0].Allow)
	}
	return out, nil
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

// scan is one pass: discover, decide, apply, publish. Errors are logged; the
// next pass tries again.
func (m *PortManager) scan(ctx context.Context) {
	plan, running, hostAddrs, ok := m.look(ctx)
	if !ok {
		return
	}
	m.applyProxies(plan)
	fwErr := m.applyFirewall(ctx, plan)
	var conns []Socket
	if hasTCP(plan) {
		// One dump serves both the cut and the connection counts.
		var err error
		if conns, err = Connections(ctx); err != nil {
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
	for _, d := range distros {
		running[d.ID] = d
		if d.PIDNamespace != "" {
			hostDistros = append(hostDistros, d)
		}
	}
	var listeners map[string][]Listener
	if len(hostDistros) > 0 {
		listeners, err = m.discover(ctx, hostDistros)
		if err != nil {
			m.log.Warn("discover distro ports", "err", err)
			return nil, nil, nil, false
		}
	}
	hostAddrs, err = m.cfg.HostAddresses()
	if err != nil {
		m.log.Warn("list host addresses", "err", err)
	}
	followBind := m.cfg.LANDefault != nil && m.cfg.LANDefault(ctx) == LANDefaultFollowBind
	return m.plan(listeners, hostAddrs, followBind), running, hostAddrs, true
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

// portPlan is what one scan decided for one listening socket of a distro.
type portPlan struct {
	distroID string
	l        Listener
	set      PortSetting
	lan      bool // effective: the setting, or the follow-bind default
	proxies  []proxyKey
	err      error // why the port is not exposed as asked
}

// scanPlan is the whole scan's decision.
type scanPlan struct {
	ports   []*portPlan
	proxies map[proxyKey]lanProxy
	rules   []FirewallRule
}

// plan decides, for every listening socket, which LAN listeners and firewall
// rules it needs.
func (m *PortManager) plan(listeners map[string][]Listener, hostAddrs []netip.Addr, followBind bool) *scanPlan {
	m.mu.Lock()
	settings := make(map[string]map[PortKey]PortSetting, len(m.settings))
	for id, ps := range m.settings {
		settings[id] = ps
	}
	m.mu.Unlock()
	sp := &scanPlan{proxies: map[proxyKey]lanProxy{}}
	ruleIdx := map[PortKey]int{}
	ids := make([]string, 0, len(listeners))
	for id := range listeners {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		for _, l := range listeners[id] {
			k := PortKey{l.Proto, l.Port}
			set, configured := settings[id][k]
			if !configured {
				set = DefaultPortSetting
			}
			addr := l.Address.Unmap()
			pp := &portPlan{distroID: id, l: l, set: set, lan: set.LAN}
			if !configured && followBind && !addr.IsLoopback() {
				pp.lan = true
			}
			rule := FirewallRule{Proto: l.Proto, Port: l.Port, Family: familyOf(addr)}
			if addr.IsLoopback() {
				// Only subsys's proxies carry LAN traffic to it; count the loopback leg.
				rule.LoopbackOnlyCount = true
				if pp.lan {
					for _, a := range hostAddrs {
						if a.IsLoopback() || a.IsLinkLocalUnicast() || (set.LANAddress.IsValid() && a != set.LANAddress) {
							continue
						}
						pk := proxyKey{l.Proto, netip.AddrPortFrom(a, l.Port)}
						if prev, taken := sp.proxies[pk]; taken && prev.target.Addr().Is4() == addr.Is4() {
							continue // a same-family target got it first
						}
						sp.proxies[pk] = lanProxy{distroID: id, target: netip.AddrPortFrom(addr, l.Port), allow: prefixList(set.Allow)}
						pp.proxies = append(pp.proxies, pk)
					}
					if len(pp.proxies) == 0 {
						if set.LANAddress.IsValid() {
							pp.err = fmt.Errorf("lan_address %s is not an address of this host", set.LANAddress)
						} else {
							pp.err = errors.New("this host has no LAN address")
						}
					}
				}
			} else {
				rule.Drop = !pp.lan
				if pp.lan {
					rule.Allow = set.Allow
					rule.Dest = set.LANAddress
					if d := set.LANAddress; d.IsValid() && rule.Family != 0 && d.Is4() != (rule.Family == 4) {
						// No packet of the socket's family goes to that address.
						rule.Drop, rule.Dest = true, netip.Addr{}
						pp.err = fmt.Errorf("lan_address %s is not of the family of the bind address %s", d, addr)
					}
				}
			}
			if i, ok := ruleIdx[k]; ok {
				// Several sockets on one port (0.0.0.0 and [::], say): one
				// rule for both families, and the stricter decision wins.
				sp.rules[i] = mergeRules(sp.rules[i], rule)
			} else {
				ruleIdx[k] = len(sp.rules)
				sp.rules = append(sp.rules, rule)
			}
			sp.ports = append(sp.ports, pp)
		}
	}
	return sp
}

// mergeRules combines the rules of two sockets on one port (0.0.0.0 and [::],
// or two distros on two addresses): both families when they differ, and the
// stricter of the two filters, so that a merge never opens what either rule
// keeps shut: a drop when either drops, the prefixes both allow, the lan
// address both name.
func mergeRules(a, b FirewallRule) FirewallRule {
	if a.Family != b.Family {
		a.Family = 0
	}
	a.LoopbackOnlyCount = a.LoopbackOnlyCount && b.LoopbackOnlyCount
	if b.Drop {
		a.Drop = true
	}
	switch {
	case len(a.Allow) == 0:
		a.Allow = b.Allow
	case len(b.Allow) > 0:
		a.Allow = intersectPrefixes(a.Allow, b.Allow)
		if len(a.Allow) == 0 {
			a.Drop = true
		}
	}
	switch {
	case !a.Dest.IsValid():
		a.Dest = b.Dest
	case b.Dest.IsValid() && b.Dest != a.Dest:
		a.Drop = true
	}
	if a.Drop {
		a.Allow, a.Dest = nil, netip.Addr{}
	}
	return a
}

// intersectPrefixes returns the prefixes that lie in both lists: of each pair
// that overlaps, the narrower.
func intersectPrefixes(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range a {
		for _, q := range b {
			switch {
			case p.Bits() >= q.Bits() && q.Contains(p.Addr()):
				out = append(out, p)
			case q.Bits() > p.Bits() && p.Contains(q.Addr()):
				out = append(out, q)
			}
		}
	}
	return normalizeAllow(out)
}

// familyOf is a bind address's firewall family: 4, 6, or 0 for the IPv6
// wildcard, which takes IPv4 clients too unless IPV6_V6ONLY is set.
func familyOf(a netip.Addr) int {
	switch {
	case a.Is4():
		return 4
	case a.IsUnspecified():
		return 0
	default:
		return 6
	}
}

// applyProxies closes the LAN listeners the plan no longer wants (cutting
// their connections) and opens the new ones. A listener whose address is taken
// is retried after conflictRetry.
func (m *PortManager) applyProxies(sp *scanPlan) {
	for k, lp := range m.proxies {
		want, ok := sp.proxies[k]
		if ok && want.target == lp.target && want.allow == lp.allow && want.distroID == lp.distroID {
			continue
		}
		_ = lp.proxy.Close()
		delete(m.proxies, k)
		m.log.Info("LAN listener closed", "proto", k.proto, "listen", k.listen.String())
	}
	for k := range m.retryAt {
		if _, ok := sp.proxies[k]; !ok {
			delete(m.retryAt, k)
			delete(m.proxyErrs, k)
		}
	}
	now := time.Now()
	for k, want := range sp.proxies {
		if _, ok := m.proxies[k]; ok {
			continue
		}
		if t, ok := m.retryAt[k]; ok && now.Before(t) {
			continue
		}
		allow, _ := ParsePrefixes(strings.Split(want.allow, ","))
		p, err := NewProxy(ProxyConfig{
			Proto:  k.proto,
			Listen: k.listen,
			Target: want.target.String(),
			Allow:  allow,
			Logger: m.log.With("distro", want.distroID),
		})
		if err != nil {
			if _, seen := m.retryAt[k]; !seen {
				m.log.Warn("LAN listener not opened", "proto", k.proto, "listen", k.listen.String(), "err", err)
			}
			m.retryAt[k] = now.Add(conflictRetry)
			m.proxyErrs[k] = err
			continue
		}
		delete(m.retryAt, k)
		delete(m.proxyErrs, k)
		want.proxy = p
		lp := want
		m.proxies[k] = &lp
		m.log.Info("LAN listener opened", "proto", k.proto, "listen", k.listen.String(), "target", want.target.String())
	}
}

// applyFirewall hands the plan's rules to the firewall.
func (m *PortManager) applyFirewall(ctx context.Context, sp *scanPlan) error {
	if m.cfg.Firewall == nil {
		return ErrFirewallUnavailable
	}
	if err := m.cfg.Firewall.Apply(ctx, sp.rules); err != nil {
		m.log.Warn("apply firewall rules", "err", err)
		return err
	}
	return nil
}

// cutConnections aborts the live TCP connections to distro ports bound to
// every address that their rule no longer admits: from a LAN host while LAN is
// off, from outside the allowlist, or to another address than lan_address.
// Enforcing on every scan, not only on a toggle, also cuts a connection that
// slipped in before the port was first seen.
func (m *PortManager) cutConnections(ctx context.Context, sp *scanPlan, hostAddrs []netip.Addr, conns []Socket) {
	if m.cfg.Firewall == nil {
		return
	}
	rules := map[uint16][]FirewallRule{}
	for _, r := range sp.rules {
		if r.Proto == TCP && !r.LoopbackOnlyCount && (r.Drop || len(r.Allow) > 0 || r.Dest.IsValid()) {
			rules[r.Port] = append(rules[r.Port], r)
		}
	}
	if len(rules) == 0 {
		return
	}
	local := map[netip.Addr]bool{}
	for _, a := range hostAddrs {
		local[a.Unmap()] = true
	}
	// The distros' bind addresses by port: a connection to another address
	// on the same port number is a host program's, not theirs to cut.
	binds := map[uint16][]netip.Addr{}
	for _, pp := range sp.ports {
		if pp.l.Proto == TCP && !pp.l.Address.Unmap().IsLoopback() {
			binds[pp.l.Port] = append(binds[pp.l.Port], pp.l.Address.Unmap())
		}
	}
	var cut []Socket
	for _, c := range conns {
		remote := c.Remote.Addr().Unmap()
		if remote.IsLoopback() || local[remote] {
			continue // from this host: never LAN traffic
		}
		if !boundTo(binds[c.Local.Port()], c.Local.Addr().Unmap()) {
			continue
		}
		for _, r := range rules[c.Local.Port()] {
			if r.admits(remote, c.Local.Addr().Unmap()) {
				continue
			}
			if r.Family == 4 && !remote.Is4() || r.Family == 6 && remote.Is4() {
				continue
			}
			cut = append(cut, c)
			break
		}
	}
	if len(cut) == 0 {
		return
	}
	n, err := DestroySockets(ctx, cut)
	if err != nil {
		m.log.Warn("cut connections", "err", err)
	}
	if n > 0 {
		m.log.Info("cut connections no longer allowed", "count", n)
	}
}

// boundTo reports whether a connection to local address a belongs to a socket
// bound to one of binds: the same address, or the wildcard of its family (the
// IPv6 wildcard takes IPv4 too).
func boundTo(binds []netip.Addr, a netip.Addr) bool {
	for _, b := range binds {
		if b == a || b.IsUnspecified() && (b.Is6() || a.Is4()) {
			return true
		}
	}
	return false
}

// admits reports whether a LAN packet from src to dst passes r.
func (r FirewallRule) admits(src, dst netip.Addr) bool {
	if r.Drop {
		return false
	}
	if r.Dest.IsValid() && dst != r.Dest {
		return false
	}
	if len(r.Allow) == 0 {
		return true
	}
	for _, p := range r.Allow {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// report turns the plan into Ports with states and counters, stores them for
// Ports, and publishes a PortsEvent for each distro whose ports changed.
func (m *PortManager) report(ctx context.Context, sp *scanPlan, running map[string]Distro, fwErr error, conns []Socket) {
	var counters map[PortKey]PortCounter
	if fwErr == nil && len(sp.rules) > 0 {
		var err error
		if counters, err = m.cfg.Firewall.Counters(ctx); err != nil {
			m.log.Warn("read firewall counters", "err", err)
		}
	}
	byDistro := map[string][]Port{}
	for _, pp := range sp.ports {
		p := Port{
			Proto: pp.l.Proto, Port: pp.l.Port, Address: pp.l.Address.Unmap(), Process: pp.l.Process, PID: pp.l.PID,
			PortSetting: pp.set, State: PortLocal,
		}
		p.LAN = pp.lan
		p.Allow = nonNilAllow(p.Allow)
		var errs []string
		if pp.err != nil {
			errs = append(errs, pp.err.Error())
		}
		var stats Stats
		opened := 0
		conflict := false
		for _, k := range pp.proxies {
			if lp, ok := m.proxies[k]; ok {
				stats = stats.Add(lp.proxy.Stats())
				opened++
			} else if e, ok := m.proxyErrs[k]; ok {
				if errors.Is(e, ErrPortInUse) {
					conflict = true
				}
				errs = append(errs, e.Error())
			}
		}
		loop := p.Address.IsLoopback()
		switch {
		case conflict:
			p.State = PortConflict
		case len(errs) > 0:
			p.State = PortError
		case !loop && fwErr != nil && (!pp.lan || len(pp.set.Allow) > 0 || pp.set.LANAddress.IsValid()):
			p.State = PortError
			errs = append(errs, "no firewall ("+fwErr.Error()+"): the port is reachable from the LAN whatever its setting")
		case pp.lan && (opened > 0 || !loop):
			p.State = PortLAN
		}
		if pp.lan && p.State == PortLocal {
			p.State = PortError
		}
		p.Error = strings.Join(errs, "; ")
		if c, ok := counters[PortKey{p.Proto, p.Port}]; ok {
			p.BytesIn, p.BytesOut = c.BytesIn, c.BytesOut
		} else {
			p.BytesIn, p.BytesOut = uint64(stats.BytesIn), uint64(stats.BytesOut)
		}
		if p.Proto == TCP {
			for _, c := range conns {
				if c.Local.Port() == p.Port && (p.Address.IsUnspecified() || c.Local.Addr().Unmap() == p.Address) {
					p.Connections++
				}
			}
		} else {
			p.Connections = stats.Connections
		}
		byDistro[pp.distroID] = append(byDistro[pp.distroID], p)
	}
	m.mu.Lock()
	m.ports = byDistro
	m.mu.Unlock()
	for id, d := range running {
		m.distros[id] = d
	}
	for id, d := range m.distros {
		ps := byDistro[id]
		if ps == nil {
			ps = []Port{}
		}
		prev, had := m.published[id]
		if had && !reflect.DeepEqual(prev, ps) || !had && len(ps) > 0 {
			m.publish(PortsEvent{Distro: d.Name, ID: d.ID, Ports: clonePorts(ps)})
		}
		if _, ok := running[id]; ok {
			m.published[id] = ps
		} else {
			// Stopped: told once (above) that it has no ports, then forgotten.
			delete(m.distros, id)
			delete(m.published, id)
		}
	}
}

func hasTCP(sp *scanPlan) bool {
	for _, pp := range sp.ports {
		if pp.l.Proto == TCP {
			return true
		}
	}
	return false
}

// PortsEvent says that a distro's ports, or their counters, changed.
type PortsEvent struct {
	Distro string `json:"distro"`
	ID     string `json:"id"`
	Ports  []Port `json:"ports"`
}

// eventBuffer is how many events may wait for a slow subscriber; one that falls
// further behind loses its channel (closed) and must subscribe again.
const eventBuffer = 64

// Subscribe returns a channel of PortsEvents and the function that ends the
// subscription. The channel is closed when the subscriber falls behind.
func (m *PortManager) Subscribe() (<-chan PortsEvent, func()) {
	ch := make(chan PortsEvent, eventBuffer)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		if _, ok := m.subs[ch]; ok {
			delete(m.subs, ch)
			close(ch)
		}
		m.mu.Unlock()
	}
}

// publish sends e to every subscriber without waiting.
func (m *PortManager) publish(e PortsEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- e:
		default:
			delete(m.subs, ch)
			close(ch)
		}
	}
}

// closeProxies stops every LAN listener.
func (m *PortManager) closeProxies() {
	var wg sync.WaitGroup
	for k, lp := range m.proxies {
		wg.Go(func() { _ = lp.proxy.Close() })
		delete(m.proxies, k)
	}
	wg.Wait()
}

func clonePorts(ps []Port) []Port {
	out := slices.Clone(ps)
	for i := range out {
		out[i].Allow = slices.Clone(out[i].Allow)
	}
	return out
}

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

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

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
