package server

import "testing"

// TestPeerAdmitted is Windows's socket rule, run here on SID strings: the
// server's own user, or an enabled BUILTIN\Administrators; nobody else.
func TestPeerAdmitted(t *testing.T) {
	const server, other = "S-1-5-21-1-2-3-1001", "S-1-5-21-1-2-3-1002"
	for _, tc := range []struct {
		name         string
		peer, server string
		groups       []string
		want         bool
	}{
		{"the server's user", server, server, []string{"S-1-5-32-545"}, true},
		{"another user", other, server, []string{"S-1-5-32-545", "S-1-5-11"}, false},
		{"another user, elevated administrator", other, server, []string{"S-1-5-32-545", AdministratorsSID}, true},
		{"an unknown peer", "", "", nil, false},
		{"a group that only looks like Administrators", other, server, []string{"S-1-5-32-5440", "S-1-5-32-54"}, false},
	} {
		if got := peerAdmitted(tc.peer, tc.server, tc.groups); got != tc.want {
			t.Errorf("%s: peerAdmitted = %v, want %v", tc.name, got, tc.want)
		}
	}
}
