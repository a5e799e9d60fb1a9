package netmgr

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The ruleset, as nft(8) would list it for
//
//	{Proto: tcp, Port: 8080, Allow: [192.168.1.0/24]} and {Proto: udp, Port: 53, Drop: true}:
//
//	table inet subsys {
//		counter in-tcp-8080 {}  counter out-tcp-8080 {}
//		counter in-udp-53 {}    counter out-udp-53 {}
//		chain input {
//			type filter hook input priority filter; policy accept;
//			iifname != "lo" meta l4proto tcp th dport 8080 jump lan-tcp-8080
//			meta l4proto tcp th dport 8080 counter name "in-tcp-8080"
//			iifname != "lo" meta l4proto udp th dport 53 jump lan-udp-53
//			meta l4proto udp th dport 53 counter name "in-udp-53"
//		}
//		chain output {
//			type filter hook output priority filter; policy accept;
//			meta l4proto tcp th sport 8080 counter name "out-tcp-8080"
//			meta l4proto udp th sport 53 counter name "out-udp-53"
//		}
//		chain lan-tcp-8080 {
//			meta nfproto ipv4 ip saddr 192.168.1.0/24 return
//			drop
//		}
//		chain lan-udp-53 {
//			drop
//		}
//	}
//
// A UDP port's filter chain starts with two lookups that return for the
// answers to what the port sent off this host, which the output chain records
// in two dynamic sets with a minute's timeout:
//
//	set udp-peers4 { type ipv4_addr . inet_service . inet_service; flags dynamic,timeout; timeout 1m }
//	chain output { … oifname != "lo" udp sport 53 update @udp-peers4 { ip daddr . udp dport . udp sport } }
//	chain lan-udp-53 { ip saddr . udp sport . udp dport @udp-peers4 return; drop }
//
// With SetDistroCgroup, each counting rule of the input chain ends in
// "accept", and the chain ends in
//
//	iifname != "lo" tcp flags & (syn|ack) == syn socket cgroupv2 level 1 "subsys" drop
//
// so that a connection from the LAN to a port that a distro opened after the
// last Apply — one no rule names yet — is refused too, while the replies to
// the distro's own connections pass.
//
// A rule's filtering lives in a regular chain of its own that the input chain
// jumps to for non-loopback packets of the rule's port (and family): it ends
// in "return" for a packet that may pass and in "drop" for one that may not.
// drop is final in nf_tables — no later chain or table sees the packet — so
// it holds whatever other tables on the host do; "return" only resumes this
// table's input chain, where the counting rule comes next. So the counters
// count what this table lets through, never a packet it drops.
//
// Counters are named objects, one pair per port, so that flushing and
// rewriting the rules (Apply) leaves their values alone.

// firewallTable is the nftables table the Firewall owns, of family inet.
const firewallTable = "subsys"

// nftTimeout bounds one netlink exchange with nf_tables when ctx has no
// sooner deadline.
const nftTimeout = 5 * time.Second

// nftBuffer is the send and receive buffer size asked for each nf_tables
// socket. A batch goes in one sendmsg, which fails (EMSGSIZE) past the send
// buffer; the kernel answers every message of it (and echoes every new
// rule), which overflows (ENOBUFS) a default receive buffer at a hundred or
// so rules.
const nftBuffer = 8 << 20

// Firewall owns the nftables table "subsys" of family inet and nothing else:
// it filters and counts non-loopback traffic to distro-owned host ports. Its
// methods may be called from several goroutines.
type Firewall struct {
	log   *slog.Logger
	table *nftables.Table
	input *nftables.Chain
	// output counts; it never filters.
	output *nftables.Chain

	mu     sync.Mutex
	closed bool
	// applied: rules is what the kernel has. False before the first Apply
	// and after a failed one, when the kernel may have either.
	applied bool
	rules   []FirewallRule // normalized
	// chains and counters are the per-rule chains and the counter objects
	// that exist in the table, so that Apply adds and deletes only the
	// difference.
	chains   map[string]bool
	counters map[PortKey]bool
	// batches counts the netlink batches sent, for tests.
	batches int
	// distros, when set, is the cgroup (v2) that holds every distro's
	// processes: non-loopback packets to a socket of it are dropped unless a
	// rule of the packet's port let them through first (SetDistroCgroup).
	distros *cgroupMatch
	// peers4 and peers6 remember, for a minute, where a filtered UDP port
	// sent datagrams off this host (remote address . remote port . local
	// port), so that the answers pass the port's filter: what connection
	// tracking would do, for these ports only.
	peers4, peers6 *nftables.Set
}

