//go:build !linux

package agent

import (
	"context"
	"errors"
	"fmt"
)

// RunInit works on Linux only.
func RunInit(ctx context.Context, cfg InitConfig) error {
	return fmt.Errorf("init: %w", errors.ErrUnsupported)
}

// RunBesideSystemd works on Linux only.
func RunBesideSystemd(ctx context.Context, cfg BesideConfig) error {
	return fmt.Errorf("agent beside systemd: %w", errors.ErrUnsupported)
}
