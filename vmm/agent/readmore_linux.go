package agent

import (
	"os"

	"golang.org/x/sys/unix"
)

// readAvailable fills p from f with what can be read without blocking and returns
// how much it read (0 when nothing was waiting or on any error: the caller's next
// ordinary Read reports errors).
func readAvailable(f *os.File, p []byte) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	total := 0
	rc.Read(func(fd uintptr) bool {
		for total < len(p) {
			n, err := unix.Read(int(fd), p[total:])
			if n <= 0 || err != nil {
				break
			}
			total += n
		}
		return true // never wait in the poller
	})
	return total
}