// cgroupMatch names a cgroup as nftables' "socket cgroupv2 level" matches it.
type cgroupMatch struct {
	id    uint64
	level uint32
}

// OpenFirewall creates the table (or resets it, if a previous run left it)
// with a base chain on the input hook and one on the output hook, both at
// filter priority with policy accept. Errors wrap ErrFirewallUnavailable when
// nf_tables cannot be used (not root, no kernel support).
func OpenFirewall(ctx context.Context, log *slog.Logger) (*Firewall, error) {
	return openFirewall(ctx, log, firewallTable)
}

// openFirewall is OpenFirewall with another table name, which lets tests run
// beside a real server.
func openFirewall(ctx context.Context, log *slog.Logger, table string) (*Firewall, error) {
	if log == nil {
		log = slog.Default()
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	accept := nftables.ChainPolicyAccept
	f := &Firewall{
		log:   log,
		table: t,
		input: &nftables.Chain{
			Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
		},
		output: &nftables.Chain{
			Name: "output", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
		},
	}
	if err := f.reset(ctx); err != nil {
		return nil, fmt.Errorf("open firewall: %w", nftError(err, true))
	}
	log.Info("firewall table ready", "table", "inet "+table)
	return f, nil
}

// reset deletes the table if it exists and creates it again, empty but for
// the two base chains, in one batch.
func (f *Firewall) reset(ctx context.Context) error {
	c, done, err := nftConn(ctx)
	if err != nil {
		return err
	}
	defer done()
	// Adding an existing table is no error, so add-delete-add resets it
	// whether or not it was there.
	c.AddTable(f.table)
	c.DelTable(f.table)
	c.AddTable(f.table)
	c.AddChain(f.input)
	c.AddChain(f.output)
	f.peers4 = &nftables.Set{Table: f.table, Name: "udp-peers4", KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeInetService),
		Concatenation: true, Dynamic: true, HasTimeout: true, Timeout: udpPeerTimeout}
	f.peers6 = &nftables.Set{Table: f.table, Name: "udp-peers6", KeyType: nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService, nftables.TypeInetService),
		Concatenation: true, Dynamic: true, HasTimeout: true, Timeout: udpPeerTimeout}
	for _, set := range []*nftables.Set{f.peers4, f.peers6} {
		if err := c.AddSet(set, nil); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return err
	}
	f.batches++
	f.applied, f.rules = false, nil
	f.chains, f.counters = map[string]bool{}, map[PortKey]bool{}
	return nil
}

// Apply replaces every rule with rules, atomically: one netlink batch flushes
// the chains and adds the new rules, so no packet ever sees half of each. The
// counters of a port that stays in the rules keep counting; those of a port
// that leaves them are deleted (a port that comes back starts from zero).
// Apply with the rules it has already applied sends nothing. Invalid rules
// wrap ErrInvalid. If the table was deleted behind its back, Apply creates it
// again.
func (f *Firewall) Apply(ctx context.Context, rules []FirewallRule) error {
	norm, err := normalizeRules(rules)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("apply firewall rules: %w", ErrClosed)
	}
	if f.applied && equalRules(norm, f.rules) {
		return nil
	}
	f.applied = false
	err = f.apply(ctx, norm)
	if errors.Is(err, unix.ENOENT) {
		// The table, one of its chains or counters is gone: someone ran
		// "nft flush ruleset" or deleted the table. Start over.
		f.log.Warn("firewall table changed behind our back; creating it again", "table", "inet "+f.table.Name, "err", err)
		if err = f.reset(ctx); err == nil {
			err = f.apply(ctx, norm)
		}
	}
	if err != nil {
		return fmt.Errorf("apply firewall rules: %w", nftError(err, false))
	}
	f.applied, f.rules = true, norm
	f.log.Debug("firewall rules applied", "rules", len(norm))
	return nil
}

