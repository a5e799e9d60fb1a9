//go:build !linux

package archive

import (
	"context"
	"errors"
	"io"
)

// Extract is only implemented on Linux, where distro trees live on the host;
// elsewhere it returns errors.ErrUnsupported.
func Extract(ctx context.Context, r io.Reader, dest string, lim Limits) (Stats, error) {
	return Stats{}, errors.ErrUnsupported
}

// DiskUsage is only implemented on Linux; elsewhere it returns
// errors.ErrUnsupported.
func DiskUsage(ctx context.Context, root string) (Usage, error) {
	return Usage{}, errors.ErrUnsupported
}

// Write is only implemented on Linux; elsewhere it returns errors.ErrUnsupported.
func Write(ctx context.Context, w io.Writer, src string, f Format) error {
	return errors.ErrUnsupported
}
