//go:build !linux

package testutil

import (
	"errors"
	"net"
)

// NewSocketPair needs unix sockets; here it returns errors.ErrUnsupported.
func NewSocketPair() (net.Conn, net.Conn, error) {
	return nil, nil, errors.ErrUnsupported
}
