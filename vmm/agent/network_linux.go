package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

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
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := os.WriteFile("/etc/resolv.conf", cfg.resolvConf(), 0o644); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
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
