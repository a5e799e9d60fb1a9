package client

import (
	"context"
	"net/http"

	"github.com/subsys-dev/subsys/api"
)

// DashboardURL returns the browser login URL, the token in its fragment:
// treat it as a password. Only the token or the socket may ask.
func (c *Client) DashboardURL(ctx context.Context) (string, error) {
	d, err := get[api.Dashboard](ctx, c, "/dashboard", nil)
	return d.URL, err
}

// RotateToken replaces the API token and ends every browser session; the
// reply names the file that holds the new token. A client made with the old
// token (over TCP) needs the new one from there.
func (c *Client) RotateToken(ctx context.Context) (api.TokenRotation, error) {
	var r api.TokenRotation
	err := c.call(ctx, http.MethodPost, "/token/rotate", nil, nil, &r)
	return r, err
}

// Login trades the API token for a browser session (only a token client may).
func (c *Client) Login(ctx context.Context) (api.Login, error) {
	var l api.Login
	err := c.call(ctx, http.MethodPost, "/login", nil, nil, &l)
	return l, err
}

// Ticket returns a single-use ticket, good for 30 s, for one websocket, event
// stream or export download made by something that cannot send a header (a
// browser).
func (c *Client) Ticket(ctx context.Context) (api.Ticket, error) {
	var t api.Ticket
	err := c.call(ctx, http.MethodPost, "/tickets", nil, nil, &t)
	return t, err
}
