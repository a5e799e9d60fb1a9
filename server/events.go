package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/netmgr"
)

// sseKeepalive is how often an idle event stream sends a comment, so proxies and
// the browser notice a dead connection.
const sseKeepalive = 15 * time.Second

// handleEvents streams state changes as server-sent events: first a `snapshot`
// (on every connect and reconnect), then `distro`, `distro-removed` and
// `operation` events, and `ports` events ({distro, id, ports}) when a distro's
// listening ports or their counters change. A client that falls behind is disconnected and, reconnecting,
// starts again from a fresh snapshot.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	snap, events, cancel, err := s.cfg.Manager.Subscribe(r.Context())
	if err != nil {
		return err
	}
	defer cancel()
	var ports <-chan netmgr.PortsEvent
	if s.cfg.Ports != nil {
		var stop func()
		ports, stop = s.cfg.Ports.Subscribe()
		defer stop()
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	fmt.Fprintf(w, "retry: 1000\n\n")
	if err := send(string(api.EventSnapshot), apiSnapshot(snap)); err != nil {
		return nil
	}
	tick := time.NewTicker(sseKeepalive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return nil
			}
		case e, ok := <-ports:
			if !ok {
				return nil // fell behind: the client reconnects and starts afresh
			}
			if send(string(api.EventPorts), apiPortsEvent(e)) != nil {
				return nil
			}
		case e, ok := <-events:
			if !ok {
				return nil
			}
			var err error
			switch e.Type {
			case "distro":
				err = send(string(api.EventDistro), apiDistro(*e.Distro))
			case "distro-removed":
				err = send(string(api.EventDistroRemoved), apiRemoved(*e.Removed))
			case "operation":
				err = send(string(api.EventOperation), apiOperation(*e.Operation))
			case "distro-oom":
				err = send(string(api.EventDistroOOM), apiOOM(*e.OOM))
			}
			if err != nil {
				return nil
			}
		}
	}
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) error {
	m, err := s.cfg.Manager.Metrics(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiMetrics(m))
	return nil
}

func (s *Server) handleGetSettings(w http.ResponseWriter, r *http.Request) error {
	st, err := s.cfg.Manager.Settings(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiSettings(st))
	return nil
}

func (s *Server) handlePutSettings(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	var u api.SettingsUpdate
	if err := s.decodeJSON(w, r, &u); err != nil {
		return err
	}
	st, err := s.cfg.Manager.UpdateSettings(r.Context(), vmmSettingsUpdate(u))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiSettings(st))
	return nil
}
