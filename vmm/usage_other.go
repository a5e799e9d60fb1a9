//go:build !linux

package vmm

import (
	"context"
	"io/fs"
	"path/filepath"
)

// diskUsage adds up file sizes under root (no block counts off Linux).
func diskUsage(ctx context.Context, root string) int64 {
	var total int64
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || ctx.Err() != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
		return nil
	})
	return total
}