// apply sends the batch that turns the table's state (f.chains, f.counters)
// into rules.
func (f *Firewall) apply(ctx context.Context, rules []FirewallRule) error {
	chains := make(map[string]bool)
	counters := make(map[PortKey]bool)
	for _, r := range rules {
		counters[r.key()] = true
		if filterExprs(r) != nil {
			chains[ruleChain(r)] = true
		}
	}

	c, done, err := nftConn(ctx)
	if err != nil {
		return err
	}
	defer done()
	// Flushing first drops every reference to the chains and counters about
	// to be deleted, which the kernel checks within the batch.
	c.FlushTable(f.table)
	if udpFilterChanged(f.rules, rules) {
		// A UDP port's filter changed: the hosts it was answering may be
		// shut out now, so they must not pass as its peers either. (A port
		// that comes or goes leaves the others' peers alone.)
		c.FlushSet(f.peers4)
		c.FlushSet(f.peers6)
	}
	for _, name := range slices.Sorted(maps.Keys(f.chains)) {
		if !chains[name] {
			c.DelChain(&nftables.Chain{Name: name, Table: f.table})
		}
	}
	for k := range f.counters {
		if !counters[k] {
			c.DeleteObject(f.counterObj(k, "in"))
			c.DeleteObject(f.counterObj(k, "out"))
		}
	}
	for k := range counters {
		if !f.counters[k] {
			c.AddObj(f.counterObj(k, "in"))
			c.AddObj(f.counterObj(k, "out"))
		}
	}
	for _, r := range rules {
		key := r.key()
		match := slices.Concat(matchFamily(r.Family), matchL4(r.Proto))
		if filter := filterExprs(r); filter != nil {
			name := ruleChain(r)
			chain := &nftables.Chain{Name: name, Table: f.table}
			if !f.chains[name] {
				c.AddChain(chain)
			}
			if r.Proto == UDP {
				// Answers to what the port sent pass; remember whom it sends to.
				for _, exprs := range f.udpPeerRules(r.Port) {
					c.AddRule(&nftables.Rule{Table: f.table, Chain: chain, Exprs: exprs})
				}
				for _, exprs := range f.udpRecordRules(r.Port) {
					c.AddRule(&nftables.Rule{Table: f.table, Chain: f.output, Exprs: exprs})
				}
			}
			for _, exprs := range filter {
				c.AddRule(&nftables.Rule{Table: f.table, Chain: chain, Exprs: exprs})
			}
			var owner []expr.Any
			if f.distros != nil {
				// Only packets for a distro's socket: a host program on
				// the same port number (on another address, or sharing it
				// with SO_REUSEADDR) is not the distro's to filter.
				owner = matchCgroup(*f.distros)
			}
			c.AddRule(&nftables.Rule{Table: f.table, Chain: f.input, Exprs: slices.Concat(
				matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, "lo"),
				match, matchPort(2, r.Port), owner,
				[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: name}},
			)})
		}
		var onLo, outLo []expr.Any
		if r.LoopbackOnlyCount {
			onLo = matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, "lo")
			outLo = matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, "lo")
		}
		var verdict []expr.Any
		if f.distros != nil {
			// Let the port's packets that the rule passed skip the
			// distro cgroup's drop below.
			verdict = []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
		}
		c.AddRule(&nftables.Rule{Table: f.table, Chain: f.input, Exprs: slices.Concat(
			onLo, match, matchPort(2, r.Port), countInto(counterName(key, "in")), verdict,
		)})
		c.AddRule(&nftables.Rule{Table: f.table, Chain: f.output, Exprs: slices.Concat(
			outLo, match, matchPort(0, r.Port), countInto(counterName(key, "out")),
		)})
	}
	if f.distros != nil {
		// Only connection requests: the replies a distro's own outbound
		// connections get (SYN-ACK and after) reach its sockets too, and must
		// pass. UDP has no such mark without connection tracking, so a new
		// UDP port waits for the scan's per-port rule.
		c.AddRule(&nftables.Rule{Table: f.table, Chain: f.input, Exprs: slices.Concat(
			matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, "lo"),
			matchL4(TCP), matchSYN(),
			matchCgroup(*f.distros),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}},
		)})
	}
	if err := c.Flush(); err != nil {
		return err
	}
	f.batches++
	f.chains, f.counters = chains, counters
	return nil
}

// SetDistroCgroup makes the firewall drop every TCP connection request from
// the LAN to a socket held by a process of the cgroup (v2) with that id, at
// that depth of the hierarchy (1 for a child of the root), unless the port has
// a rule that lets it through: a TCP port a distro opens is off the LAN from
// its first packet, before any scan has seen it. The next Apply installs it.
func (f *Firewall) SetDistroCgroup(id uint64, level uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.distros = &cgroupMatch{id: id, level: level}
	f.applied = false
}

