// Package api is the wire vocabulary of subsys's REST API under /api/v1: the
// request, response, event and error types, and the control frames of its two
// websockets (…/exec/ws and …/terminal), with ParseControl, the one parser of
// the frames a client sends.
//
// It is written once, here, for every side of the wire: server encodes these
// types, and the Go client (package client), the CLI and the end-to-end tests
// decode them. The JSON field names are the contract that server/openapi.yaml
// describes. api imports only the standard library and nothing of subsys, so
// any Go program may import it; server converts its internal types (vmm,
// netmgr, the agent's) to these at its edge.
package api
