// Package netmgr will own networking for distros: listening-port discovery,
// localhost forwarding, per-port LAN exposure and portproxy rules (issue 4). It
// imports store and vmm/agent; server imports it. Version 1 distros share the
// host's network namespace today, so their ports are host ports already.
package netmgr
