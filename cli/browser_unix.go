//go:build !windows

package cli

import (
	"io/fs"
	"os"
	"os/exec"
	"syscall"
)

// detach starts cmd in a session of its own: neither Ctrl-C here nor this
// terminal closing stops what it starts (a browser).
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }

// ownedPrivate reports whether fi belongs to this user and no one else may use it.
func ownedPrivate(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid() && fi.Mode().Perm()&0o077 == 0
}
