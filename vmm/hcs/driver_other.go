//go:build !windows

package hcs

import "errors"

// platformDriver is the Host Compute Service, which only Windows has.
func platformDriver() (Driver, error) {
	return nil, errors.ErrUnsupported
}

// hostMemory is unknown here: no VM runs on this system.
func hostMemory() int64 { return 0 }
