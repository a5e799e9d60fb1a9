package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"
)

// configureNetwork sets the VM's interface up with cfg's address and default
// route (rtnetlink), and writes the VM's /etc/resolv.conf. IPv6 addresses
// come by themselves: the kernel accepts router advertisements on the
// interface once it is up. Doing it again is harmless (existing address and
// route are kept).
func configureNetwork(cfg NetworkConfig) error {
	if err := cfg.check(); err != nil {
		return err
	}
	mac, _ := net.ParseMAC(cfg.MAC)
	prefix := netip.MustParsePrefix(cfg.Address4)
	gw := netip.MustParseAddr(cfg.Gateway4)
	conn, err := rtnetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("network: rtnetlink: %w", err)
	}
	defer conn.Close()
	link, err := findLink(conn, mac)
	if err != nil {
		return err
	}
	// The network is QEMU's alone, with no other host to collide with:
	// skipping duplicate address detection gives the IPv6 address (SLAAC)
	// at once rather than a second or more later.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+link.Attributes.Name+"/accept_dad", []byte("0"), 0o644); err != nil {
		slog.Warn("network: cannot turn duplicate address detection off", "err", err)
	}
	if err := conn.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Type: link.Type, Index: link.Index,
		Flags: unix.IFF_UP, Change: unix.IFF_UP}); err != nil {
		return fmt.Errorf("network: set %s up: %w", link.Attributes.Name, err)
	}
	ip := net.IP(prefix.Addr().AsSlice())
	err = conn.Address.New(&rtnetlink.AddressMessage{
		Family: unix.AF_INET, PrefixLength: uint8(prefix.Bits()), Index: link.Index,
		Attributes: &rtnetlink.AddressAttributes{Address: ip, Local: ip},
	})
	if err != nil && !errors.Is(err, unix.EEXIST) && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("network: address %s: %w", prefix, err)
	}
	err = conn.Route.Add(&rtnetlink.RouteMessage{
		Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC,
		Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
		Attributes: rtnetlink.RouteAttributes{Gateway: net.IP(gw.AsSlice()), OutIface: link.Index},
	})
	if err != nil && !errors.Is(err, unix.EEXIST) && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("network: default route via %s: %w", gw, err)
	}
	// Distros start right after this: wait (briefly) for the router
	// advertisement's IPv6 address, so their first command has it.
	if !waitIPv6(conn, link.Index, ipv6Wait) {
		slog.Warn("network: no IPv6 address from router advertisements yet", "waited", ipv6Wait)
	}
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := os.WriteFile("/etc/resolv.conf", cfg.resolvConf(), 0o644); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// ipv6Wait bounds configureNetwork's wait for SLAAC.
const ipv6Wait = 5 * time.Second

// waitIPv6 waits up to d for a global (not link-local) IPv6 address on the
// interface, and reports whether one came. The kernel gives no event
// short of a netlink subscription; a short poll is enough once per boot.
func waitIPv6(conn *rtnetlink.Conn, index uint32, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		msgs, err := conn.Address.List()
		if err == nil {
			for _, m := range msgs {
				if m.Index != index || m.Family != unix.AF_INET6 || m.Attributes == nil {
					continue
				}
				if a, ok := netip.AddrFromSlice(m.Attributes.Address); ok && !a.IsLinkLocalUnicast() && !a.IsLoopback() {
					return true
				}
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// findLink returns the interface with hardware address mac.
func findLink(conn *rtnetlink.Conn, mac net.HardwareAddr) (rtnetlink.LinkMessage, error) {
	links, err := conn.Link.List()
	if err != nil {
		return rtnetlink.LinkMessage{}, fmt.Errorf("network: list links: %w", err)
	}
	for _, l := range links {
		if l.Attributes != nil && slices.Equal(l.Attributes.Address, mac) {
			return l, nil
		}
	}
	return rtnetlink.LinkMessage{}, fmt.Errorf("network: no interface with address %s (is virtio_net loaded?)", mac)
}

// networkAddresses lists the VM's addresses but loopback and link-local
// ones, as prefixes ("10.0.2.15/24").
func networkAddresses() ([]string, error) {
	conn, err := rtnetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("network: rtnetlink: %w", err)
	}
	defer conn.Close()
	msgs, err := conn.Address.List()
	if err != nil {
		return nil, fmt.Errorf("network: list addresses: %w", err)
	}
	var out []string
	for _, m := range msgs {
		if m.Attributes == nil {
			continue
		}
		a, ok := netip.AddrFromSlice(m.Attributes.Address)
		if !ok {
			continue
		}
		a = a.Unmap()
		if a.IsLoopback() || a.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, netip.PrefixFrom(a, int(m.PrefixLength)).String())
	}
	slices.Sort(out)
	return out, nil
}
