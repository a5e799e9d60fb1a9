//go:build unix

package cli

import "syscall"

// unixUmask sets the process umask and returns the old one: the socket must
// be born private, not chmod-ed after a window in which anyone could connect.
func unixUmask(mask int) int { return syscall.Umask(mask) }
