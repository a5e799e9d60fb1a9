//go:build !linux

package agent

import (
	"context"
	"errors"
	"fmt"
)

// RunVM works on Linux only.
func RunVM(ctx context.Context, cfg VMConfig) error {
	return fmt.Errorf("vm: %w", errors.ErrUnsupported)
}

// kernelRelease is only known on Linux.
func kernelRelease() string { return "" }
