package cli

import (
	"strings"
	"testing"
)

// TestRestrictedSDDL: the DACL is protected and has exactly two allow
// entries, the server's user and BUILTIN\Administrators, both inherited by
// files and directories; no one else (no Everyone, Users, Authenticated
// Users) appears.
func TestRestrictedSDDL(t *testing.T) {
	const sid = "S-1-5-21-1-2-3-1001"
	got := restrictedSDDL(sid)
	if want := "D:P(A;OICI;FA;;;S-1-5-21-1-2-3-1001)(A;OICI;FA;;;BA)"; got != want {
		t.Fatalf("restrictedSDDL = %q, want %q", got, want)
	}
	if n := strings.Count(got, "(A;"); n != 2 || strings.Count(got, "(") != 2 {
		t.Errorf("%q: want exactly two allow entries", got)
	}
	for _, other := range []string{"WD", "BU", "AU", "S-1-1-0", "S-1-5-11"} {
		if strings.Contains(got, ";"+other+")") {
			t.Errorf("%q grants %s", got, other)
		}
	}
}
