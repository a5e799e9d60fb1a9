package vmm

import (
	"context"
	"io/fs"
	"path/filepath"
	"syscall"
)

// diskUsage adds up the blocks allocated under root (sparse files count what
// they use, hard links once).
func diskUsage(ctx context.Context, root string) int64 {
	var total int64
	seen := map[[2]uint64]bool{}
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			if st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if seen[key] {
					return nil
				}
				seen[key] = true
			}
			total += st.Blocks * 512
		}
		return nil
	})
	return total
}
