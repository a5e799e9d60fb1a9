package api

import (
	"fmt"
	"net/http"
)

// Error codes: the "code" of an error reply, stable for programs to branch on.
// The message beside it is for people and may change.
const (
	// CodeInvalid: the request is malformed (bad name, body, parameter).
	CodeInvalid = "invalid"
	// CodeInvalidArchive: an import's tarball is unreadable or unsafe; the
	// message names the entry.
	CodeInvalidArchive = "invalid_archive"
	// CodeNotFound: no distro, operation, rule or API path by that name.
	CodeNotFound = "not_found"
	// CodeNotFoundInDistro: a path the request named (a working directory, a
	// program) does not exist inside the distro.
	CodeNotFoundInDistro = "not_found_in_distro"
	// CodeUserNotFound: the distro has no such user.
	CodeUserNotFound = "user_not_found"
	// CodeSessionNotFound: no terminal session by that id (it ended or timed out).
	CodeSessionNotFound = "session_not_found"
	// CodeAlreadyExists: the name is taken.
	CodeAlreadyExists = "already_exists"
	// CodeBusy: another operation holds the distro; the message names it.
	CodeBusy = "busy"
	// CodeNotRunning: the action needs something running that is not (the
	// utility VM, for POST /vm/reclaim).
	CodeNotRunning = "not_running"
	// CodeCancelled: the operation was cancelled.
	CodeCancelled = "cancelled"
	// CodeTooLarge: a body, upload or archive went over a limit.
	CodeTooLarge = "too_large"
	// CodeInsufficientStorage: the file system of a new distro is too full;
	// the message names it and its free space.
	CodeInsufficientStorage = "insufficient_storage"
	// CodeUnsupported: this server cannot do that here (no backend for the
	// version, no network manager).
	CodeUnsupported = "unsupported"
	// CodeVersion1NeedsLinux: the request needs a version 1 distro (import,
	// install, convert, start, default_version) and this server's host is
	// not Linux.
	CodeVersion1NeedsLinux = "version1_needs_linux"
	// CodePortInUse: another socket holds the address a portproxy rule or LAN
	// listener needs; the message names the process.
	CodePortInUse = "port_in_use"
	// CodeDuplicateRule: a portproxy rule overlaps another.
	CodeDuplicateRule = "duplicate_rule"
	// CodeUnauthorized: no credential, or a wrong or expired one.
	CodeUnauthorized = "unauthorized"
	// CodeForbidden: the credential may not do this (a browser session on an
	// admin route, anything but the token on /login).
	CodeForbidden = "forbidden"
	// CodeForbiddenPeer: a unix-socket peer that is neither root nor in the
	// subsys group.
	CodeForbiddenPeer = "forbidden_peer"
	// CodeForbiddenHost: a Host header that is not an allowed name (DNS rebinding).
	CodeForbiddenHost = "forbidden_host"
	// CodeForbiddenOrigin: a cross-site request or websocket.
	CodeForbiddenOrigin = "forbidden_origin"
	// CodeWebsocketRequired: a websocket route got a plain request.
	CodeWebsocketRequired = "websocket_required"
	// CodeNoDashboard: the server has no TCP listener for browsers.
	CodeNoDashboard = "no_dashboard"
	// CodeMethodNotAllowed: the path exists, not with that method.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeInternal: the server failed; its log says more.
	CodeInternal = "internal"
)

// Error is an error reply of the API: the HTTP status and the body's code and
// message. Clients return it as *Error, so callers can errors.As it and branch
// on Code (or Status).
type Error struct {
	// Status is the HTTP status of the reply; 0 for an error frame of a
	// websocket, which has none of its own.
	Status int `json:"-"`
	// Code is one of the Code constants (a client may also see "http" for a
	// reply that was not the API's JSON, e.g. from a proxy).
	Code string `json:"code"`
	// Message says what went wrong, for people. It may quote distro-supplied
	// text: escape it before printing it on a terminal.
	Message string `json:"message"`
}

// Error returns the server's message, or the code and status when it sent none.
func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if e.Status != 0 {
		return fmt.Sprintf("%s (%d %s)", e.Code, e.Status, http.StatusText(e.Status))
	}
	return e.Code
}

// ErrorBody is the JSON body of every error reply: {"error":{"code","message"}}.
type ErrorBody struct {
	// Error is the code and message (Status is not part of the body).
	Error Error `json:"error"`
}