// Counters reads the byte counters of every port in the current rules.
func (f *Firewall) Counters(ctx context.Context) (map[PortKey]PortCounter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("read firewall counters: %w", ErrClosed)
	}
	c, done, err := nftConn(ctx)
	if err != nil {
		return nil, fmt.Errorf("read firewall counters: %w", nftError(err, false))
	}
	defer done()
	objs, err := c.GetNamedObjects(f.table)
	if err != nil {
		// The library formats this error with %v: it cannot be unwrapped.
		// Most likely the table is gone ("nft flush ruleset", a reload of
		// the host's nftables service): the next Apply must send the rules
		// again, and so create the table anew, even if they are unchanged.
		f.applied = false
		return nil, fmt.Errorf("read firewall counters: %w", err)
	}
	out := make(map[PortKey]PortCounter, len(f.counters))
	for k := range f.counters {
		out[k] = PortCounter{}
	}
	for _, o := range objs {
		no, ok := o.(*nftables.NamedObj)
		if !ok || no.Type != nftables.ObjTypeCounter {
			continue
		}
		ctr, ok := no.Obj.(*expr.Counter)
		if !ok {
			continue
		}
		dir, key, ok := parseCounterName(no.Name)
		if !ok || !f.counters[key] {
			continue
		}
		pc := out[key]
		if dir == "in" {
			pc.BytesIn = ctr.Bytes
		} else {
			pc.BytesOut = ctr.Bytes
		}
		out[key] = pc
	}
	return out, nil
}

// Close deletes the table, and with it every rule and counter. Close of a
// closed Firewall does nothing.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), nftTimeout)
	defer cancel()
	c, done, err := nftConn(ctx)
	if err != nil {
		return fmt.Errorf("close firewall: %w", nftError(err, false))
	}
	defer done()
	c.DelTable(f.table)
	err = c.Flush()
	f.batches++
	switch {
	case errors.Is(err, unix.ENOENT):
		f.log.Debug("firewall table gone already", "table", "inet "+f.table.Name)
	case err != nil:
		return fmt.Errorf("close firewall: delete table inet %s: %w", f.table.Name, nftError(err, false))
	default:
		f.log.Info("firewall table deleted", "table", "inet "+f.table.Name)
	}
	return nil
}

// nftConn returns a connection to nf_tables whose sockets (one per
// operation: the library dials on demand) give up at ctx's deadline, after
// nftTimeout, or when ctx is cancelled. done releases the cancellation hook.
func nftConn(ctx context.Context) (c *nftables.Conn, done func(), err error) {
	deadline := time.Now().Add(nftTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var (
		mu        sync.Mutex
		socks     []*netlink.Conn
		cancelled bool
	)
	opt := func(nl *netlink.Conn) error {
		mu.Lock()
		defer mu.Unlock()
		if cancelled {
			return ctx.Err()
		}
		socks = append(socks, nl)
		setBuffers(nl, nftBuffer)
		return nl.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		cancelled = true
		for _, s := range socks {
			_ = s.SetDeadline(time.Unix(1, 0)) // wakes a blocked receive; closed sockets just fail
		}
	})
	c, err = nftables.New(nftables.WithSockOptions(opt))
	if err != nil {
		stop()
		return nil, nil, err
	}
	return c, func() { stop() }, nil
}

// setBuffers makes nl's send and receive buffers n bytes, past
// net.core.[rw]mem_max when the caller may (it needs CAP_NET_ADMIN for
// nf_tables anyway). A failure leaves the defaults, which serve small rule
// sets.
func setBuffers(nl *netlink.Conn, n int) {
	var rerr, werr error = unix.EINVAL, unix.EINVAL
	if raw, err := nl.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			rerr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
			werr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n)
		})
	}
	if rerr != nil {
		_ = nl.SetReadBuffer(n)
	}
	if werr != nil {
		_ = nl.SetWriteBuffer(n)
	}
}

// nftError marks err as ErrFirewallUnavailable when it says nf_tables cannot
// be used at all. ENOENT counts only when opening: the nfnetlink subsystem is
// missing then, while later it means the table was deleted.
func nftError(err error, opening bool) error {
	for _, e := range []error{unix.EPERM, unix.EACCES, unix.EAFNOSUPPORT, unix.EOPNOTSUPP, unix.EPROTONOSUPPORT} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", ErrFirewallUnavailable, err)
		}
	}
	if opening && errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %w", ErrFirewallUnavailable, err)
	}
	return err
}

