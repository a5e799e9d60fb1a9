// Package agent is the program that runs inside every distro and the protocol the
// server speaks to it. The same code serves both transports: a unix socket for a
// version 1 distro (the agent is PID 1 of the distro's namespaces) and, later, a
// virtio-serial port or hvsocket for the version 2 utility VM.
//
// Protocol: a hashicorp/yamux session over one connection, the agent on the yamux
// server side. Each request is one stream. The client writes one JSON header line
// {"op":"…", …}; the agent answers one JSON line {"ok":true, …} or
// {"ok":false,"error":{"code":"…","message":"…"}}. What follows depends on the op:
// nothing for hello and shutdown; for exec, frames in both directions, each
// [1 byte type][4 byte big-endian length][payload]. Output and stdin are
// flow-controlled per channel with window frames (like SSH channels), so a caller
// that reads only stdout never blocks the stderr path and no side buffers more than
// a fixed window.
//
// Terminal sessions (open-session, attach-session, list-sessions, kill-session)
// keep a program on a pty in the agent across connections. open-session and
// list-sessions answer with session frames, one JSON SessionInfo each, then end
// the stream. attach-session speaks exec's TTY frames: first the scrollback
// replay, then live output, both within the stdout window, so a client that
// stops reading stops the program; it ends with an exit frame, or a detached
// frame when another attachment takes the session over.
//
// File operations (file-stat, file-list, file-read, file-write, file-mkdir,
// file-rename, file-remove, file-archive; see files.go) run as a user of the
// distro; file-read, file-list and file-archive answer with data frames and
// a data-end frame, and file-write takes upload frames and an upload-end
// frame from the client before its data-end answer.
//
// The utility VM's agent (version 2, RunVM) serves the same protocol on a
// virtio-serial port and adds ops of its own: start-distro, stop-distro,
// list-distros and power-off answer with a header only; open-distro, after
// its ok, splices the stream byte for byte to the distro's own agent, which
// the client then speaks the whole protocol to; export-tree answers with data
// frames and ends with a data-end frame that carries the error, if any, so a
// failed export never looks like a short archive. format-disk and
// unpack-tree make a new distro's disk in the VM (guestdisk.go); after
// unpack-tree's ok the host sends data frames and a data-end frame, and the
// agent answers with a data-end frame.
//
// The client side (Dial, NewClient, Client, Process) is plain Go and builds on every
// platform; vmm and vmm/ns use it, and server too, for terminal sessions and the
// exec types. The agent side (Server, RunInit, RunVM) works on Linux only; the
// program cmd/subsys-agent runs it. Of subsys the package imports only
// vmm/archive (for export-tree), so the agent program carries no server code.
package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/cgroup"
)

// ProtocolVersion is bumped when a change to the wire format would confuse an
// older peer; hello reports it so the server can tell an outdated agent.
const ProtocolVersion = 1

// Version is the agent's build version, reported by hello. The build sets it with
// -ldflags "-X github.com/subsys-dev/subsys/vmm/agent.Version=…".
var Version = "dev"

