//go:build !linux

package netmgr

import (
	"errors"
	"net"
)

// enablePktinfo is not implemented here: replies to a wildcard UDP listener leave
// from the address the routing table picks.
func enablePktinfo(c *net.UDPConn, v6 bool) error { return errors.ErrUnsupported }

func replyOOB(oob []byte, v6 bool) []byte { return nil }
