//go:build !linux

package disk

import (
	"context"
	"errors"
)

// Create is only implemented on Linux; elsewhere it returns
// errors.ErrUnsupported.
func Create(ctx context.Context, path, tree string, maxSize int64, opts Options) error {
	return errors.ErrUnsupported
}

// Check is only implemented on Linux; elsewhere it returns
// errors.ErrUnsupported.
func Check(ctx context.Context, path string) error { return errors.ErrUnsupported }

// Grow is only implemented on Linux; elsewhere it returns
// errors.ErrUnsupported.
func Grow(ctx context.Context, path string, newMax int64) error { return errors.ErrUnsupported }

// Usage is only implemented on Linux; elsewhere it returns
// errors.ErrUnsupported.
func Usage(path string) (apparent, allocated int64, err error) {
	return 0, 0, errors.ErrUnsupported
}
