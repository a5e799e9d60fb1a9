package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/subsys-dev/subsys/api"
)

// Ports returns the ports a distro's processes listen on, with how each is
// exposed and its counters, as the server's last scan (at most half a second
// old) found them.
func (c *Client) Ports(ctx context.Context, distro string) ([]api.Port, error) {
	return get[[]api.Port](ctx, c, distroPath(distro)+"/ports", nil)
}

// SetPort chooses who can reach a port of a distro (proto api.TCP or
// api.UDP): fields u leaves nil stay as they are. The server applies the
// setting before it answers, and keeps it for whenever the port listens.
func (c *Client) SetPort(ctx context.Context, distro, proto string, port uint16, u api.PortUpdate) (api.Port, error) {
	var p api.Port
	path := distroPath(distro) + "/ports/" + url.PathEscape(strings.ToLower(proto)) + "/" + strconv.Itoa(int(port))
	err := c.call(ctx, http.MethodPut, path, nil, u, &p)
	return p, err
}

// PortProxyRules returns the portproxy rules with their state and counters.
func (c *Client) PortProxyRules(ctx context.Context) ([]api.Rule, error) {
	return get[[]api.Rule](ctx, c, "/portproxy", nil)
}

// PortProxyRule returns one portproxy rule.
func (c *Client) PortProxyRule(ctx context.Context, id string) (api.Rule, error) {
	return get[api.Rule](ctx, c, "/portproxy/"+url.PathEscape(id), nil)
}

// AddPortProxyRule adds a portproxy rule and returns it, listening. A listen
// address that is taken is an *api.Error with code api.CodePortInUse, a rule
// that overlaps another one with api.CodeDuplicateRule.
func (c *Client) AddPortProxyRule(ctx context.Context, r api.RuleRequest) (api.Rule, error) {
	var out api.Rule
	err := c.call(ctx, http.MethodPost, "/portproxy", nil, r, &out)
	return out, err
}

// DeletePortProxyRule deletes a rule: its listener closes and its live
// connections are cut.
func (c *Client) DeletePortProxyRule(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/portproxy/"+url.PathEscape(id), nil, nil, nil)
}
