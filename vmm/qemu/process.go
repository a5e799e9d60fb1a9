package qemu

import (
	"os/exec"
)

// process is QEMU's process as the VM sees it: started by this server
// (childProcess) or by an earlier one and adopted (adoptedProcess, Linux).
type process interface {
	// Wait blocks until the process has exited and returns how (nil when
	// unknown, as for an adopted process).
	Wait() error
	// Kill sends SIGKILL; it fails only when the process is gone.
	Kill() error
	Pid() int
}

// childProcess is a QEMU this server started.
type childProcess struct{ cmd *exec.Cmd }

func (c childProcess) Wait() error { return c.cmd.Wait() }
func (c childProcess) Kill() error { return c.cmd.Process.Kill() }
func (c childProcess) Pid() int    { return c.cmd.Process.Pid }
