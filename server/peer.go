package server

import (
	"context"
	"fmt"
	"net"
	"os/user"
	"runtime"
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
	// Admitted is set where there are no uids (Windows): the platform's
	// peerCred has already found the peer allowed (its process token's
	// user is the server's, or it is an elevated administrator).
	Admitted bool
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

// peerRefusal is the message of a peer peerAllowed refused.
func peerRefusal(p Peer) string {
	if runtime.GOOS == "windows" {
		return fmt.Sprintf("process %d may not use subsys: only the user who runs the server and elevated Administrators may", p.PID)
	}
	return fmt.Sprintf("uid %d may not use subsys: only root and members of the %q group may", p.UID, PeerGroup)
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
	if p.Admitted || p.UID == 0 {
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

// AdministratorsSID is BUILTIN\Administrators, the group that may use a
// Windows server's socket besides the server's own user.
const AdministratorsSID = "S-1-5-32-544"

// peerAdmitted is Windows's rule for a socket peer, by SID strings: the
// peer's token user is the server's, or the group list (its enabled groups
// only) holds BUILTIN\Administrators.
func peerAdmitted(peerUser, serverUser string, enabledGroups []string) bool {
	if peerUser != "" && peerUser == serverUser {
		return true
	}
	return slices.Contains(enabledGroups, AdministratorsSID)
}
