//go:build !unix

package qemu

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
