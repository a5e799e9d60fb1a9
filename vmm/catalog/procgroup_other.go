//go:build !unix

package catalog

import "os/exec"

// ownProcessGroup does nothing where there are no process groups: building
// a release needs mmdebstrap, which only Linux has, so no such command
// starts here.
func ownProcessGroup(*exec.Cmd) {}

// killProcessGroup kills the started cmd itself.
func killProcessGroup(cmd *exec.Cmd) {
	cmd.Process.Kill()
}
