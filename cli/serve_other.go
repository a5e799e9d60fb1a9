//go:build !linux && !windows

package cli

import (
	"context"
	"errors"
	"log/slog"
	"net"
)

// errServeUnsupported: the server's backends exist for Linux and Windows
// only; the client verbs work anywhere.
var errServeUnsupported = errors.New("subsys serve needs Linux or Windows (the client commands work here with SUBSYS_URL)")

func newPlatform(context.Context, platformConfig) (*platform, error) {
	return nil, errServeUnsupported
}

func prepareDataDir(string, *slog.Logger) error { return errServeUnsupported }

func listenSocket(string, *slog.Logger) (net.Listener, error) {
	return nil, errServeUnsupported
}
