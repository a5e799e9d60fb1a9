package vmm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// copyChunk is the unit of image copies: large enough that a copy is not
// held up by system calls, small enough to check for a cancel often.
const copyChunk = 1 << 20

// spaceCheckEvery is how many bytes an image copy writes between two
// checks of the free space left (a statfs each).
const spaceCheckEvery = 64 << 20

// zeroBlock is one disk block of zeros, to tell the blocks left as holes.
var zeroBlock [disk.BlockSize]byte

// writeNonZero writes b at offset off of f, but for its disk blocks that
// are all zeros, which it leaves as they are: holes in a new sparse file.
// It returns the bytes written.
func writeNonZero(f *os.File, b []byte, off int64) (int64, error) {
	var written int64
	for i := 0; i < len(b); {
		end := min(i+disk.BlockSize, len(b))
		if bytes.Equal(b[i:end], zeroBlock[:end-i]) {
			i = end
			continue
		}
		// A run of blocks with data is one write.
		j := end
		for j < len(b) {
			e := min(j+disk.BlockSize, len(b))
			if bytes.Equal(b[j:e], zeroBlock[:e-j]) {
				break
			}
			j = e
		}
		if _, err := f.WriteAt(b[i:j], off+int64(i)); err != nil {
			return written, err
		}
		written += int64(j - i)
		i = j
	}
	return written, nil
}

// writeSparse copies r into the new, empty file f, leaving its all-zero
// blocks as holes, and returns r's length; the file ends up that long. It
// fails with ErrTooLarge when r holds more than max bytes. check is called
// with the bytes written (allocated) since its last call, about every
// spaceCheckEvery bytes; its error stops the copy.
func writeSparse(ctx context.Context, f *os.File, r io.Reader, max int64, check func(written int64) error) (int64, error) {
	buf := make([]byte, copyChunk)
	var off, pending int64
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, rerr := io.ReadFull(r, buf)
		if int64(n) > max-off {
			return off, fmt.Errorf("%w: the image is larger than its maximum size of %d bytes", ErrTooLarge, max)
		}
		w, err := writeNonZero(f, buf[:n], off)
		if err != nil {
			return off, err
		}
		off += int64(n)
		if pending += w; pending >= spaceCheckEvery {
			if err := check(pending); err != nil {
				return off, err
			}
			pending = 0
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return off, rerr
		}
	}
	// The trailing holes: the file is as long as the image.
	if err := f.Truncate(off); err != nil {
		return off, err
	}
	return off, nil
}

// importImage makes distro d's disk from src, a raw ext4 image of at most
// maxSize bytes, written sparse into staging and then moved into place.
// The image is untrusted: beyond a cheap check of its superblock
// (disk.ParseSuperblock) the host neither reads nor mounts it; the guest's
// kernel is what parses it.
func (m *Manager) importImage(ctx context.Context, d store.Distro, staging string, src io.Reader, maxSize int64, settings Settings) error {
	head := make([]byte, disk.SuperblockOffset+disk.SuperblockSize)
	if n, err := io.ReadFull(src, head); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: the image is %d bytes, too short to be an ext4 disk image", ErrInvalid, n)
		}
		return err
	}
	sb, err := disk.ParseSuperblock(head)
	if err != nil {
		return fmt.Errorf("%w: not a raw ext4 disk image: %w", ErrInvalid, err)
	}
	if sb.Size() > maxSize {
		return fmt.Errorf("%w: the image's file system is %s, more than its maximum size of %s", ErrTooLarge, humanBytes(sb.Size()), humanBytes(maxSize))
	}
	if err := checkFree(staging, 0, settings); err != nil {
		return err
	}
	tmp := filepath.Join(staging, DiskImageName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return noSpace(err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	// The free space is checked as the image is written: a sparse image
	// takes what its data takes, unknown before it is read.
	size, err := writeSparse(ctx, f, io.MultiReader(bytes.NewReader(head), src), maxSize, func(int64) error {
		return checkFree(staging, 0, settings)
	})
	if err != nil {
		return noSpace(fmt.Errorf("write disk image: %w", err))
	}
	if err := sb.FitsIn(size); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := f.Sync(); err != nil {
		return noSpace(fmt.Errorf("write disk image: %w", err))
	}
	err = f.Close()
	f = nil
	if err != nil {
		return noSpace(fmt.Errorf("write disk image: %w", err))
	}
	return m.placeImage(d, staging, tmp)
}

// placeImage moves the finished image tmp, in staging, to distro d's
// location, and removes staging, now empty.
func (m *Manager) placeImage(d store.Distro, staging, tmp string) error {
	if err := os.Mkdir(d.Location, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return noSpace(err)
	}
	if err := os.Rename(tmp, imageStorage{m}.path(d.Location)); err != nil {
		return fmt.Errorf("move into place: %w", err)
	}
	if err := os.Remove(staging); err != nil {
		m.log.Warn("cannot remove staging directory", "distro", d.Name, "path", staging, "err", err)
	}
	return nil
}

// exportImage streams version 2 distro d's disk image to w, holes as
// zeros, counting op's progress. The caller keeps the distro stopped
// (beginExclusive), so the copy is consistent.
func (m *Manager) exportImage(ctx context.Context, d store.Distro, w io.Writer, op *Operation) error {
	f, err := os.Open(imageStorage{m}.path(d.Location))
	if err != nil {
		return fmt.Errorf("open disk image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	op.total.Store(st.Size())
	// A plain copy, as a tarball is streamed: a hole must be sent as the
	// zeros it reads as, so there is nothing to skip.
	buf := make([]byte, copyChunk)
	_, err = io.CopyBuffer(onlyWriter{w}, countingReader{ctx: ctx, r: f, op: op}, buf)
	return err
}

// onlyWriter hides w's ReadFrom, so io.CopyBuffer reads through the
// countingReader with its buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// cloneImage copies version 2 distro src's disk image into new distro d:
// into staging first, keeping holes (a reflink where the file system can),
// then into place (moveImage, which a move to another file system uses
// too). The caller keeps src stopped meanwhile.
func (m *Manager) cloneImage(ctx context.Context, src, d store.Distro, staging string, op *Operation) error {
	if err := os.Mkdir(d.Location, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return noSpace(err)
	}
	if err := m.moveImage(ctx, imageStorage{m}.path(src.Location), staging, imageStorage{m}.path(d.Location), op); err != nil {
		return fmt.Errorf("copy %s's disk image: %w", src.Name, err)
	}
	if err := os.Remove(staging); err != nil {
		m.log.Warn("cannot remove staging directory", "distro", d.Name, "path", staging, "err", err)
	}
	return nil
}
