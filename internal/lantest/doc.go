// Package lantest makes a LAN test host for tests: a network namespace joined to
// this host by a veth pair, with IPv4 and IPv6 addresses on both sides, from
// which a test can connect to the host as another machine on the LAN would. It
// needs root and ip(8); New skips the test without them (fails it under
// SUBSYS_TEST_STRICT=1, see internal/testenv). It also answers what
// network tests ask of the host: its nftables tables and its cgroup v2
// hierarchy. Only tests import it.
package lantest
