//go:build !linux && !windows

package server

import (
	"errors"
	"net"
)

// peerCred is not available here: a unix-socket peer is refused.
func peerCred(*net.UnixConn) (Peer, error) {
	return Peer{}, errors.New("peer credentials are not supported on this system")
}
