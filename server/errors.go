package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/archive"
)

// httpError is an error with what the client should see. Msg goes to the client;
// Err (if any) only to the log.
type httpError struct {
	Status int
	Code   string
	Msg    string
	Err    error
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *httpError) Unwrap() error { return e.Err }

// classify maps an error to the status and code the client sees.
func classify(err error) (int, string, string) {
	var he *httpError
	if errors.As(err, &he) {
		return he.Status, he.Code, he.Msg
	}
	if status, code, ok := classifyNet(err); ok {
		return status, code, err.Error()
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe), errors.Is(err, vmm.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, api.CodeTooLarge, err.Error()
	case errors.Is(err, context.Canceled):
		return http.StatusConflict, api.CodeCancelled, err.Error()
	case errors.Is(err, vmm.ErrNotFound):
		return http.StatusNotFound, api.CodeNotFound, err.Error()
	case errors.Is(err, vmm.ErrExists):
		return http.StatusConflict, api.CodeAlreadyExists, err.Error()
	case errors.Is(err, vmm.ErrBusy):
		return http.StatusConflict, api.CodeBusy, err.Error()
	case errors.Is(err, vmm.ErrNotRunning):
		return http.StatusConflict, api.CodeNotRunning, err.Error()
	case errors.Is(err, archive.ErrFormat), errors.Is(err, archive.ErrCorrupt), errors.Is(err, archive.ErrUnsafe):
		// Before vmm.ErrInvalid, which wraps these: a client can tell a bad
		// archive from a bad request.
		return http.StatusBadRequest, api.CodeInvalidArchive, err.Error()
	case errors.Is(err, vmm.ErrInvalid):
		return http.StatusBadRequest, api.CodeInvalid, err.Error()
	case errors.Is(err, vmm.ErrInsufficientStorage):
		// The message names the file system and its free space.
		return http.StatusInsufficientStorage, api.CodeInsufficientStorage, err.Error()
	case errors.Is(err, vmm.ErrNoVersion1):
		// A 4xx: the request is the client's to change (version 2), not a
		// fault or missing feature of this server.
		return http.StatusBadRequest, api.CodeVersion1NeedsLinux, err.Error()
	case errors.Is(err, vmm.ErrUnsupported):
		return http.StatusNotImplemented, api.CodeUnsupported, err.Error()
	case errors.Is(err, agent.ErrUserNotFound):
		return http.StatusBadRequest, api.CodeUserNotFound, err.Error()
	case errors.Is(err, agent.ErrSessionNotFound):
		return http.StatusNotFound, api.CodeSessionNotFound, "no such terminal session (it ended or timed out)"
	case errors.Is(err, agent.ErrNoSuchFile):
		return http.StatusBadRequest, api.CodeNotFoundInDistro, err.Error()
	}
	return http.StatusInternalServerError, api.CodeInternal, "internal error: " + err.Error()
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := classify(err)
	if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSON(w, status, api.ErrorBody{Error: api.Error{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// handle adapts a handler that returns an error to http.HandlerFunc.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}

func badRequest(msg string, err error) error {
	return &httpError{Status: http.StatusBadRequest, Code: api.CodeInvalid, Msg: msg, Err: err}
}
