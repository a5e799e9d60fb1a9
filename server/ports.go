package server

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/netmgr"
)

// portsDistro resolves the {name} of a ports request to the distro the port
// manager knows it by.
func (s *Server) portsDistro(r *http.Request) (netmgr.Distro, error) {
	if s.cfg.Ports == nil {
		return netmgr.Distro{}, &httpError{Status: http.StatusNotImplemented, Code: api.CodeUnsupported, Msg: "the network manager is not running"}
	}
	d, err := s.cfg.Manager.Get(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return netmgr.Distro{}, err
	}
	return netmgr.Distro{ID: d.ID, Name: d.Name}, nil
}

// handleListPorts answers GET /distros/{name}/ports: the ports the distro's
// processes listen on, as the last scan (at most half a second old) found them.
func (s *Server) handleListPorts(w http.ResponseWriter, r *http.Request) error {
	d, err := s.portsDistro(r)
	if err != nil {
		return err
	}
	ports := apiPorts(s.cfg.Ports.Ports(d.ID))
	if ports == nil {
		ports = []api.Port{}
	}
	writeJSON(w, http.StatusOK, ports)
	return nil
}

// handlePutPort answers PUT /distros/{name}/ports/{proto}/{port}: it stores the
// port's setting, applies it before answering, and returns the port (the first
// socket on it when several listen, e.g. 0.0.0.0 and ::).
func (s *Server) handlePutPort(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	d, err := s.portsDistro(r)
	if err != nil {
		return err
	}
	k, err := portKey(chi.URLParam(r, "proto"), chi.URLParam(r, "port"))
	if err != nil {
		return err
	}
	var body api.PortUpdate
	if err := s.decodeJSON(w, r, &body); err != nil {
		return err
	}
	var u netmgr.PortUpdate
	u.LAN, u.Localhost = body.LAN, body.Localhost
	if body.Allow != nil {
		allow, err := netmgr.ParsePrefixes(*body.Allow)
		if err != nil {
			return badRequest("allow: "+err.Error(), err)
		}
		u.Allow = &allow
	}
	if body.LANAddress != nil {
		var a netip.Addr
		if v := strings.TrimSpace(*body.LANAddress); v != "" {
			if a, err = netip.ParseAddr(v); err != nil {
				return badRequest("lan_address: "+strconv.Quote(v)+" is not an IP address", err)
			}
		}
		u.LANAddress = &a
	}
	ports, err := s.cfg.Ports.Set(r.Context(), d, k, u)
	if err != nil {
		return err
	}
	s.cfg.Manager.Audit(r.Context(), "port", d.Name, k.Proto+"/"+strconv.Itoa(int(k.Port)))
	writeJSON(w, http.StatusOK, apiPort(ports[0]))
	return nil
}

// portKey parses the {proto} and {port} of a path.
func portKey(proto, port string) (netmgr.PortKey, error) {
	proto = strings.ToLower(proto)
	if proto != netmgr.TCP && proto != netmgr.UDP {
		return netmgr.PortKey{}, badRequest("protocol "+strconv.Quote(proto)+": want tcp or udp", nil)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return netmgr.PortKey{}, badRequest("port "+strconv.Quote(port)+": want 1-65535", err)
	}
	return netmgr.PortKey{Proto: proto, Port: uint16(n)}, nil
}

func (s *Server) portProxy() (*netmgr.PortProxy, error) {
	if s.cfg.PortProxy == nil {
		return nil, &httpError{Status: http.StatusNotImplemented, Code: api.CodeUnsupported, Msg: "the network manager is not running"}
	}
	return s.cfg.PortProxy, nil
}

// handleAddRule answers POST /portproxy. Defaults as netsh's: TCP, listen on
// every IPv4 address, connect to 127.0.0.1.
func (s *Server) handleAddRule(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	pm, err := s.portProxy()
	if err != nil {
		return err
	}
	var b api.RuleRequest
	if err := s.decodeJSON(w, r, &b); err != nil {
		return err
	}
	if b.Proto == "" {
		b.Proto = netmgr.TCP
	}
	if b.ListenAddress == "" {
		b.ListenAddress = "0.0.0.0"
	}
	if b.ConnectAddress == "" {
		b.ConnectAddress = "127.0.0.1"
	}
	la, err := netip.ParseAddr(strings.TrimSpace(b.ListenAddress))
	if err != nil {
		return badRequest("listen_address: "+strconv.Quote(b.ListenAddress)+" is not an IP address", err)
	}
	for name, p := range map[string]int{"listen_port": b.ListenPort, "connect_port": b.ConnectPort} {
		if p < 1 || p > 65535 {
			return badRequest(name+" must be 1-65535", nil)
		}
	}
	allow, err := netmgr.ParsePrefixes(b.Allow)
	if err != nil {
		return badRequest("allow: "+err.Error(), err)
	}
	st, err := pm.Add(r.Context(), netmgr.Rule{
		ID: b.ID, Proto: b.Proto, ListenAddress: la, ListenPort: uint16(b.ListenPort),
		ConnectAddress: b.ConnectAddress, ConnectPort: uint16(b.ConnectPort), Allow: allow,
	})
	if err != nil {
		return err
	}
	s.cfg.Manager.Audit(r.Context(), "portproxy-add", st.ID, st.Proto+" "+st.Listen().String()+" -> "+st.Target())
	writeJSON(w, http.StatusCreated, apiRule(st))
	return nil
}

// handleListRules answers GET /portproxy.
func (s *Server) handleListRules(w http.ResponseWriter, r *http.Request) error {
	pm, err := s.portProxy()
	if err != nil {
		return err
	}
	out := apiRules(pm.List())
	if out == nil {
		out = []api.Rule{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleGetRule answers GET /portproxy/{id}.
func (s *Server) handleGetRule(w http.ResponseWriter, r *http.Request) error {
	pm, err := s.portProxy()
	if err != nil {
		return err
	}
	st, err := pm.Get(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiRule(st))
	return nil
}

// handleDeleteRule answers DELETE /portproxy/{id}: the rule's listener closes
// and its live connections are cut.
func (s *Server) handleDeleteRule(w http.ResponseWriter, r *http.Request) error {
	r = actorCtx(r)
	pm, err := s.portProxy()
	if err != nil {
		return err
	}
	id := chi.URLParam(r, "id")
	if err := pm.Delete(r.Context(), id); err != nil {
		return err
	}
	s.cfg.Manager.Audit(r.Context(), "portproxy-delete", id, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// classifyNet maps netmgr's errors to statuses; classify calls it.
func classifyNet(err error) (int, string, bool) {
	switch {
	case errors.Is(err, netmgr.ErrPortInUse):
		return http.StatusConflict, api.CodePortInUse, true
	case errors.Is(err, netmgr.ErrDuplicate):
		return http.StatusConflict, api.CodeDuplicateRule, true
	case errors.Is(err, netmgr.ErrInvalid):
		return http.StatusBadRequest, api.CodeInvalid, true
	case errors.Is(err, netmgr.ErrNotFound):
		return http.StatusNotFound, api.CodeNotFound, true
	}
	return 0, "", false
}
