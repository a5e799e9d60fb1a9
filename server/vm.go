package server

import (
	"net/http"
	"strconv"

	"github.com/subsys-dev/subsys/api"
)

// handleVM answers GET /vm: the utility VM of version 2 distros. It only
// reads: asking never boots the VM.
func (s *Server) handleVM(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, apiVMStatus(s.cfg.Manager.VM(r.Context())))
	return nil
}

// handleVMConsole answers GET /vm/console: the last bytes of the VM's serial
// console. They are the guest's, so anything may be in them (escape
// sequences, HTML, invalid UTF-8): they go out as octet-stream, never as text
// or HTML a browser would render, with nosniff (securityHeaders) so that no
// browser guesses otherwise, and as an attachment so that opening the URL
// downloads them. Every client escapes them before showing them.
func (s *Server) handleVMConsole(w http.ResponseWriter, r *http.Request) error {
	b := s.cfg.Manager.VMConsole()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="vm-console.log"`)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	return nil
}

// handleVMReclaim answers POST /vm/reclaim: the running VM drops its page
// cache and compacts its memory now; 409 not_running when it does not run
// (asking never boots it).
func (s *Server) handleVMReclaim(w http.ResponseWriter, r *http.Request) error {
	res, err := s.cfg.Manager.ReclaimVM(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.VMReclaim{DroppedBytes: res.DroppedBytes, Memory: apiVMMemory(res.Memory), RSSBytes: res.RSSBytes})
	return nil
}
