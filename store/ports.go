package store

import (
	"context"
	"fmt"
	"strings"
)

// PortSetting is one row of port_settings: how one port of a distro is exposed.
// Addresses and prefixes are kept as text; netmgr parses and validates them.
type PortSetting struct {
	// DistroID is the distro's stable id.
	DistroID string
	// Proto is "tcp" or "udp"; Port is 1-65535.
	Proto string
	Port  int
	// LAN: the port is reachable from other hosts.
	LAN bool
	// Allow lists the source prefixes that may connect from the LAN; empty allows any.
	Allow []string
	// LANAddress is the one host address the port is exposed on; empty means all.
	LANAddress string
	// Localhost: the port is reachable on host loopback (version 2).
	Localhost bool
}

// PortSettings returns every stored port setting, ordered by distro, protocol and port.
func (db *DB) PortSettings(ctx context.Context) ([]PortSetting, error) {
	rows, err := db.sql.QueryContext(ctx, "SELECT distro_id, proto, port, lan, allow, lan_address, localhost FROM port_settings ORDER BY distro_id, proto, port")
	if err != nil {
		return nil, fmt.Errorf("read port settings: %w", err)
	}
	defer rows.Close()
	var out []PortSetting
	for rows.Next() {
		var p PortSetting
		var allow string
		if err := rows.Scan(&p.DistroID, &p.Proto, &p.Port, &p.LAN, &allow, &p.LANAddress, &p.Localhost); err != nil {
			return nil, fmt.Errorf("read port settings: %w", err)
		}
		p.Allow = splitList(allow)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read port settings: %w", err)
	}
	return out, nil
}

// PutPortSetting inserts p or replaces the setting of the same distro, protocol
// and port. A distro id that does not exist gives an error (foreign key).
func (db *DB) PutPortSetting(ctx context.Context, p PortSetting) error {
	_, err := db.sql.ExecContext(ctx, `INSERT INTO port_settings (distro_id, proto, port, lan, allow, lan_address, localhost, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (distro_id, proto, port) DO UPDATE SET lan = excluded.lan, allow = excluded.allow,
    lan_address = excluded.lan_address, localhost = excluded.localhost, updated_at = excluded.updated_at`,
		p.DistroID, p.Proto, p.Port, p.LAN, strings.Join(p.Allow, ","), p.LANAddress, p.Localhost, now())
	if err != nil {
		return fmt.Errorf("store port setting %s/%s/%d: %w", p.DistroID, p.Proto, p.Port, err)
	}
	return nil
}

// PortProxyRule is one row of portproxy_rules.
type PortProxyRule struct {
	ID             string
	Proto          string
	ListenAddress  string
	ListenPort     int
	ConnectAddress string
	ConnectPort    int
	Allow          []string
}

// PortProxyRules returns every stored rule, oldest first.
func (db *DB) PortProxyRules(ctx context.Context) ([]PortProxyRule, error) {
	rows, err := db.sql.QueryContext(ctx, "SELECT id, proto, listen_address, listen_port, connect_address, connect_port, allow FROM portproxy_rules ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("read portproxy rules: %w", err)
	}
	defer rows.Close()
	var out []PortProxyRule
	for rows.Next() {
		var r PortProxyRule
		var allow string
		if err := rows.Scan(&r.ID, &r.Proto, &r.ListenAddress, &r.ListenPort, &r.ConnectAddress, &r.ConnectPort, &allow); err != nil {
			return nil, fmt.Errorf("read portproxy rules: %w", err)
		}
		r.Allow = splitList(allow)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read portproxy rules: %w", err)
	}
	return out, nil
}

// PutPortProxyRule inserts r or replaces the rule with its id.
func (db *DB) PutPortProxyRule(ctx context.Context, r PortProxyRule) error {
	_, err := db.sql.ExecContext(ctx, `INSERT INTO portproxy_rules (id, proto, listen_address, listen_port, connect_address, connect_port, allow, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET proto = excluded.proto, listen_address = excluded.listen_address,
    listen_port = excluded.listen_port, connect_address = excluded.connect_address,
    connect_port = excluded.connect_port, allow = excluded.allow`,
		r.ID, r.Proto, r.ListenAddress, r.ListenPort, r.ConnectAddress, r.ConnectPort, strings.Join(r.Allow, ","), now())
	if err != nil {
		return fmt.Errorf("store portproxy rule %s: %w", r.ID, err)
	}
	return nil
}

// DeletePortProxyRule removes the rule with that id; a missing one is not an error.
func (db *DB) DeletePortProxyRule(ctx context.Context, id string) error {
	if _, err := db.sql.ExecContext(ctx, "DELETE FROM portproxy_rules WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete portproxy rule %s: %w", id, err)
	}
	return nil
}

// splitList splits a comma-separated column; the empty string is an empty list.
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
