package qemu

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestProcessCPU: /proc's count of this process's CPU time agrees with
// getrusage's, before and after 200 ms of CPU spent spinning (however long
// that takes on a loaded machine).
func TestProcessCPU(t *testing.T) {
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := rusage()
	for rusage()-start < 200*time.Millisecond {
	}
	// USER_HZ ticks: /proc lags getrusage by up to a tick or two.
	got, want := processCPU(os.Getpid()), rusage()
	if got > want+20*time.Millisecond || got < want-50*time.Millisecond {
		t.Errorf("processCPU = %v, getrusage says %v", got, want)
	}
	if got < start+150*time.Millisecond {
		t.Errorf("processCPU = %v after 200 ms of CPU from %v", got, start)
	}
	if processCPU(-1) != 0 {
		t.Error("no process: not 0")
	}
}
