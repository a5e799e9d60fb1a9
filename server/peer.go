package server

import (
	"context"
	"net"
	"os/user"
	"slices"
	"strconv"
)

// PeerGroup is the group whose members may use the unix socket besides root,
// as incus-admin and docker are for those daemons.
const PeerGroup = "subsys"

// Peer is the process at the other end of a unix-socket connection, as the
// kernel reports it (SO_PEERCRED): it cannot be forged by the client.
type Peer struct {
	PID, UID, GID int
}

type peerKey struct{}

// peerOf returns the unix-socket peer of the request's connection, if any.
func peerOf(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// connContext records the peer of a unix-socket connection in its context. A
// unix connection whose peer cannot be read gets a peer no one is allowed as,
// so it is refused rather than treated as a TCP client.
func connContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	p, err := peerCred(uc)
	if err != nil {
		p = Peer{PID: -1, UID: -1, GID: -1}
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerGroupID returns the id of PeerGroup, if this system has that group.
func PeerGroupID() (int, bool) {
	g, err := user.LookupGroup(PeerGroup)
	if err != nil {
		return 0, false
	}
	gid, err := strconv.Atoi(g.Gid)
	return gid, err == nil
}

// peerAllowed: root, or a member (primary or supplementary) of PeerGroup.
func (s *Server) peerAllowed(p Peer) bool {
	if p.UID == 0 {
		return true
	}
	if p.UID < 0 {
		return false
	}
	gid, ok := PeerGroupID()
	if !ok {
		return false
	}
	if p.GID == gid {
		return true
	}
	u, err := user.LookupId(strconv.Itoa(p.UID))
	if err != nil {
		return false
	}
	ids, err := u.GroupIds()
	return err == nil && slices.Contains(ids, strconv.Itoa(gid))
}
