package api

import "time"

// Login is the reply of POST /login: a browser session traded for the token.
type Login struct {
	// Session is sent as Authorization: Bearer, like the token.
	Session string `json:"session"`
	// IdleTimeoutS: the session ends after this many seconds unused.
	IdleTimeoutS int `json:"idle_timeout_s"`
}

// Ticket is the reply of POST /tickets: a credential good for one websocket,
// event stream or export download, which a browser cannot send a header to.
type Ticket struct {
	// Ticket goes in the URL as ?ticket=.
	Ticket string `json:"ticket"`
	// ExpiresAt is when an unused ticket stops working (30 s on).
	ExpiresAt time.Time `json:"expires_at"`
}

// Dashboard is the reply of GET /dashboard.
type Dashboard struct {
	// URL is the browser login URL, the token in its fragment: treat it as a
	// password.
	URL string `json:"url"`
}

// TokenRotation is the reply of POST /token/rotate.
type TokenRotation struct {
	// TokenFile is where the new token is.
	TokenFile string `json:"token_file"`
}
