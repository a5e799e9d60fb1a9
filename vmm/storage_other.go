//go:build !linux

package vmm

import (
	"context"
	"errors"
	"os"
)

// freeSpace is only known on Linux.
func freeSpace(dir string) (avail, size int64, err error) { return 0, 0, errors.ErrUnsupported }

// copyImage copies src into dst, the all-zero blocks as holes.
func copyImage(ctx context.Context, dst, src *os.File, progress func(int64)) error {
	st, err := src.Stat()
	if err != nil {
		return err
	}
	if err := dst.Truncate(st.Size()); err != nil {
		return err
	}
	_, err = writeSparse(ctx, dst, src, st.Size(), func(n int64) error { progress(n); return nil })
	return err
}
