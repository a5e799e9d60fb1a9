//go:build !linux

package agent

import (
	"errors"
	"fmt"
)

// RemoveCgroup works on Linux only.
func RemoveCgroup(dir string) error {
	return fmt.Errorf("remove cgroup %s: %w", dir, errors.ErrUnsupported)
}
