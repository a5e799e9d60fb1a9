//go:build !linux

package vmm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// prepareLocation makes dir, a user-chosen location for a new distro, with
// mode 0700, or checks that it is an empty directory. Only Linux checks the
// directories above it (distro trees live on the host there).
func prepareLocation(dir string) (string, bool, error) {
	dir = filepath.Clean(dir)
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return "", false, fmt.Errorf("%w: location %s is not empty", ErrInvalid, dir)
	}
	_, err := os.Stat(dir)
	created := errors.Is(err, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, fmt.Errorf("%w: location %s: %v", ErrInvalid, dir, err)
	}
	return dir, created, os.Chmod(dir, 0o700)
}

// securePrivateDir tightens dir's mode to 0700.
func securePrivateDir(dir string) (bool, error) {
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return false, err
	}
	return true, os.Chmod(dir, 0o700)
}

// unsafeParents is only checked on Linux.
func unsafeParents(string) string { return "" }

// isNoSpace reports whether err is the file system's "full".
func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }
