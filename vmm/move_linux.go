package vmm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// moveRename renames from to to, but never over an existing to: a move
// places its files only where nothing is, so that it can neither replace
// another's files nor, undoing itself, remove them. On a file system
// without RENAME_NOREPLACE it checks first; the move's claim on the
// location (its staging directory) keeps other imports and moves out
// meanwhile.
func moveRename(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, serr := os.Lstat(to); serr == nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: fs.ErrExist}
		}
		return os.Rename(from, to)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// isCrossDevice reports whether a rename failed because its ends are on
// different file systems (EXDEV), which a move then copies across.
func isCrossDevice(err error) bool { return errors.Is(err, unix.EXDEV) }

// moveRealPath is the absolute, clean path p with the symlinks of its
// existing part resolved (resolveExisting), as prepareLocation sees it.
func moveRealPath(p string) (string, error) {
	r, err := resolveExisting(p)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", p, err)
	}
	return r, nil
}

// exchange swaps the two paths in one step (renameat2 RENAME_EXCHANGE):
// a restore puts a snapshot's files in place of a distro's with no moment
// when the distro has neither.
func exchange(a, b string) error {
	return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
}
