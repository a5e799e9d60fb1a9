package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/vmm/disk"
)

// ext4ResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): grow a mounted
// ext4 to a block count, what resize2fs does for an online grow.
const ext4ResizeFS = 0x40086610

// fitrim is FITRIM, _IOWR('X', 121, struct fstrim_range), and fstrimRange
// that struct: discard the free blocks in a range of a mounted file system.
const fitrim = 0xC0185879

type fstrimRange struct {
	Start, Length, Minlen uint64
}

// diskTools is where the VM looks for e2fsprogs (the initramfs carries the
// host's, at the host's paths).
const diskTools = "/usr/sbin:/sbin:/usr/bin:/bin"

// growWait bounds how long an online grow waits for the guest's kernel to
// see its disk's new size after the rescan.
const growWait = 15 * time.Second

// handleDisk does a disk action on distro req.ID's disk; see Client.Disk.
// Only one action (or start, stop, export) runs for a distro at a time.
func (h *vmHost) handleDisk(ctx context.Context, req request) (DiskInfo, error) {
	dreq := DistroRequest{ID: req.ID, DiskTarget: req.DiskTarget}
	if err := checkDistroRequest(dreq, false); err != nil {
		return DiskInfo{}, fmt.Errorf("disk: %w", err)
	}
	if req.Size < 0 {
		return DiskInfo{}, fmt.Errorf("disk: %w: size %d", ErrBadRequest, req.Size)
	}
	unlock := h.lock(req.ID)
	defer unlock()
	d := h.running(req.ID)
	switch req.Action {
	case DiskStat:
		if d == nil {
			return DiskInfo{}, fmt.Errorf("disk stat %s: %w", req.ID, ErrDistroNotRunning)
		}
		return statDisk(d.root)
	case DiskTrim:
		if d != nil {
			return trimDisk(d.root)
		}
		var info DiskInfo
		err := h.withStoppedDisk(ctx, dreq, func(dev string) error {
			dir, err := h.mountScratch(dev)
			if err != nil {
				return err
			}
			defer h.unmountScratch(dir)
			info, err = trimDisk(dir)
			return err
		})
		return info, err
	case DiskGrow:
		if d == nil {
			return DiskInfo{}, fmt.Errorf("disk grow %s: %w", req.ID, ErrDistroNotRunning)
		}
		return h.growOnline(ctx, d, req.Size)
	case DiskResize:
		if d != nil {
			return DiskInfo{}, fmt.Errorf("disk resize %s: %w: the distro runs; a running distro's disk only grows online", req.ID, ErrBadRequest)
		}
		var info DiskInfo
		err := h.withStoppedDisk(ctx, dreq, func(dev string) error {
			var err error
			info, err = resizeOffline(ctx, dev, req.Size)
			return err
		})
		return info, err
	}
	return DiskInfo{}, fmt.Errorf("disk: %w: action %q", ErrBadRequest, req.Action)
}

// withStoppedDisk finds the stopped distro's disk the host attached at
// req's target, checks no running distro has it, runs f on its device node,
// and waits until the device is free again for the host to unplug it.
func (h *vmHost) withStoppedDisk(ctx context.Context, req DistroRequest, f func(dev string) error) error {
	wctx, cancel := context.WithTimeout(ctx, distroStartTimeout)
	dev, err := h.waitDisk(wctx, req.DiskTarget)
	cancel()
	if err != nil {
		return fmt.Errorf("disk %s: %w", req.ID, err)
	}
	if other := h.usingDisk(dev); other != "" {
		return fmt.Errorf("disk %s: %w: disk target %d (%s) is distro %s's", req.ID, ErrBadRequest, req.DiskTarget, dev, other)
	}
	if err := f(dev); err != nil {
		return fmt.Errorf("disk %s: %w", req.ID, err)
	}
	return waitDiskFree(ctx, dev)
}

// mountScratch mounts a stopped distro's disk in a new directory, nosuid,
// nodev and noexec: only the agent looks at it, to trim it.
func (h *vmHost) mountScratch(dev string) (string, error) {
	dir := filepath.Join(filepath.Dir(h.exportDir), "disk")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "m-")
	if err != nil {
		return "", err
	}
	if err := unix.Mount(dev, tmp, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("mount %s: %w", dev, err)
	}
	return tmp, nil
}