// Ops.
const (
	opHello    = "hello"
	opExec     = "exec"
	opShutdown = "shutdown"
	// Terminal sessions: see SessionRequest.
	opOpenSession   = "open-session"
	opAttachSession = "attach-session"
	opListSessions  = "list-sessions"
	opKillSession   = "kill-session"
	// The utility VM's agent (version 2): see DistroRequest and RunVM.
	opStartDistro = "start-distro"
	opStopDistro  = "stop-distro"
	opOpenDistro  = "open-distro"
	opListDistros = "list-distros"
	opExportTree  = "export-tree"
	opPowerOff    = "power-off"
	// opConfigureNetwork sets the utility VM's network up (NetworkConfig);
	// opNetworkInfo reports its addresses.
	opConfigureNetwork = "configure-network"
	opNetworkInfo      = "network-info"
	// opListeners lists the distros' listening sockets; opDial connects to
	// an address in the VM and splices the stream to it.
	opListeners = "listeners"
	opDial      = "dial"
	// opWatchListeners streams the listeners each time they change.
	opWatchListeners = "watch-listeners"
	// opHostFiles reports and looks after the host's files (/mnt/host):
	// see Client.HostFiles.
	opHostFiles = "host-files"
	// opMemory reports the VM's memory, reclaims its page cache now
	// (action "reclaim") or sets the idle reclaim mode (action "set-mode"):
	// see Client.Memory.
	opMemory = "memory"
	// opDisk checks, resizes, trims or measures a distro's disk: see
	// Client.Disk.
	opDisk = "disk"
	// opFormatDisk makes an empty ext4 on a new disk; opUnpackTree
	// extracts a tarball into it: see Client.FormatDisk and
	// Client.UnpackTree.
	opFormatDisk = "format-disk"
	opUnpackTree = "unpack-tree"
	// opSetLimits writes a running distro's limits into its cgroup in the
	// VM; opDistroCgroup reads that cgroup's figures. See SetDistroLimits.
	opSetLimits    = "set-limits"
	opDistroCgroup = "distro-cgroup"
	// File operations (files.go): each runs as the request's user, in the
	// distro's own mount namespace and root.
	opFileStat    = "file-stat"
	opFileList    = "file-list"
	opFileRead    = "file-read"
	opFileWrite   = "file-write"
	opFileMkdir   = "file-mkdir"
	opFileRename  = "file-rename"
	opFileRemove  = "file-remove"
	opFileArchive = "file-archive"
)

// Flow-control and I/O sizes.
const (
	// initialWindow is what each side may send on one channel (stdin, stdout,
	// stderr) before the peer grants more; it is also what each side buffers.
	initialWindow = 256 << 10
	// maxWindow bounds the credit a peer can claim, to catch broken peers.
	maxWindow = 1 << 30
	// dataChunk is the largest data frame either side sends.
	dataChunk = 128 << 10
)

// Info is what hello reports about a running agent.
type Info struct {
	// Version is the agent's build version (see Version).
	Version string
	// Protocol is the agent's ProtocolVersion.
	Protocol int
	// PID is the agent's process id as seen inside the distro: 1 for a version 1
	// distro, where the agent is the init of the PID namespace.
	PID int
	// Hostname is the distro's hostname.
	Hostname string
	// Kernel is the release of the kernel the agent runs on (uname -r): the
	// host's for a version 1 distro, the utility VM's for version 2. Empty
	// from an agent older than the field.
	Kernel string
}

