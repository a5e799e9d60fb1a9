package netmgr

import (
	"encoding/binary"
	"net"

	"golang.org/x/sys/unix"
)

// enablePktinfo asks the kernel to report, with each datagram, the local address
// it was sent to (IP_PKTINFO, IPV6_RECVPKTINFO).
func enablePktinfo(c *net.UDPConn, v6 bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// replyOOB turns the control messages of a received datagram into the control
// message that sends a reply from the same local address; nil when there is
// none to copy (then the routing table picks the source).
func replyOOB(oob []byte, v6 bool) []byte {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		switch {
		case !v6 && m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			var info unix.Inet4Pktinfo
			copy(info.Spec_dst[:], m.Data[4:8]) // the local address the kernel would answer from
			return unix.PktInfo4(&info)
		case v6 && m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			var info unix.Inet6Pktinfo
			copy(info.Addr[:], m.Data[:16])
			if info.Addr[0] == 0xff {
				return nil // sent to a multicast group: let the kernel pick a unicast source
			}
			if info.Addr[0] == 0xfe && info.Addr[1]&0xc0 == 0x80 {
				// Link-local: the reply must leave through the same interface.
				info.Ifindex = binary.NativeEndian.Uint32(m.Data[16:20])
			}
			return unix.PktInfo6(&info)
		}
	}
	return nil
}