func (h *vmHost) unmountScratch(dir string) {
	syncFS(dir)
	if err := unix.Unmount(dir, 0); err != nil {
		h.log.Error("unmount", "dir", dir, "err", err)
		return
	}
	os.Remove(dir)
}

// statDisk reports the file system mounted at dir.
func statDisk(dir string) (DiskInfo, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return DiskInfo{}, fmt.Errorf("statfs: %w", err)
	}
	bs := int64(st.Bsize)
	return DiskInfo{SizeBytes: int64(st.Blocks) * bs, FreeBytes: int64(st.Bfree) * bs, AvailableBytes: int64(st.Bavail) * bs}, nil
}

// trimDisk discards the free blocks of the file system mounted at dir, as
// fstrim does: one FITRIM over the whole range. QEMU's discard=unmap turns
// the discards into holes in the host's image.
func trimDisk(dir string) (DiskInfo, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return DiskInfo{}, fmt.Errorf("trim: %w", err)
	}
	defer unix.Close(fd)
	// Flush first: blocks freed by deletes still in the journal's running
	// transaction are not free yet as FITRIM sees them.
	unix.Syncfs(fd)
	r := fstrimRange{Start: 0, Length: ^uint64(0), Minlen: 0}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fitrim, uintptr(unsafe.Pointer(&r))); errno != 0 {
		return DiskInfo{}, fmt.Errorf("trim: FITRIM: %w", errno)
	}
	info, err := statDisk(dir)
	info.TrimmedBytes = int64(r.Length)
	return info, err
}

// growOnline grows running distro d's file system to size bytes, the new
// size of its device, which the host has just grown: the SCSI disk is
// rescanned until the kernel sees the size, then ext4 is grown in place.
func (h *vmHost) growOnline(ctx context.Context, d *vmDistro, size int64) (DiskInfo, error) {
	name := filepath.Base(d.dev)
	sysDev := filepath.Join(h.sysRoot, "class", "block", name)
	if err := os.WriteFile(filepath.Join(sysDev, "device", "rescan"), []byte("1"), 0); err != nil {
		return DiskInfo{}, fmt.Errorf("grow: rescan %s: %w", name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, growWait)
	defer cancel()
	tick := time.NewTicker(diskPoll)
	defer tick.Stop()
	var devSize int64
	for {
		b, err := os.ReadFile(filepath.Join(sysDev, "size"))
		if err != nil {
			return DiskInfo{}, fmt.Errorf("grow: %w", err)
		}
		sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return DiskInfo{}, fmt.Errorf("grow: %s size %q: %w", name, b, err)
		}
		if devSize = sectors * 512; devSize >= size {
			break
		}
		select {
		case <-wctx.Done():
			return DiskInfo{}, fmt.Errorf("grow: %s is %d bytes, not the %d asked for: %w", name, devSize, size, wctx.Err())
		case <-tick.C:
		}
	}
	before, err := statDisk(d.root)
	if err != nil {
		return DiskInfo{}, fmt.Errorf("grow: %w", err)
	}
	fd, err := unix.Open(d.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return DiskInfo{}, fmt.Errorf("grow: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return DiskInfo{}, fmt.Errorf("grow: %w", err)
	}
	blocks := uint64(size / st.Bsize)
	if int64(blocks)*st.Bsize > before.SizeBytes {
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ext4ResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
			return DiskInfo{}, fmt.Errorf("grow: EXT4_IOC_RESIZE_FS to %d blocks: %w", blocks, errno)
		}
	}
	return statDisk(d.root)
}