// ruleChain names the regular chain holding r's filter: "lan-tcp-8080", with
// "-v4" or "-v6" after it for a rule of one family.
func ruleChain(r FirewallRule) string {
	name := fmt.Sprintf("lan-%s-%d", r.Proto, r.Port)
	if r.Family != 0 {
		name += fmt.Sprintf("-v%d", r.Family)
	}
	return name
}

// counterName names a port's counter object: "in-tcp-8080", "out-tcp-8080".
func counterName(k PortKey, dir string) string {
	return fmt.Sprintf("%s-%s-%d", dir, k.Proto, k.Port)
}

// parseCounterName reverses counterName.
func parseCounterName(s string) (dir string, k PortKey, ok bool) {
	dir, rest, ok := strings.Cut(s, "-")
	if !ok || dir != "in" && dir != "out" {
		return "", k, false
	}
	var port uint16
	if _, err := fmt.Sscanf(rest, "tcp-%d", &port); err == nil && counterName(PortKey{TCP, port}, dir) == s {
		return dir, PortKey{TCP, port}, true
	}
	if _, err := fmt.Sscanf(rest, "udp-%d", &port); err == nil && counterName(PortKey{UDP, port}, dir) == s {
		return dir, PortKey{UDP, port}, true
	}
	return "", k, false
}

// counterObj is the named counter of port k in direction dir ("in", "out").
func (f *Firewall) counterObj(k PortKey, dir string) *nftables.NamedObj {
	return &nftables.NamedObj{Table: f.table, Name: counterName(k, dir), Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}}
}

// filterExprs returns the rules of r's chain, each a list of expressions, or
// nil when r lets every packet through (no chain, no jump).
func filterExprs(r FirewallRule) [][]expr.Any {
	drop := []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
	if r.Drop {
		return [][]expr.Any{drop}
	}
	var rules [][]expr.Any
	if r.Dest.IsValid() {
		// The other family is "another destination" too.
		fam, other := 4, 6
		if r.Dest.Is6() {
			fam, other = 6, 4
		}
		if r.Family == 0 {
			rules = append(rules, slices.Concat(matchFamily(other), drop))
		}
		rules = append(rules, slices.Concat(matchFamily(fam), matchAddr(false, r.Dest, expr.CmpOpNeq), drop))
	}
	if len(r.Allow) > 0 {
		for _, p := range r.Allow {
			fam := 4
			if p.Addr().Is6() {
				fam = 6
			}
			rules = append(rules, slices.Concat(
				matchFamily(fam), matchPrefix(p),
				[]expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}},
			))
		}
		rules = append(rules, drop)
	}
	return rules
}

// matchFamily matches IPv4 (4) or IPv6 (6) packets: meta nfproto; nothing for 0.
func matchFamily(fam int) []expr.Any {
	var p byte
	switch fam {
	case 4:
		p = unix.NFPROTO_IPV4
	case 6:
		p = unix.NFPROTO_IPV6
	default:
		return nil
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// matchL4 matches the transport protocol: meta l4proto tcp|udp.
func matchL4(proto string) []expr.Any {
	p := byte(unix.IPPROTO_TCP)
	if proto == UDP {
		p = unix.IPPROTO_UDP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// matchPort matches the transport header's port at offset 0 (source: th
// sport) or 2 (destination: th dport). It must follow matchL4: the offsets
// are those of TCP and UDP.
func matchPort(offset uint32, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(port >> 8), byte(port)}},
	}
}

// matchIfname compares the input (MetaKeyIIFNAME) or output (MetaKeyOIFNAME)
// interface name with name.
func matchIfname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: b},
	}
}

// matchAddr compares the source (src) or destination address of the IP
// header with a; it must follow matchFamily of a's family.
func matchAddr(src bool, a netip.Addr, op expr.CmpOp) []expr.Any {
	off, data := addrField(src, a)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(data))},
		&expr.Cmp{Op: op, Register: 1, Data: data},
	}
}

// matchPrefix matches a source address in p (masked), with a family match
// of its own.
func matchPrefix(p netip.Prefix) []expr.Any {
	off, data := addrField(true, p.Addr())
	if p.Bits() == 0 {
		return nil // the whole family
	}
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(data))}}
	if p.Bits() < len(data)*8 {
		mask := make([]byte, len(data))
		for i := range p.Bits() {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(data)), Mask: mask, Xor: make([]byte, len(data))})
	}
	return append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data})
}

