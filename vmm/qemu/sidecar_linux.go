package qemu

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// socketPair is a connected pair of stream sockets, both close-on-exec,
// named for their holders.
func socketPair(name0, name1 string) (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), name0), os.NewFile(uintptr(fds[1]), name1), nil
}

// setFileLimit sets pid's limit on open files (soft and hard) to want, or,
// where the server may not raise a hard limit (no CAP_SYS_RESOURCE, as in
// some containers), to the server's own hard limit, the most it can give.
func setFileLimit(pid int, want uint64) error {
	err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: want, Max: want}, nil)
	if !errors.Is(err, unix.EPERM) {
		if err != nil {
			return fmt.Errorf("setting its limit on open files to %d: %w", want, err)
		}
		return nil
	}
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &own); err != nil {
		return fmt.Errorf("reading the limit on open files: %w", err)
	}
	if own.Max < want {
		want = own.Max
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: want, Max: want}, nil); err != nil {
		return fmt.Errorf("setting its limit on open files to %d: %w", want, err)
	}
	return nil
}
