package vmm

import (
	"errors"
	"fmt"
)

// ErrNoVersion1 is the refusal of every request that needs a version 1
// backend on a host that has none (Windows: version 1 runs distros in Linux
// namespaces on the host's kernel). It is checked before anything is
// accepted — no operation, row or file comes of the request.
var ErrNoVersion1 = errors.New("version 1 distros need a Linux host")

// needBackend is nil when this host has a backend for version, else the
// error a request that needs one gets: ErrNoVersion1 for version 1,
// ErrUnsupported for any other.
func (m *Manager) needBackend(version int) error {
	if _, ok := m.cfg.Backends[version]; ok {
		return nil
	}
	if version == 1 {
		return fmt.Errorf("%w: this server has only version 2 (use version 2, or a Linux host for version 1)", ErrNoVersion1)
	}
	return fmt.Errorf("%w: version %d distros are not available on this host", ErrUnsupported, version)
}

// effectiveDefaultVersion is the version new distros get when a request
// names none: the setting, except that a host without a version 1 backend
// has 2 (its settings may say 1 from the built-in default, which it cannot
// honour).
func (m *Manager) effectiveDefaultVersion(setting int) int {
	if setting == 1 {
		if _, ok := m.cfg.Backends[1]; !ok {
			return 2
		}
	}
	return setting
}