// addrField returns the offset of the source (src) or destination address in
// the IP header of a's family, and a's bytes.
func addrField(src bool, a netip.Addr) (uint32, []byte) {
	if a.Is4() {
		b := a.As4()
		if src {
			return 12, b[:]
		}
		return 16, b[:]
	}
	b := a.As16()
	if src {
		return 8, b[:]
	}
	return 24, b[:]
}

// countInto adds the packet to the named counter object.
// udpFilterChanged reports whether a UDP port that is in both old and next
// has another rule in next.
func udpFilterChanged(old, next []FirewallRule) bool {
	was := map[PortKey][]FirewallRule{}
	for _, r := range old {
		if r.Proto == UDP {
			was[r.key()] = append(was[r.key()], r)
		}
	}
	is := map[PortKey][]FirewallRule{}
	for _, r := range next {
		if r.Proto == UDP {
			is[r.key()] = append(is[r.key()], r)
		}
	}
	for k, rs := range is {
		if prev, ok := was[k]; ok && !equalRules(prev, rs) {
			return true
		}
	}
	return false
}

// udpPeerTimeout is how long a filtered UDP port may hear back from a LAN host
// after it last sent to it.
const udpPeerTimeout = time.Minute

// Registers for the peers sets' keys, remote address . remote port . local
// port: the address in NFT_REG_1 (four 32-bit registers from NFT_REG32_00),
// each port in a 32-bit register after it.
const (
	regKey   = 1 // NFT_REG_1
	regPort4 = unix.NFT_REG32_01
	regPort6 = unix.NFT_REG32_04
)

// udpRecordRules, in the output chain, add the destination address and port
// of each datagram that UDP port sends off this host to the peers sets.
func (f *Firewall) udpRecordRules(port uint16) [][]expr.Any {
	base := slices.Concat(matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, "lo"), matchL4(UDP), matchPort(0, port))
	return [][]expr.Any{
		slices.Concat(base, matchFamily(4), []expr.Any{
			&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Payload{DestRegister: regPort4, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Payload{DestRegister: regPort4 + 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Dynset{SrcRegKey: regKey, SetName: f.peers4.Name, SetID: f.peers4.ID, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: udpPeerTimeout},
		}),
		slices.Concat(base, matchFamily(6), []expr.Any{
			&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			&expr.Payload{DestRegister: regPort6, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Payload{DestRegister: regPort6 + 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Dynset{SrcRegKey: regKey, SetName: f.peers6.Name, SetID: f.peers6.ID, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: udpPeerTimeout},
		}),
	}
}

// udpPeerRules, first in a UDP port's filter chain, let through datagrams from
// an address and port the port has sent to within udpPeerTimeout: the answers a program
// gets on an unconnected socket (a resolver, an NTP client), which sock_diag
// cannot tell from a server's.
func (f *Firewall) udpPeerRules(port uint16) [][]expr.Any {
	ret := []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}
	return [][]expr.Any{
		slices.Concat(matchFamily(4), []expr.Any{
			&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Payload{DestRegister: regPort4, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Payload{DestRegister: regPort4 + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: regKey, SetName: f.peers4.Name, SetID: f.peers4.ID},
		}, ret),
		slices.Concat(matchFamily(6), []expr.Any{
			&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
			&expr.Payload{DestRegister: regPort6, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Payload{DestRegister: regPort6 + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: regKey, SetName: f.peers6.Name, SetID: f.peers6.ID},
		}, ret),
	}
}

// matchSYN matches a TCP segment that opens a connection: SYN set, ACK not.
// It must follow matchL4(TCP).
func matchSYN() []expr.Any {
	const syn, ack = 0x02, 0x10
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{syn | ack}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{syn}},
	}
}

// matchCgroup matches packets whose socket (a listener or an established
// socket; the lookup nf_tables does on input) belongs to cgroup m or a cgroup
// below it.
func matchCgroup(m cgroupMatch) []expr.Any {
	id := make([]byte, 8)
	binary.NativeEndian.PutUint64(id, m.id)
	return []expr.Any{
		&expr.Socket{Key: expr.SocketKeyCgroupv2, Level: m.level, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: id},
	}
}

func countInto(name string) []expr.Any {
	return []expr.Any{&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: name}}
}
