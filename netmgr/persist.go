package netmgr

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/subsys-dev/subsys/store"
)

// DBStore keeps portproxy rules (RuleStore) and per-port settings (PortStore)
// in subsys's SQLite database.
type DBStore struct {
	// DB is the open database.
	DB *store.DB
}

// Rules returns every stored portproxy rule. A row that no longer parses is
// returned with what could be read, so that the PortProxy reports it in state
// error instead of hiding it.
func (s DBStore) Rules(ctx context.Context) ([]Rule, error) {
	rows, err := s.DB.PortProxyRules(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Rule, 0, len(rows))
	for _, r := range rows {
		la, _ := netip.ParseAddr(r.ListenAddress)
		rule := Rule{
			ID: r.ID, Proto: r.Proto, ListenAddress: la, ListenPort: uint16(r.ListenPort),
			ConnectAddress: r.ConnectAddress, ConnectPort: uint16(r.ConnectPort),
		}
		for _, a := range r.Allow {
			p, _ := netip.ParsePrefix(a)
			rule.Allow = append(rule.Allow, p)
		}
		out = append(out, rule)
	}
	return out, nil
}

// PutRule stores r.
func (s DBStore) PutRule(ctx context.Context, r Rule) error {
	row := store.PortProxyRule{
		ID: r.ID, Proto: r.Proto, ListenAddress: r.ListenAddress.String(), ListenPort: int(r.ListenPort),
		ConnectAddress: r.ConnectAddress, ConnectPort: int(r.ConnectPort),
	}
	for _, p := range r.Allow {
		row.Allow = append(row.Allow, p.String())
	}
	return s.DB.PutPortProxyRule(ctx, row)
}

// DeleteRule removes the rule with that id.
func (s DBStore) DeleteRule(ctx context.Context, id string) error {
	return s.DB.DeletePortProxyRule(ctx, id)
}

// PortSettings returns every stored port setting by distro id. Rows that no
// longer parse are skipped with their bad fields left at the default.
func (s DBStore) PortSettings(ctx context.Context) (map[string]map[PortKey]PortSetting, error) {
	rows, err := s.DB.PortSettings(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]map[PortKey]PortSetting{}
	for _, r := range rows {
		set := PortSetting{LAN: r.LAN, Localhost: r.Localhost}
		if a, err := netip.ParseAddr(r.LANAddress); err == nil {
			set.LANAddress = a
		}
		set.Allow, _ = ParsePrefixes(r.Allow)
		if out[r.DistroID] == nil {
			out[r.DistroID] = map[PortKey]PortSetting{}
		}
		out[r.DistroID][PortKey{r.Proto, uint16(r.Port)}] = set
	}
	return out, nil
}

// PutPortSetting stores the setting of one port of a distro.
func (s DBStore) PutPortSetting(ctx context.Context, distroID string, k PortKey, set PortSetting) error {
	row := store.PortSetting{
		DistroID: distroID, Proto: k.Proto, Port: int(k.Port), LAN: set.LAN,
		LANAddress: addrString(set.LANAddress), Localhost: set.Localhost,
	}
	for _, p := range set.Allow {
		row.Allow = append(row.Allow, p.String())
	}
	if err := s.DB.PutPortSetting(ctx, row); err != nil {
		return fmt.Errorf("port setting: %w", err)
	}
	return nil
}
