package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// freeSpace returns the bytes free to unprivileged users on dir's file
// system (df's "Avail") and its size.
func freeSpace(dir string) (avail, size int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}

// copyImage copies the image src into dst, a new empty file, keeping its
// holes: a reflink (FICLONE) where the file system shares extents, which
// takes no time nor space; else the data extents only (SEEK_DATA and
// SEEK_HOLE), skipping the all-zero blocks in them too; else every block
// that is not all zeros. progress is told the bytes of src dealt with.
func copyImage(ctx context.Context, dst, src *os.File, progress func(int64)) error {
	st, err := src.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err == nil {
		progress(size)
		return nil
	}
	if err := dst.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, copyChunk)
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(src.Fd()), off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO):
			// Only a hole is left.
			progress(size - off)
			return nil
		case err != nil:
			// No SEEK_DATA here: all of it may be data.
			data = off
		}
		end := size
		if err == nil {
			if h, err := unix.Seek(int(src.Fd()), data, unix.SEEK_HOLE); err == nil {
				end = h
			}
		}
		progress(data - off)
		if err := copyRange(ctx, dst, src, data, end, buf, progress); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// copyRange copies src's bytes [from, to) to the same offsets of dst,
// leaving the blocks that are all zeros as holes.
func copyRange(ctx context.Context, dst, src *os.File, from, to int64, buf []byte, progress func(int64)) error {
	for off := from; off < to; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := src.ReadAt(buf[:min(int64(len(buf)), to-off)], off)
		if n == 0 && err != nil {
			if err == io.EOF {
				return fmt.Errorf("the image shrank while it was copied")
			}
			return err
		}
		if _, err := writeNonZero(dst, buf[:n], off); err != nil {
			return err
		}
		progress(int64(n))
		off += int64(n)
	}
	return nil
}
