package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// The programs, by name (looked up in progDirs) or by absolute path; tests
// put a stand-in in their place.
var (
	mkfsProg      = "mkfs.ext4"
	e2fsckProg    = "e2fsck"
	resize2fsProg = "resize2fs"
)

// progDirs is where the programs are looked up, rather than the server's
// $PATH, so that a root process runs the system's e2fsprogs and not whatever
// a changed environment puts first.
var progDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// Create makes the ext4 image path, of maxSize bytes (rounded down to
// BlockSize), holding a copy of the directory tree: names, modes, owners,
// times, hard links, symlinks, device nodes, fifos and extended attributes.
// The tree must be trusted (mkfs reads it as root) and not change meanwhile.
//
// The image appears at path whole or not at all: it is made in a temporary
// file beside path, synced, and renamed into place, and path must not exist
// yet. The file is sparse; on the host it takes about the tree's size plus a
// few MiB of metadata (see mkfsArgs). Cancelling ctx kills mkfs and removes
// the temporary file.
func Create(ctx context.Context, path, tree string, maxSize int64, opts Options) (err error) {
	maxSize -= maxSize % BlockSize
	if maxSize <= 0 {
		return fmt.Errorf("disk: create %s: size %d is below one block", path, maxSize)
	}
	if len(opts.Label) > 16 {
		return fmt.Errorf("disk: create %s: label %q is longer than 16 bytes", path, opts.Label)
	}
	if opts.BytesPerInode < 0 || opts.JournalMiB < 0 {
		return fmt.Errorf("disk: create %s: negative option", path)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("disk: create %s: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk: create %s: %w", path, err)
	}
	inodes, err := countInodes(ctx, tree)
	if err != nil {
		return fmt.Errorf("disk: create %s from %s: %w", path, tree, err)
	}

	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("disk: create %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	// The hole comes first: mkfs then sees a file of the final size that
	// reads as zeros, which is what assume_storage_prezeroed relies on.
	if err := f.Truncate(maxSize); err != nil {
		return fmt.Errorf("disk: create %s: size it to %d: %w", path, maxSize, err)
	}
	conf, err := writeConf(dir)
	if err != nil {
		return fmt.Errorf("disk: create %s: %w", path, err)
	}
	defer os.Remove(conf)

	args := mkfsArgs(tmp, tree, maxSize, inodes, opts)
	if _, err := run(ctx, mkfsProg, []string{"MKE2FS_CONFIG=" + conf}, args...); err != nil {
		return fmt.Errorf("disk: create %s from %s: %w", path, tree, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("disk: create %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return fmt.Errorf("disk: create %s: %w", path, err)
	}
	f = nil
	// RENAME_NOREPLACE: an image that appeared at path meanwhile (another
	// distro's, say) is never replaced.
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE); err != nil {
		return fmt.Errorf("disk: create %s: rename into place: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("disk: create %s: %w", path, err)
	}
	return nil
}

// mkfsArgs are mkfs.ext4's arguments to make image from tree: formatArgs
// (shared with the VM's agent, see FormatArgs) and the tree.
func mkfsArgs(image, tree string, size, treeInodes int64, opts Options) []string {
	return append(formatArgs(size, treeInodes, opts), "-d", tree, image)
}

// countInodes counts the entries of tree, tree itself included.
func countInodes(ctx context.Context, tree string) (int64, error) {
	fi, err := os.Lstat(tree)
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("%s is not a directory", tree)
	}
	var n int64
	err = filepath.WalkDir(tree, func(_ string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		if n%4096 == 0 {
			return ctx.Err()
		}
		return nil
	})
	return n, err
}

// writeConf writes mke2fsConf into a temporary file in dir.
func writeConf(dir string) (string, error) {
	f, err := os.CreateTemp(dir, ".mke2fs-*.conf")
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(mke2fsConf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// Check runs e2fsck -fn on the image path: a full check that changes
// nothing, and an error naming what it found unless the filesystem is clean.
//
// Only for images this server made and whose content it still trusts (made
// by Create, not yet written by a guest): e2fsck parses the whole
// filesystem as root, and a crafted image can exploit it. Imported images,
// and images a guest has used, are checked inside the VM.
func Check(ctx context.Context, path string) error {
	if _, err := run(ctx, e2fsckProg, nil, "-f", "-n", path); err != nil {
		return fmt.Errorf("disk: check %s: %w", path, err)
	}
	return nil
}

// Grow raises the image path's maximum size to newMax (rounded down to
// BlockSize) and grows its filesystem to fill it, offline: the image must
// not be in use by a VM. A newMax below the current size is an error; the
// same size does nothing.
//
// The same trust rule as Check's applies: resize2fs parses the filesystem as
// root. For a disk a guest has used, extend the file with the VM stopped
// and grow the filesystem from inside (resize2fs on the mounted disk). If
// resize2fs fails, the file stays at its new size, which is harmless (a
// filesystem may be smaller than its file), rather than being cut back over
// blocks resize2fs may already have used.
func Grow(ctx context.Context, path string, newMax int64) error {
	newMax -= newMax % BlockSize
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("disk: grow %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("disk: grow %s: not a regular file", path)
	}
	switch {
	case newMax < fi.Size():
		return fmt.Errorf("disk: grow %s: new size %d is below the current %d; images never shrink", path, newMax, fi.Size())
	case newMax == fi.Size():
		return nil
	}
	if err := os.Truncate(path, newMax); err != nil {
		return fmt.Errorf("disk: grow %s to %d: %w", path, newMax, err)
	}
	// No size argument: resize2fs fills the file.
	if _, err := run(ctx, resize2fsProg, nil, path); err != nil {
		return fmt.Errorf("disk: grow %s to %d: %w", path, newMax, err)
	}
	return nil
}

// Usage reports the image's apparent size (its maximum) and the bytes it
// takes on the host's disk (st_blocks), which is what it costs.
func Usage(path string) (apparent, allocated int64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, fmt.Errorf("disk: usage of %s: %w", path, &fs.PathError{Op: "stat", Path: path, Err: err})
	}
	return st.Size, st.Blocks * 512, nil
}

// syncDir fsyncs a directory, so a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// lookProg finds an e2fsprogs program in progDirs.
func lookProg(name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	for _, d := range progDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %v (install e2fsprogs): %w", name, progDirs, exec.ErrNotFound)
}

// boundedBuffer keeps the first max bytes written to it and drops the rest,
// so a program's output cannot grow the server's memory.
type boundedBuffer struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room < len(p) {
		b.cut = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

// run runs an e2fsprogs program with a small fixed environment (the C
// locale, so messages are the same everywhere; no E2FSPROGS_* or
// MKE2FS_* settings inherited from the server's) plus env, killing it when
// ctx ends. Its error names the program and carries its output (e2fsck
// reports on stdout, the others on stderr), sanitized and bounded.
func run(ctx context.Context, name string, env []string, args ...string) ([]byte, error) {
	prog, err := lookProg(name)
	if err != nil {
		return nil, err
	}
	out := &boundedBuffer{max: 4 * maxStderr}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}, env...)
	cmd.Stdout = out
	cmd.Stderr = out
	// Kill is the default Cancel; WaitDelay bounds the wait for the output
	// pipes should the program have left a child holding them.
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if err == nil {
		return out.buf.Bytes(), nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return nil, fmt.Errorf("%s: %w (%v)", filepath.Base(prog), cerr, err)
	}
	msg := sanitize(tail(out.buf.Bytes()))
	return nil, fmt.Errorf("%s: %w: %s", filepath.Base(prog), err, msg)
}

// tail keeps the last maxStderr bytes of a program's output: the error that
// stopped it is at the end.
func tail(b []byte) []byte {
	if len(b) > maxStderr {
		b = b[len(b)-maxStderr:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	return b
}
