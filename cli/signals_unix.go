//go:build !windows

package cli

import (
	"os"
	"syscall"
)

// resizeSignal is the signal that tells a terminal program its window changed.
var resizeSignal os.Signal = syscall.SIGWINCH

// forwardedSignals are passed on to the remote command when there is no terminal.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

func signalNameOther(s os.Signal) string {
	switch s {
	case syscall.SIGHUP:
		return "HUP"
	case syscall.SIGQUIT:
		return "QUIT"
	}
	return s.String()
}
