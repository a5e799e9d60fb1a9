package server

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/windows"
)

// sioAFUnixGetPeerPID is SIO_AF_UNIX_GETPEERPID (_WSAIOR(IOC_VENDOR, 256)),
// Windows's one peer credential of an AF_UNIX socket: the process id of the
// other end (Windows 10 1803 and later). x/sys/windows does not name it.
const sioAFUnixGetPeerPID = 0x58000100

// peerCred finds the process at the other end of an AF_UNIX connection and
// decides from its access token whether it may use subsys: its user is the
// server's, or the token has BUILTIN\Administrators enabled (an elevated
// administrator; a filtered UAC token has it for deny only). Windows has
// no SO_PEERCRED, so this goes by process id, which the peer cannot forge;
// a peer that has exited before the check cannot be opened and is refused.
func peerCred(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	var pid uint32
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		var n uint32
		cerr = windows.WSAIoctl(windows.Handle(fd), sioAFUnixGetPeerPID, nil, 0,
			(*byte)(unsafe.Pointer(&pid)), uint32(unsafe.Sizeof(pid)), &n, nil, 0)
	}); err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("peer credentials: SIO_AF_UNIX_GETPEERPID: %w", cerr)
	}
	if pid == 0 {
		// Some socket providers answer with no bytes: no peer is known.
		return Peer{}, fmt.Errorf("peer credentials: SIO_AF_UNIX_GETPEERPID named no process")
	}
	p := Peer{PID: int(pid), UID: -1, GID: -1}
	peerUser, groups, err := processIdentity(pid)
	if err != nil {
		return p, fmt.Errorf("peer credentials of process %d: %w", pid, err)
	}
	ownUser, _, err := processIdentity(windows.GetCurrentProcessId())
	if err != nil {
		return p, fmt.Errorf("the server's own credentials: %w", err)
	}
	p.Admitted = peerAdmitted(peerUser, ownUser, groups)
	return p, nil
}

// processIdentity is the user SID of process pid's token and the SIDs of
// its enabled (not deny-only) groups, as strings.
func processIdentity(pid uint32) (user string, enabledGroups []string, err error) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return "", nil, fmt.Errorf("open process: %w", err)
	}
	defer windows.CloseHandle(h)
	var tok windows.Token
	if err := windows.OpenProcessToken(h, windows.TOKEN_QUERY, &tok); err != nil {
		return "", nil, fmt.Errorf("open its token: %w", err)
	}
	defer tok.Close()
	tu, err := tok.GetTokenUser()
	if err != nil {
		return "", nil, fmt.Errorf("its token's user: %w", err)
	}
	tg, err := tok.GetTokenGroups()
	if err != nil {
		return "", nil, fmt.Errorf("its token's groups: %w", err)
	}
	for _, g := range tg.AllGroups() {
		if g.Attributes&windows.SE_GROUP_ENABLED != 0 && g.Attributes&windows.SE_GROUP_USE_FOR_DENY_ONLY == 0 {
			enabledGroups = append(enabledGroups, g.Sid.String())
		}
	}
	return tu.User.Sid.String(), enabledGroups, nil
}
