package cli

import "fmt"

// restrictedSDDL is the security descriptor (SDDL) of a Windows server's
// data directory and socket: a protected DACL (nothing inherited from
// %LOCALAPPDATA% widens it) that grants full access to the server's user
// and to BUILTIN\Administrators only, inherited by every file and
// directory made inside. Connecting to an AF_UNIX socket needs write access
// to its file, so no other user can connect at all.
func restrictedSDDL(userSID string) string {
	return fmt.Sprintf("D:P(A;OICI;FA;;;%s)(A;OICI;FA;;;BA)", userSID)
}
