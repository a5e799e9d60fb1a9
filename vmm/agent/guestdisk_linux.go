package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// blankBytes is how much of a disk format-disk requires to be zeros: the
// partition tables (MBR, GPT) and every file system's superblock that
// matters here (ext4's at 1 KiB) lie within it, so a disk that holds
// anything is refused rather than overwritten.
const blankBytes = 64 << 10

// targetLockKey is the lock (vmHost.lock) of the disk at a SCSI target
// while format-disk or unpack-tree works on it; a ':' is in no distro id,
// so it never shares a distro's lock.
func targetLockKey(target int) string { return "target:" + strconv.Itoa(target) }

// checkTarget refuses a SCSI target out of range.
func checkTarget(target int) error {
	if target < 0 || target > MaxDiskTarget {
		return fmt.Errorf("%w: disk target %d is not 0 to %d", ErrBadRequest, target, MaxDiskTarget)
	}
	return nil
}

// newDisk finds the disk the host hot-plugged at target, as start-distro
// finds a distro's, and checks that no running distro has it and that
// nothing has it open exclusively or mounted (an O_EXCL open of a block
// device fails with EBUSY then). It returns the device node.
func (h *vmHost) newDisk(ctx context.Context, target int) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, distroStartTimeout)
	dev, err := h.waitDisk(wctx, target)
	cancel()
	if err != nil {
		return "", err
	}
	if other := h.usingDisk(dev); other != "" {
		return "", fmt.Errorf("%w: disk target %d (%s) is distro %s's", ErrBadRequest, target, dev, other)
	}
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return "", fmt.Errorf("%w: disk target %d (%s) is mounted or in use", ErrBadRequest, target, dev)
		}
		return "", fmt.Errorf("open %s: %w", dev, err)
	}
	unix.Close(fd)
	return dev, nil
}

// formatDisk makes an empty ext4 on the new disk at target; see
// Client.FormatDisk.
func (h *vmHost) formatDisk(ctx context.Context, target int) error {
	if err := checkTarget(target); err != nil {
		return fmt.Errorf("format disk: %w", err)
	}
	unlock := h.lock(targetLockKey(target))
	defer unlock()
	dev, err := h.newDisk(ctx, target)
	if err != nil {
		return fmt.Errorf("format disk at target %d: %w", target, err)
	}
	if err := formatDevice(ctx, dev, h.scratchDir()); err != nil {
		return fmt.Errorf("format disk at target %d: %w", target, err)
	}
	h.log.Info("formatted a new disk", "target", target, "dev", dev)
	return waitDiskFree(ctx, dev)
}

// scratchDir is where the agent keeps its temporary files (a tmpfs).
func (h *vmHost) scratchDir() string { return filepath.Dir(h.exportDir) }

// formatDevice makes the empty ext4 file system vmm/disk makes on the
// host (disk.Mke2fsConfig, disk.FormatArgs) on dev, a whole disk or, in
// tests, an image file, after checking that its first blankBytes are
// zeros. mke2fs's configuration is written to a temporary file in confDir.
func formatDevice(ctx context.Context, dev, confDir string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		err = checkBlank(f)
	}
	f.Close()
	if err != nil {
		return err
	}
	size -= size % disk.BlockSize
	if size < disk.MinMaxSize {
		return fmt.Errorf("%w: the disk is %d bytes, below the minimum of %d", ErrBadRequest, size, disk.MinMaxSize)
	}
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		return err
	}
	conf, err := os.CreateTemp(confDir, "mke2fs-*.conf")
	if err != nil {
		return err
	}
	defer os.Remove(conf.Name())
	_, err = conf.WriteString(disk.Mke2fsConfig)
	if cerr := conf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	out, err := runToolEnv(ctx, []string{"MKE2FS_CONFIG=" + conf.Name()}, "mke2fs", disk.FormatArgs(dev, size, disk.Options{})...)
	if err != nil {
		return fmt.Errorf("mke2fs: %w: %s", err, quoteTail(out))
	}
	return nil
}

// checkBlank fails with ErrBadRequest unless f's first blankBytes (or all
// of it, when shorter) are zeros.
func checkBlank(f *os.File) error {
	b := make([]byte, blankBytes)
	n, err := f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("read the start of the disk: %w", err)
	}
	if !bytes.Equal(b[:n], make([]byte, n)) {
		return fmt.Errorf("%w: the disk is not blank (it holds a partition table or a file system); only a new disk is formatted", ErrBadRequest)
	}
	return nil
}

