package api

// Protocols of ports and portproxy rules.
const (
	TCP = "tcp"
	UDP = "udp"
)

// Port states: who can reach a port now.
const (
	// PortLocal: this host only.
	PortLocal = "local"
	// PortLAN: the LAN too (within Allow).
	PortLAN = "lan"
	// PortConflict: the LAN side's address is held by another socket (Error
	// names it).
	PortConflict = "conflict"
	// PortError: not exposed as asked (Error says why).
	PortError = "error"
	// PortClosed: nothing listens now; the setting is kept.
	PortClosed = "closed"
)

// Port is one listening port of a distro, how it is exposed and its counters:
// GET /distros/{name}/ports, the reply of PUT …/ports/{proto}/{port}, and the
// `ports` event.
type Port struct {
	// Proto is TCP or UDP.
	Proto string `json:"proto"`
	// Port is the port number.
	Port uint16 `json:"port"`
	// Address is the bind address; 0.0.0.0 or :: mean every address, empty
	// that nothing listens.
	Address string `json:"address"`
	// Process and PID name the program that listens.
	Process string `json:"process"`
	PID     int    `json:"pid"`
	// LAN says other hosts may connect.
	LAN bool `json:"lan"`
	// Allow lists the source prefixes that may connect from the LAN; empty
	// allows any.
	Allow []string `json:"allow"`
	// LANAddress is the one host address the port is exposed on; empty means
	// every address.
	LANAddress string `json:"lan_address"`
	// Localhost says the port is reachable on host loopback (version 2).
	Localhost bool `json:"localhost"`
	// State is PortLocal, PortLAN, PortConflict, PortError or PortClosed.
	State string `json:"state"`
	// Error says why the state is PortConflict or PortError.
	Error string `json:"error,omitempty"`
	// Connections counts live TCP connections (UDP: flows through the LAN proxy).
	Connections int64 `json:"connections"`
	// BytesIn and BytesOut count traffic to and from the port.
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
}

// PortUpdate is the body of PUT /distros/{name}/ports/{proto}/{port}: nil
// fields stay as they are.
type PortUpdate struct {
	// LAN lets other hosts connect (true) or cuts them off (false).
	LAN *bool `json:"lan,omitempty"`
	// Allow replaces the allowed source prefixes (CIDR or address); an empty
	// list allows any.
	Allow *[]string `json:"allow,omitempty"`
	// LANAddress exposes the port on this host address only; "" on every one.
	LANAddress *string `json:"lan_address,omitempty"`
	// Localhost makes the port reachable on host loopback (version 2).
	Localhost *bool `json:"localhost,omitempty"`
}

// Rule states.
const (
	// RuleActive: the rule listens and forwards.
	RuleActive = "active"
	// RuleConflict: another socket holds the listen address (Error names it).
	RuleConflict = "conflict"
	// RuleError: the rule could not listen for another reason (Error says why).
	RuleError = "error"
)

// Rule is a portproxy rule with its state and counters: GET /portproxy,
// GET /portproxy/{id} and the reply of POST /portproxy.
type Rule struct {
	// ID names the rule: GET and DELETE /portproxy/{id}.
	ID string `json:"id"`
	// Proto is TCP or UDP.
	Proto string `json:"proto"`
	// ListenAddress:ListenPort is where the rule listens on this host.
	ListenAddress string `json:"listen_address"`
	ListenPort    uint16 `json:"listen_port"`
	// ConnectAddress:ConnectPort is where it forwards to (an address or a host
	// name, resolved at each connect).
	ConnectAddress string `json:"connect_address"`
	ConnectPort    uint16 `json:"connect_port"`
	// Allow lists the source prefixes that may connect; empty allows any.
	Allow []string `json:"allow"`
	// State is RuleActive, RuleConflict or RuleError; Error says why not active.
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Connections counts live connections (UDP: flows); Total those admitted
	// since the rule started; Refused those refused by Allow or a limit;
	// Failed those whose target could not be reached.
	Connections int64 `json:"connections"`
	Total       int64 `json:"total"`
	Refused     int64 `json:"refused"`
	Failed      int64 `json:"failed"`
	// BytesIn counts payload from clients to the target, BytesOut back.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
}

// RuleRequest is the body of POST /portproxy. Empty fields take netsh's
// defaults: TCP, every IPv4 address, 127.0.0.1.
type RuleRequest struct {
	// ID names the rule; empty lets the server pick one.
	ID string `json:"id,omitempty"`
	// Proto is TCP (the default) or UDP.
	Proto string `json:"proto,omitempty"`
	// ListenAddress is the host address to listen on (0.0.0.0, ::, or one).
	ListenAddress string `json:"listen_address,omitempty"`
	// ListenPort and ConnectPort are 1-65535 (int, so that a value out of
	// range gets a message that says so).
	ListenPort int `json:"listen_port"`
	// ConnectAddress is an address or host name to forward to (127.0.0.1).
	ConnectAddress string `json:"connect_address,omitempty"`
	ConnectPort    int    `json:"connect_port"`
	// Allow lists the source prefixes that may connect; empty allows any.
	Allow []string `json:"allow,omitempty"`
}
