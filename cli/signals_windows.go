package cli

import (
	"os"
	"syscall"
)

// resizeSignal: Windows consoles have no window-change signal; nil disables it.
var resizeSignal os.Signal

// forwardedSignals are passed on to the remote command when there is no terminal.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM}

func signalNameOther(s os.Signal) string { return s.String() }
