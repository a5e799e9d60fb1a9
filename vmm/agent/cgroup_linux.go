package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// RemoveCgroup removes the cgroup v2 directory dir and every cgroup below it,
// deepest first: a distro with systemd leaves a tree of them. The kernel
// refuses (EBUSY) while exiting processes are still in one, so it tries for up
// to a second. A dir that does not exist is no error. Nothing is followed: a
// cgroup file system has only directories and their files.
func RemoveCgroup(dir string) error {
	var err error
	for range 50 {
		err = removeCgroupTree(dir, 0)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

// maxCgroupDepth bounds the recursion in a tree whose shape a distro chose.
const maxCgroupDepth = 64

func removeCgroupTree(dir string, depth int) error {
	if depth > maxCgroupDepth {
		return fmt.Errorf("cgroup tree deeper than %d", maxCgroupDepth)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroupTree(filepath.Join(dir, e.Name()), depth+1); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return os.Remove(dir)
}
