package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

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

// errorBody is the one JSON shape of every error reply.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

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
		return http.StatusRequestEntityTooLarge, "too_large", err.Error()
	case errors.Is(err, context.Canceled):
		return http.StatusConflict, "cancelled", err.Error()
	case errors.Is(err, vmm.ErrNotFound):
		return http.StatusNotFound, "not_found", err.Error()
	case errors.Is(err, vmm.ErrExists):
		return http.StatusConflict, "already_exists", err.Error()
	case errors.Is(err, vmm.ErrBusy):
		return http.StatusConflict, "busy", err.Error()
	case errors.Is(err, archive.ErrFormat), errors.Is(err, archive.ErrCorrupt), errors.Is(err, archive.ErrUnsafe):
		// Before vmm.ErrInvalid, which wraps these: a client can tell a bad
		// archive from a bad request.
		return http.StatusBadRequest, "invalid_archive", err.Error()
	case errors.Is(err, vmm.ErrInvalid):
		return http.StatusBadRequest, "invalid", err.Error()
	case errors.Is(err, vmm.ErrInsufficientStorage):
		// The message names the file system and its free space.
		return http.StatusInsufficientStorage, "insufficient_storage", err.Error()
	case errors.Is(err, vmm.ErrUnsupported):
		return http.StatusNotImplemented, "unsupported", err.Error()
	case errors.Is(err, agent.ErrUserNotFound):
		return http.StatusBadRequest, "user_not_found", err.Error()
	case errors.Is(err, agent.ErrNoSuchFile):
		return http.StatusBadRequest, "not_found_in_distro", err.Error()
	}
	return http.StatusInternalServerError, "internal", "internal error: " + err.Error()
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := classify(err)
	if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	var body errorBody
	body.Error.Code, body.Error.Message = code, msg
	writeJSON(w, status, body)
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
	return &httpError{Status: http.StatusBadRequest, Code: "invalid", Msg: msg, Err: err}
}
