//go:build !windows

package client

// systemServer: a user who runs no server of their own may reach root's
// (SocketPath), whose directory only root can create.
const systemServer = true

// platformDataDir has no say here: DefaultDataDir's root and XDG rules
// apply.
func platformDataDir() (string, bool) { return "", false }
