package netmgr

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rule is a portproxy rule, netsh-style: connections (TCP) or datagrams (UDP) to
// ListenAddress:ListenPort are forwarded to ConnectAddress:ConnectPort.
type Rule struct {
	// ID names the rule; the PortProxy picks one when it is empty.
	ID string `json:"id"`
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// ListenAddress is the host address to listen on; 0.0.0.0 means every IPv4
	// address and :: every IPv6 address (IPv6 only).
	ListenAddress netip.Addr `json:"listen_address"`
	// ListenPort is 1-65535.
	ListenPort uint16 `json:"listen_port"`
	// ConnectAddress is an IP address or a host name, resolved at each connect.
	ConnectAddress string `json:"connect_address"`
	// ConnectPort is 1-65535.
	ConnectPort uint16 `json:"connect_port"`
	// Allow lists the source prefixes that may connect; empty allows any.
	Allow []netip.Prefix `json:"allow"`
}

// MaxAllow is the most prefixes a Rule's Allow may hold.
const MaxAllow = 64

// The rule id and host name patterns are compiled on first use, not at package
// init: every CLI verb links this package, and compiling their counted
// repetitions costs a client's start-up over a thousand allocations.
var (
	idPattern = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)
	})
	hostPattern = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.?$`)
	})
)

// Normalize returns r in canonical form: protocol and host name in lower case,
// IPv4-mapped addresses as IPv4, allow prefixes masked.
func (r Rule) Normalize() Rule {
	r.Proto = strings.ToLower(strings.TrimSpace(r.Proto))
	r.ListenAddress = r.ListenAddress.Unmap()
	r.ConnectAddress = strings.ToLower(strings.TrimSpace(r.ConnectAddress))
	if a, err := netip.ParseAddr(r.ConnectAddress); err == nil {
		r.ConnectAddress = a.Unmap().String()
	}
	if r.Allow != nil {
		allow := make([]netip.Prefix, len(r.Allow))
		for i, p := range r.Allow {
			if p.IsValid() {
				p = p.Masked()
			}
			allow[i] = p
		}
		r.Allow = allow
	}
	return r
}

// Validate checks a normalized rule; errors wrap ErrInvalid and say which field
// is wrong. An empty ID is valid (the PortProxy assigns one).
func (r Rule) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if r.ID != "" && !idPattern().MatchString(r.ID) {
		return bad("rule id %q: use 1 to 64 letters, digits, '.', '_' or '-'", r.ID)
	}
	if r.Proto != TCP && r.Proto != UDP {
		return bad("protocol %q: want tcp or udp", r.Proto)
	}
	la := r.ListenAddress
	if !la.IsValid() {
		return bad("listen address missing")
	}
	if la.IsMulticast() {
		return bad("listen address %s is multicast", la)
	}
	if r.ListenPort == 0 {
		return bad("listen port must be 1-65535")
	}
	if r.ConnectAddress == "" {
		return bad("connect address missing")
	}
	if ca, err := netip.ParseAddr(r.ConnectAddress); err == nil {
		if ca.IsUnspecified() || ca.IsMulticast() {
			return bad("connect address %s is not a host", ca)
		}
		if r.ConnectPort == r.ListenPort && (ca == la || la.IsUnspecified() && ca.IsLoopback() && ca.Is4() == la.Is4()) {
			return bad("rule forwards %s port %d to itself", r.Proto, r.ListenPort)
		}
	} else if len(r.ConnectAddress) > 253 || !hostPattern().MatchString(r.ConnectAddress) {
		return bad("connect address %q is neither an IP address nor a host name", r.ConnectAddress)
	}
	if r.ConnectPort == 0 {
		return bad("connect port must be 1-65535")
	}
	if len(r.Allow) > MaxAllow {
		return bad("%d allow prefixes, at most %d", len(r.Allow), MaxAllow)
	}
	for _, p := range r.Allow {
		if !p.IsValid() {
			return bad("allow prefix %q", p)
		}
	}
	return nil
}

// Listen is the rule's listen address and port.
func (r Rule) Listen() netip.AddrPort { return netip.AddrPortFrom(r.ListenAddress, r.ListenPort) }

// Target is the rule's connect address and port, as host:port.
func (r Rule) Target() string {
	return net.JoinHostPort(r.ConnectAddress, strconv.Itoa(int(r.ConnectPort)))
}

// overlaps reports whether r and o cannot both listen: same protocol and port,
// and the same address or a wildcard of the same family.
func (r Rule) overlaps(o Rule) bool {
	if r.Proto != o.Proto || r.ListenPort != o.ListenPort {
		return false
	}
	a, b := r.ListenAddress.WithZone(""), o.ListenAddress.WithZone("")
	return a == b || (a.Is4() == b.Is4() && (a.IsUnspecified() || b.IsUnspecified()))
}

// RuleStore keeps portproxy rules across restarts; server gives the PortProxy
// one backed by SQLite. Rules are stored as the PortProxy passes them
// (normalized, with an ID).
type RuleStore interface {
	// Rules returns every stored rule.
	Rules(ctx context.Context) ([]Rule, error)
	// PutRule inserts r, or replaces the rule with r's ID.
	PutRule(ctx context.Context, r Rule) error
	// DeleteRule removes the rule with that ID; a missing one is not an error.
	DeleteRule(ctx context.Context, id string) error
}

// Rule states, as RuleStatus.State reports them.
const (
	// StateActive: the rule's proxy is listening.
	StateActive = "active"
	// StateConflict: the listen port is taken; RuleStatus.Error names the
	// holder. The PortProxy retries while Run runs.
	StateConflict = "conflict"
	// StateError: the proxy could not start for another reason (address not on
	// this host, permission); retried like a conflict.
	StateError = "error"
)

// RuleStatus is a rule with its state and live counters.
type RuleStatus struct {
	Rule
	// State is StateActive, StateConflict or StateError.
	State string `json:"state"`
	// Error says why the rule is not active.
	Error string `json:"error,omitempty"`
	Stats
}

// PortProxyConfig configures a PortProxy.
type PortProxyConfig struct {
	// Store keeps rules across restarts. Default: none (rules live in memory).
	Store RuleStore
	// Logger receives rule changes at Info. Default slog.Default().
	Logger *slog.Logger
	// IdleTimeout is each proxy's ProxyConfig.IdleTimeout. Default 0: the
	// proxy's defaults (1 h TCP, 60 s UDP).
	IdleTimeout time.Duration
	// RetryInterval is how often Run tries again to start rules whose port was
	// taken. Default 5 s.
	RetryInterval time.Duration
}

// PortProxy runs the portproxy rules: one Proxy per rule. A rule whose listen
// port is taken stays in state conflict and is started once the port is free
// (while Run runs), so a restart never loses a rule to a port briefly held.
type PortProxy struct {
	cfg PortProxyConfig
	log *slog.Logger

	mu     sync.Mutex
	closed bool
	rules  map[string]*managed
}

// managed is a rule and its proxy (nil when not active).
type managed struct {
	rule  Rule
	proxy *Proxy
	err   error // why proxy is nil
}

// NewPortProxy returns a PortProxy; Load or Run starts the stored rules.
func NewPortProxy(cfg PortProxyConfig) *PortProxy {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 5 * time.Second
	}
	return &PortProxy{cfg: cfg, log: cfg.Logger, rules: make(map[string]*managed)}
}

// Add validates r, starts its proxy and stores it, and returns its status. An
// empty ID gets a random one. A rule with the same ID, or that overlaps another
// rule's listen address, gives ErrDuplicate; a port held by something else gives
// a *PortInUseError (ErrPortInUse) naming the holder; neither is stored.
func (m *PortProxy) Add(ctx context.Context, r Rule) (RuleStatus, error) {
	r = r.Normalize()
	if r.ID == "" {
		r.ID = newID()
	}
	if err := r.Validate(); err != nil {
		return RuleStatus{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return RuleStatus{}, ErrClosed
	}
	if _, ok := m.rules[r.ID]; ok {
		return RuleStatus{}, fmt.Errorf("%w: a rule with id %q exists", ErrDuplicate, r.ID)
	}
	for _, o := range m.rules {
		if r.overlaps(o.rule) {
			return RuleStatus{}, fmt.Errorf("%w: %s %s overlaps rule %q (%s)", ErrDuplicate, r.Proto, r.Listen(), o.rule.ID, o.rule.Listen())
		}
	}
	p, err := m.start(r)
	if err != nil {
		if errors.Is(err, ErrPortInUse) {
			return RuleStatus{}, err // it names the protocol, address and holder already
		}
		return RuleStatus{}, fmt.Errorf("portproxy %s %s: %w", r.Proto, r.Listen(), err)
	}
	if m.cfg.Store != nil {
		if err := m.cfg.Store.PutRule(ctx, r); err != nil {
			_ = p.Close()
			return RuleStatus{}, fmt.Errorf("store rule %s: %w", r.ID, err)
		}
	}
	mr := &managed{rule: r, proxy: p}
	m.rules[r.ID] = mr
	m.log.Info("portproxy rule added", "id", r.ID, "proto", r.Proto, "listen", r.Listen().String(), "target", r.Target())
	return mr.status(), nil
}

// start opens the proxy of r.
func (m *PortProxy) start(r Rule) (*Proxy, error) {
	return NewProxy(ProxyConfig{
		Proto:       r.Proto,
		Listen:      r.Listen(),
		Target:      r.Target(),
		Allow:       r.Allow,
		IdleTimeout: m.cfg.IdleTimeout,
		Logger:      m.log.With("rule", r.ID),
	})
}

// Delete removes the rule from the store, then stops its proxy, cutting its live
// connections. An unknown ID gives ErrNotFound.
func (m *PortProxy) Delete(ctx context.Context, id string) error {
	m.mu.Lock()
	mr, ok := m.rules[id]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: no portproxy rule %q", ErrNotFound, id)
	}
	if m.cfg.Store != nil {
		if err := m.cfg.Store.DeleteRule(ctx, id); err != nil {
			return fmt.Errorf("delete rule %s: %w", id, err)
		}
	}
	m.mu.Lock()
	if m.rules[id] != mr {
		m.mu.Unlock()
		return fmt.Errorf("%w: no portproxy rule %q", ErrNotFound, id)
	}
	delete(m.rules, id)
	p := mr.proxy
	m.mu.Unlock()
	if p != nil {
		_ = p.Close()
	}
	m.log.Info("portproxy rule deleted", "id", id)
	return nil
}

// Get returns one rule's status, or ErrNotFound.
func (m *PortProxy) Get(id string) (RuleStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mr, ok := m.rules[id]
	if !ok {
		return RuleStatus{}, fmt.Errorf("%w: no portproxy rule %q", ErrNotFound, id)
	}
	return mr.status(), nil
}

// List returns every rule's status, ordered by protocol, listen port and address.
func (m *PortProxy) List() []RuleStatus {
	m.mu.Lock()
	out := make([]RuleStatus, 0, len(m.rules))
	for _, mr := range m.rules {
		out = append(out, mr.status())
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b RuleStatus) int {
		return cmp.Or(
			cmp.Compare(a.Proto, b.Proto),
			cmp.Compare(a.ListenPort, b.ListenPort),
			a.ListenAddress.Compare(b.ListenAddress),
			cmp.Compare(a.ID, b.ID),
		)
	})
	return out
}

// Load reads the store and starts every stored rule not yet known. A rule whose
// port is taken, or that cannot start for another reason, is kept in state
// conflict or error (Run retries it); only a failing store is an error.
func (m *PortProxy) Load(ctx context.Context) error {
	if m.cfg.Store == nil {
		return nil
	}
	rules, err := m.cfg.Store.Rules(ctx)
	if err != nil {
		return fmt.Errorf("load portproxy rules: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	for _, r := range rules {
		r = r.Normalize()
		if _, ok := m.rules[r.ID]; ok {
			continue
		}
		mr := &managed{rule: r}
		if err := r.Validate(); err != nil {
			mr.err = err
		} else {
			for _, o := range m.rules {
				if r.overlaps(o.rule) {
					mr.err = fmt.Errorf("%w: overlaps rule %q", ErrDuplicate, o.rule.ID)
					break
				}
			}
		}
		if mr.err == nil {
			mr.proxy, mr.err = m.start(r)
		}
		if mr.err != nil {
			m.log.Warn("portproxy rule not started", "id", r.ID, "err", mr.err)
		}
		m.rules[r.ID] = mr
	}
	return nil
}

// Run loads the stored rules, then retries the rules that could not start every
// RetryInterval until ctx ends; then it stops every proxy (Close) and returns.
func (m *PortProxy) Run(ctx context.Context) error {
	if err := m.Load(ctx); err != nil {
		return err
	}
	t := time.NewTicker(m.cfg.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return m.Close()
		case <-t.C:
			m.retry()
		}
	}
}

// retry tries once more to start the rules that are not active.
func (m *PortProxy) retry() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for _, mr := range m.rules {
		if mr.proxy != nil || errors.Is(mr.err, ErrInvalid) || errors.Is(mr.err, ErrDuplicate) {
			continue
		}
		p, err := m.start(mr.rule)
		if err != nil {
			mr.err = err
			continue
		}
		mr.proxy, mr.err = p, nil
		m.log.Info("portproxy rule started", "id", mr.rule.ID)
	}
}

// Close stops every proxy, cutting live connections; the rules stay stored.
func (m *PortProxy) Close() error {
	m.mu.Lock()
	m.closed = true
	var ps []*Proxy
	for _, mr := range m.rules {
		if mr.proxy != nil {
			ps = append(ps, mr.proxy)
			mr.proxy, mr.err = nil, ErrClosed
		}
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { _ = p.Close() })
	}
	wg.Wait()
	return nil
}

// status reports mr; the caller holds the PortProxy's lock.
func (mr *managed) status() RuleStatus {
	s := RuleStatus{Rule: mr.rule, State: StateActive}
	if mr.proxy != nil {
		s.Stats = mr.proxy.Stats()
	}
	if mr.err != nil {
		s.State = StateError
		if errors.Is(mr.err, ErrPortInUse) || errors.Is(mr.err, ErrDuplicate) {
			s.State = StateConflict
		}
		s.Error = mr.err.Error()
	}
	s.Allow = slices.Clone(s.Allow)
	return s
}

// newID returns a random rule id of 12 hex digits.
func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
