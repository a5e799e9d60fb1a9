//go:build unix

package qemu

import "syscall"

// sysProcAttr puts QEMU in a process group of its own, so that a Ctrl-C
// meant for the server's terminal does not reach QEMU: a VM is ended by Quit,
// in order.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