// unpack mounts the new disk at target, extracts the host's tarball into it
// and unmounts it; see Client.UnpackTree.
func (h *vmHost) unpack(ctx context.Context, st *yamux.Stream, br *bufio.Reader, target int) {
	fail := func(err error) {
		h.log.Error("unpack-tree", "target", target, "err", err)
		writeHeader(st, reply{Error: &wireError{Code: errorCode(err), Message: err.Error()}})
	}
	if err := checkTarget(target); err != nil {
		fail(fmt.Errorf("unpack tree: %w", err))
		return
	}
	unlock := h.lock(targetLockKey(target))
	defer unlock()
	dev, err := h.newDisk(ctx, target)
	if err != nil {
		fail(fmt.Errorf("unpack tree at target %d: %w", target, err))
		return
	}
	dir, err := h.mountScratch(dev)
	if err != nil {
		fail(fmt.Errorf("unpack tree at target %d: %w", target, err))
		return
	}
	mounted := true
	defer func() {
		if mounted {
			h.unmountScratch(dir)
		}
	}()
	if err := writeHeader(st, reply{OK: true}); err != nil {
		return
	}
	res, err := unpackInto(ctx, br, dir)
	if err == nil {
		// The host detaches the disk next: everything must be on it.
		mounted = false
		if err = unix.Unmount(dir, 0); err == nil {
			os.Remove(dir)
			err = waitDiskFree(ctx, dev)
		} else {
			mounted = true
			err = fmt.Errorf("unmount %s: %w", dev, err)
		}
	}
	var end dataEnd
	if err != nil {
		h.log.Error("unpack-tree", "target", target, "err", err)
		end.Error = &wireError{Code: errorCode(err), Message: fmt.Sprintf("unpack tree at target %d: %v", target, err)}
	} else {
		h.log.Info("unpacked a tree", "target", target, "files", res.Files, "bytes", res.Bytes)
		end.Unpacked = &res
	}
	b, _ := json.Marshal(end)
	writeFrame(st, frameDataEnd, b)
}

// unpackInto extracts the tarball the host sends as data frames on r into
// dir with vmm/archive's confined extractor, and reads the stream to its
// data-end frame. The disk bounds what is written (a full one is
// ErrInsufficientStorage), so no reserve is kept on it; the host keeps its
// own on the file system the image is on.
func unpackInto(ctx context.Context, r io.Reader, dir string) (UnpackResult, error) {
	// Extract wants an empty destination: mke2fs's lost+found (empty) goes
	// for the extraction and comes back after it, as e2fsck wants one.
	lostFound := filepath.Join(dir, "lost+found")
	if err := os.Remove(lostFound); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return UnpackResult{}, fmt.Errorf("make room for the tree: %w", err)
	}
	fr := &frameReader{r: r, buf: make([]byte, maxFrameSize)}
	stats, err := archive.Extract(ctx, fr, dir, archive.Limits{ReserveBytes: -1, ReservePercent: -1})
	if err == nil {
		if merr := os.Mkdir(lostFound, 0o700); merr != nil && !errors.Is(merr, fs.ErrExist) {
			err = fmt.Errorf("make lost+found: %w", merr)
		}
	}
	if err == nil {
		// Data after the archive's end: read (Extract warned of it) to
		// the host's end of stream, which says nothing went wrong there.
		_, err = io.Copy(io.Discard, fr)
	}
	if fr.hostErr != nil {
		err = fr.hostErr
	}
	if err != nil {
		return UnpackResult{}, err
	}
	return UnpackResult{Files: int64(stats.Entries), Bytes: stats.Bytes, SkippedDevices: stats.SkippedDevices, Warnings: stats.Warnings}, nil
}

// errHostSource: the host's source failed and it said so in its data-end.
var errHostSource = errors.New("the host stopped sending")

// frameReader reads a data stream the host sends: data frames, then a
// data-end frame, which is io.EOF, or the host's error. The stream ending
// without one is io.ErrUnexpectedEOF: a cut stream never passes for a
// whole archive.
type frameReader struct {
	r       io.Reader
	buf     []byte
	rest    []byte
	err     error // sticky
	hostErr error // the host's own error, from its data-end
}

func (f *frameReader) Read(p []byte) (int, error) {
	for len(f.rest) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		t, payload, err := readFrame(f.r, f.buf)
		switch {
		case err != nil:
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			f.err = err
		case t == frameData:
			f.rest = payload
		case t == frameDataEnd:
			var end dataEnd
			if err := json.Unmarshal(payload, &end); err != nil {
				f.err = fmt.Errorf("%w: bad end frame: %v", ErrProtocol, err)
			} else if end.Error != nil {
				f.hostErr = fmt.Errorf("%w: %s", errHostSource, end.Error.Message)
				f.err = f.hostErr
			} else {
				f.err = io.EOF
			}
		default:
			f.err = fmt.Errorf("%w: a %v frame in a data stream", ErrProtocol, t)
		}
	}
	n := copy(p, f.rest)
	f.rest = f.rest[n:]
	return n, nil
}