// ExecRequest says which process to start inside the distro.
type ExecRequest struct {
	// Argv is the program and its arguments. argv[0] without a slash is looked up
	// in the process's PATH. Empty means the user's shell from /etc/passwd.
	Argv []string `json:"argv,omitempty"`
	// Env is added to the default environment (PATH, HOME, USER, LOGNAME, SHELL,
	// and TERM=xterm-256color with a TTY); an entry here wins over a default.
	Env []string `json:"env,omitempty"`
	// Cwd is the working directory; default the user's home, or / when the home
	// does not exist. A Cwd that does not exist fails with ErrNoSuchFile.
	Cwd string `json:"cwd,omitempty"`
	// User is a user name or numeric uid from the distro's /etc/passwd; default
	// root. A numeric uid missing from /etc/passwd runs with gid = uid.
	User string `json:"user,omitempty"`
	// Login, with an empty Argv, runs the user's shell as a login shell
	// (argv[0] "-sh" style).
	Login bool `json:"login,omitempty"`
	// TTY gives the process a new pseudo-terminal as its controlling terminal;
	// stdout and stderr then both arrive on Process.Stdout.
	TTY bool `json:"tty,omitempty"`
	// Cols and Rows are the terminal size with TTY; zero means 80x24.
	Cols uint16 `json:"cols,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit status, or 128+signal number when a signal killed it.
	Code int `json:"code"`
	// Signal names the signal that killed the process ("KILL"), or is empty.
	Signal string `json:"signal,omitempty"`
}

// Terminal session limits and defaults.
const (
	// defaultScrollback is a session's scrollback when SessionRequest leaves it 0.
	defaultScrollback = 1 << 20
	// maxScrollback bounds what a client may ask for per session.
	maxScrollback = 64 << 20
	// defaultDetachTimeout is how long a session without attachment lives when
	// SessionRequest leaves it 0.
	defaultDetachTimeout = 5 * time.Minute
	// killGrace is how long a killed session's program has between SIGHUP and
	// SIGKILL.
	killGrace = 2 * time.Second
	// maxSessions bounds the sessions one agent keeps.
	maxSessions = 1024
	// maxSessionID bounds a session id as a client decodes it.
	maxSessionID = 64
)

// SessionRequest starts a program on a pseudo-terminal in a session that
// outlives the connection that opened it: the session lives in the agent, and
// any client may list it, attach to it and kill it.
type SessionRequest struct {
	// ExecRequest says what to run: Argv (empty means the user's shell, a login
	// shell with Login), Env, Cwd, User, and the terminal's Cols and Rows. TTY
	// is implied.
	ExecRequest
	// Scrollback is how many bytes of the most recent output the agent keeps
	// to replay on attach; 0 means 1 MiB, at most 64 MiB.
	Scrollback int `json:"scrollback,omitempty"`
	// DetachTimeout is how long the session lives with no attachment before its
	// program is killed and the session removed (as KillSession does); 0
	// means 5 minutes. It counts from the open, and from each detach.
	DetachTimeout time.Duration `json:"detach_timeout_ns,omitempty"`
}

// SessionInfo describes a terminal session.
type SessionInfo struct {
	// ID names the session: 16 lower-case hex digits, safe in a URL.
	ID string `json:"id"`
	// Argv is the program as started (a login shell's argv[0] starts with "-").
	Argv []string `json:"argv"`
	// User is the account the program runs as: its name, or the uid when it
	// has none.
	User string `json:"user"`
	// PID is the program's process id inside the distro.
	PID int `json:"pid"`
	// Cols and Rows are the terminal's current size.
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
	// Attached says whether a client is attached now.
	Attached bool `json:"attached"`
	// CreatedAt is when the session was opened.
	CreatedAt time.Time `json:"created_at"`
	// DetachedAt is when the last attachment ended (or the open, when no one
	// has attached yet); zero while attached.
	DetachedAt time.Time `json:"detached_at,omitzero"`
	// Exited says the program has exited and all of its output was read;
	// ExitCode and Signal then say how (as in ExitStatus).
	Exited   bool   `json:"exited,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
	Signal   string `json:"signal,omitempty"`
}

// request is every client header: the op plus the fields of the op.
type request struct {
	Op string `json:"op"`
	ExecRequest
	// attach-session, kill-session: the session.
	ID string `json:"id,omitempty"`
	// open-session: see SessionRequest.
	Scrollback    int           `json:"scrollback,omitempty"`
	DetachTimeout time.Duration `json:"detach_timeout_ns,omitempty"`
	// start-distro, stop-distro, open-distro, export-tree: the distro's
	// id travels in ID; these are the other fields of DistroRequest.
	Hostname   string `json:"hostname,omitempty"`
	DiskTarget int    `json:"disk_target,omitempty"`
	ReadOnly   bool   `json:"read_only,omitempty"`
	Systemd    bool   `json:"systemd,omitempty"`
	// export-tree: the archive format (see package vmm/archive).
	Format string `json:"format,omitempty"`
	// configure-network: the VM's network.
	Network *NetworkConfig `json:"network,omitempty"`
	// dial: the protocol ("tcp") and address ("127.0.0.1:8080").
	Net     string `json:"net,omitempty"`
	Address string `json:"address,omitempty"`
	// host-files: what to do (HostFilesTrim, HostFilesAbort; "" to report);
	// memory: "reclaim", "set-mode" or "" to report.
	Action string `json:"action,omitempty"`
	// memory set-mode: the idle reclaim mode (a Reclaim* constant).
	Mode string `json:"mode,omitempty"`
	// disk: the new size in bytes (DiskGrow, DiskResize).
	Size int64 `json:"size,omitempty"`
	// start-distro, set-limits: the distro's limits (cgroup.Limits).
	Limits *cgroup.Limits `json:"limits,omitempty"`
	// file-*: see FileRequest. The user travels in ExecRequest.User.
	FileRequest
}

