package hcs

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/subsys-dev/subsys/vmm/qemu/initramfs"
)

// WriteInitrd writes the utility VM's initrd to path: the static agent
// binary as /init, and nothing else. The kernel must have every driver
// built in (see the package comment): there are no modules to load. The
// e2fsprogs the QEMU backend's initramfs carries from the host (e2fsck,
// resize2fs, mke2fs) are not in it, since a Windows host has none to give:
// until the agent program carries them, the VM's disk checks, resizes and
// formats fail, saying that the program is missing. The file is replaced
// atomically.
func WriteInitrd(path string, agentBinary []byte) error {
	if len(agentBinary) == 0 {
		return fmt.Errorf("initrd: no agent binary")
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".initrd-*")
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = initramfs.Build(f, initramfs.Spec{Init: agentBinary})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	return nil
}
