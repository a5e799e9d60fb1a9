//go:build !linux

package vmm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// moveRename renames from to to, but never over an existing to (checked
// first: there is no RENAME_NOREPLACE here).
func moveRename(from, to string) error {
	if _, err := os.Lstat(to); err == nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: fs.ErrExist}
	}
	return os.Rename(from, to)
}

// isCrossDevice reports whether a rename failed because its ends are on
// different file systems.
func isCrossDevice(err error) bool { return errors.Is(err, syscall.EXDEV) }

// moveRealPath is p with its symlinks resolved when it exists, else p.
func moveRealPath(p string) (string, error) {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r, nil
	}
	return filepath.Clean(p), nil
}

func exchange(a, b string) error { return errors.ErrUnsupported }
