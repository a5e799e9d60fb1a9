//go:build !linux

package netmgr

import (
	"context"
	"log/slog"
)

// Firewall needs Linux's nf_tables; elsewhere OpenFirewall fails and no
// Firewall exists.
type Firewall struct{}

// OpenFirewall needs Linux's nf_tables; elsewhere it returns
// ErrFirewallUnavailable.
func OpenFirewall(ctx context.Context, log *slog.Logger) (*Firewall, error) {
	return nil, ErrFirewallUnavailable
}

// Apply returns ErrFirewallUnavailable.
func (f *Firewall) Apply(ctx context.Context, rules []FirewallRule) error {
	return ErrFirewallUnavailable
}

// Counters returns ErrFirewallUnavailable.
func (f *Firewall) Counters(ctx context.Context) (map[PortKey]PortCounter, error) {
	return nil, ErrFirewallUnavailable
}

// SetDistroCgroup does nothing.
func (f *Firewall) SetDistroCgroup(id uint64, level uint32) {}

// Close does nothing.
func (f *Firewall) Close() error { return nil }
