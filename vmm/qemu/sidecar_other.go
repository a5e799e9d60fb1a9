//go:build !linux

package qemu

import (
	"errors"
	"os"
)

// socketPair is supported on Linux only: the QEMU backend with its passt
// and virtiofsd sidecars runs on Linux hosts (Windows uses vmm/hcs).
func socketPair(string, string) (*os.File, *os.File, error) {
	return nil, nil, errors.ErrUnsupported
}

// setFileLimit is supported on Linux only (prlimit), like socketPair.
func setFileLimit(int, uint64) error { return errors.ErrUnsupported }
