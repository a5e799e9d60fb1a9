//go:build !linux

package archive

import "os"

// RemoveAll is os.RemoveAll here: the removal that holds a bounded number of
// descriptors and checks each directory it climbs back to is built on Linux's
// *at system calls and statx.
func RemoveAll(path string) error {
	return os.RemoveAll(path)
}