// resizeOffline checks the unmounted file system on dev (e2fsck -f -p) and
// resizes it to size bytes with resize2fs, refusing with ErrDiskTooSmall a
// size below what its files need (resize2fs -P).
func resizeOffline(ctx context.Context, dev string, size int64) (DiskInfo, error) {
	sb, err := readSuperblock(dev)
	if err != nil {
		return DiskInfo{}, err
	}
	if out, err := runTool(ctx, "e2fsck", "-f", "-p", dev); err != nil {
		var ee *exec.ExitError
		// 1: errors corrected; 2: corrected, reboot (for a mounted root).
		if !errors.As(err, &ee) || ee.ExitCode() > 2 {
			return DiskInfo{}, fmt.Errorf("e2fsck found problems it would not fix by itself (%v): %s", err, quoteTail(out))
		}
	}
	blocks := size / sb.BlockSize
	info := DiskInfo{}
	if uint64(blocks) < sb.Blocks {
		out, err := runTool(ctx, "resize2fs", "-P", dev)
		if err != nil {
			return DiskInfo{}, fmt.Errorf("resize2fs -P: %v: %s", err, quoteTail(out))
		}
		m := minSizeRE.FindSubmatch(out)
		if m == nil {
			return DiskInfo{}, fmt.Errorf("resize2fs -P: no minimum size in %s", quoteTail(out))
		}
		min, err := strconv.ParseInt(string(m[1]), 10, 64)
		if err != nil {
			return DiskInfo{}, fmt.Errorf("resize2fs -P: %w", err)
		}
		info.MinBytes = min * sb.BlockSize
		if blocks < min {
			return info, fmt.Errorf("%w: its files and file system need at least %d bytes (%s); %d bytes were asked for", ErrDiskTooSmall, info.MinBytes, humanSize(info.MinBytes), size)
		}
	}
	if uint64(blocks) != sb.Blocks {
		if out, err := runTool(ctx, "resize2fs", dev, strconv.FormatInt(blocks, 10)); err != nil {
			return info, fmt.Errorf("resize2fs to %d blocks: %v: %s", blocks, err, quoteTail(out))
		}
	}
	after, err := readSuperblock(dev)
	if err != nil {
		return info, err
	}
	info.SizeBytes, info.FreeBytes, info.AvailableBytes = after.Size(), after.Free(), after.Free()
	return info, nil
}

// minSizeRE is resize2fs -P's answer, in file system blocks.
var minSizeRE = regexp.MustCompile(`(?m)^Estimated minimum size of the filesystem: (\d+)\s*$`)

// readSuperblock reads and checks the ext4 superblock on dev.
func readSuperblock(dev string) (disk.Superblock, error) {
	f, err := os.Open(dev)
	if err != nil {
		return disk.Superblock{}, err
	}
	defer f.Close()
	b := make([]byte, disk.SuperblockOffset+disk.SuperblockSize)
	if _, err := io.ReadFull(f, b); err != nil {
		return disk.Superblock{}, fmt.Errorf("read the superblock of %s: %w", dev, err)
	}
	return disk.ParseSuperblock(b)
}

// runTool runs one of e2fsprogs with a plain environment, and returns its
// output (bounded). A VM without the program (a host without e2fsprogs
// when the initramfs was built) fails with errors.ErrUnsupported.
func runTool(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runToolEnv(ctx, nil, name, args...)
}

// runToolEnv is runTool with env added to (and overriding) its plain
// environment.
func runToolEnv(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	path := ""
	for _, dir := range filepath.SplitList(diskTools) {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().IsRegular() {
			path = filepath.Join(dir, name)
			break
		}
	}
	if path == "" {
		return nil, fmt.Errorf("%w: the VM has no %s (install e2fsprogs on the host; the VM's initramfs takes it from there)", errors.ErrUnsupported, name)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append([]string{"PATH=" + diskTools, "LANG=C", "E2FSCK_CONFIG=/dev/null", "MKE2FS_CONFIG=/dev/null"}, env...)
	var out bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, n: 64 << 10}
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	return out.Bytes(), err
}

// limitedWriter keeps the first n bytes written and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// quoteTail is the end of a tool's output for an error message, quoted: it
// can hold names from the guest's file system.
func quoteTail(b []byte) string {
	const max = 1024
	b = bytes.TrimSpace(b)
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strconv.Quote(string(b))
}

// humanSize is n in binary units, for messages.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit && exp < 5; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