// reply is every agent header. Fields an op does not use are left out.
type reply struct {
	OK    bool       `json:"ok"`
	Error *wireError `json:"error,omitempty"`

	// hello
	Version  string `json:"version,omitempty"`
	Protocol int    `json:"protocol,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// hello: the agent's pid; exec: the new process's pid
	PID int `json:"pid,omitempty"`
	// hello: the kernel release
	Kernel string `json:"kernel,omitempty"`
	// list-distros: the running distros' ids
	Distros []string `json:"distros,omitempty"`
	// configure-network, network-info: the VM's addresses
	Addresses []string `json:"addresses,omitempty"`
	// listeners: the distros' listening sockets
	Listeners []Listener `json:"listeners,omitempty"`
	// host-files: how the host's files are mounted ("virtio-fs", "9p"),
	// "" before the first distro has started or when they are not shared
	HostFiles string `json:"host_files,omitempty"`
	// memory: the VM's memory, and what a reclaim dropped
	Memory    *MemoryInfo `json:"memory,omitempty"`
	Reclaimed int64       `json:"reclaimed,omitempty"`
	// disk: the distro's file system
	Disk *DiskInfo `json:"disk,omitempty"`
	// distro-cgroup: the distro's cgroup figures
	Cgroup *cgroup.Stats `json:"cgroup,omitempty"`
	// file-stat, file-read, file-mkdir, file-rename: the path's FileInfo
	File *FileInfo `json:"file,omitempty"`
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// resizeMsg is the payload of a resize frame.
type resizeMsg struct {
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
}

// signalMsg is the payload of a signal frame: a name ("TERM") or a number.
type signalMsg struct {
	Name   string `json:"name,omitempty"`
	Number int    `json:"number,omitempty"`
}

// Error codes on the wire. Callers branch on the sentinels below, not on these.
const (
	codeBadRequest   = "bad_request"
	codeUnsupported  = "unsupported"
	codeUserNotFound = "user_not_found"
	codeNotFound     = "not_found"
	codePermission   = "permission_denied"
	codeNoSession    = "session_not_found"
	codeNoDistro     = "distro_not_running"
	codeInternal     = "internal"
	// unpack-tree: the archive is bad, or the disk is full.
	codeBadArchive = "bad_archive"
	codeNoSpace    = "no_space"
)

// Sentinel errors. A RemoteError unwraps to the one matching its code, so
// errors.Is works across the connection.
var (
	// ErrUserNotFound: the user is not in the distro's /etc/passwd.
	ErrUserNotFound = errors.New("user not found")
	// ErrNoSuchFile: the program or working directory does not exist. It also
	// matches fs.ErrNotExist.
	ErrNoSuchFile = errors.New("no such file or directory")
	// ErrPermission: the agent may not do this, e.g. the program is not
	// executable. It also matches fs.ErrPermission.
	ErrPermission = errors.New("permission denied")
	// ErrBadRequest: the request was malformed (bad env entry, unknown signal…).
	ErrBadRequest = errors.New("bad request")
	// ErrProtocol: the peer broke the wire protocol (oversized frame or header,
	// bad JSON, flow-control violation).
	ErrProtocol = errors.New("agent protocol error")
	// ErrDisconnected: the connection to the agent ended before the answer did.
	ErrDisconnected = errors.New("agent connection lost")
	// ErrSessionNotFound: no terminal session has this id (never had, was
	// killed, or timed out).
	ErrSessionNotFound = errors.New("session not found")
	// ErrDetached: an attachment ended while its session goes on, because it
	// was closed or another attachment took the session over.
	ErrDetached = errors.New("session detached")
	// ErrDistroNotRunning: the utility VM's agent has no running distro by
	// this id (open-distro).
	ErrDistroNotRunning = errors.New("distro not running")
	// ErrBadArchive: unpack-tree's tarball is not one, is corrupt, or has
	// an entry that would reach outside the disk (vmm/archive's ErrFormat,
	// ErrCorrupt, ErrUnsafe).
	ErrBadArchive = errors.New("bad archive")
	// ErrNoSpace: unpack-tree's tree does not fit on the disk, or passes
	// vmm/archive's limits.
	ErrNoSpace = errors.New("no space left on the disk")
)

// RemoteError is an error the agent reported for a request.
type RemoteError struct {
	Op      string // the request's op
	Code    string // the wire code, e.g. "user_not_found"
	Message string // the agent's message, for people
}

// Error says which request failed and the agent's reason.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("agent %s: %s", e.Op, e.Message)
}

// Unwrap maps the wire code to the sentinels, so that errors.Is(err,
// ErrUserNotFound) and errors.Is(err, fs.ErrNotExist) work on remote errors.
func (e *RemoteError) Unwrap() []error {
	switch e.Code {
	case codeUserNotFound:
		return []error{ErrUserNotFound}
	case codeNotFound:
		return []error{ErrNoSuchFile, fs.ErrNotExist}
	case codePermission:
		return []error{ErrPermission, fs.ErrPermission}
	case codeBadRequest:
		return []error{ErrBadRequest}
	case codeUnsupported:
		return []error{errors.ErrUnsupported}
	case codeNoSession:
		return []error{ErrSessionNotFound}
	case codeNoDistro:
		return []error{ErrDistroNotRunning}
	case codeDiskTooSmall:
		return []error{ErrDiskTooSmall}
	case codeBadArchive:
		return []error{ErrBadArchive}
	case codeNoSpace:
		return []error{ErrNoSpace}
	case codeFileExists:
		return []error{ErrFileExists, fs.ErrExist}
	case codeDirNotEmpty:
		return []error{ErrDirNotEmpty}
	case codeNotDir:
		return []error{ErrNotDir}
	case codeIsDir:
		return []error{ErrIsDir}
	case codeInvalidPath:
		return []error{ErrInvalidPath}
	}
	return nil
}

// errorCode picks the wire code for an error the agent hit.
func errorCode(err error) string {
	switch {
	// The file errors first: they are more precise than what they wrap.
	case errors.Is(err, ErrFileExists):
		return codeFileExists
	case errors.Is(err, ErrDirNotEmpty):
		return codeDirNotEmpty
	case errors.Is(err, ErrNotDir):
		return codeNotDir
	case errors.Is(err, ErrIsDir):
		return codeIsDir
	case errors.Is(err, ErrInvalidPath):
		return codeInvalidPath
	case errors.Is(err, ErrUserNotFound):
		return codeUserNotFound
	case errors.Is(err, ErrNoSuchFile), errors.Is(err, fs.ErrNotExist):
		return codeNotFound
	case errors.Is(err, ErrPermission), errors.Is(err, fs.ErrPermission):
		return codePermission
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrProtocol):
		return codeBadRequest
	case errors.Is(err, errors.ErrUnsupported):
		return codeUnsupported
	case errors.Is(err, ErrSessionNotFound):
		return codeNoSession
	case errors.Is(err, ErrDistroNotRunning):
		return codeNoDistro
	case errors.Is(err, ErrDiskTooSmall):
		return codeDiskTooSmall
	case errors.Is(err, ErrBadArchive), errors.Is(err, archive.ErrFormat), errors.Is(err, archive.ErrCorrupt), errors.Is(err, archive.ErrUnsafe):
		return codeBadArchive
	case errors.Is(err, ErrNoSpace), errors.Is(err, archive.ErrInsufficientStorage), errors.Is(err, archive.ErrLimit):
		return codeNoSpace
	}
	return codeInternal
}

// signalNames are the Linux signals a client may name. The numbers are not here
// on purpose: the agent maps names to its own platform's numbers.
var signalNames = map[string]bool{
	"HUP": true, "INT": true, "QUIT": true, "ILL": true, "TRAP": true, "ABRT": true,
	"BUS": true, "FPE": true, "KILL": true, "USR1": true, "SEGV": true, "USR2": true,
	"PIPE": true, "ALRM": true, "TERM": true, "STKFLT": true, "CHLD": true,
	"CONT": true, "STOP": true, "TSTP": true, "TTIN": true, "TTOU": true, "URG": true,
	"XCPU": true, "XFSZ": true, "VTALRM": true, "PROF": true, "WINCH": true,
	"IO": true, "PWR": true, "SYS": true,
}

// parseSignal turns "TERM", "SIGTERM", "term" or "15" into a signal message.
func parseSignal(s string) (signalMsg, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return signalMsg{}, fmt.Errorf("%w: signal number %d", ErrBadRequest, n)
		}
		return signalMsg{Number: n}, nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if !signalNames[name] {
		return signalMsg{}, fmt.Errorf("%w: unknown signal %q", ErrBadRequest, s)
	}
	return signalMsg{Name: name}, nil
}
