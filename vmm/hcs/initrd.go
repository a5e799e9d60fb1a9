package hcs

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/subsys-dev/subsys/vmm/qemu/initramfs"
)

// WriteInitrd writes the utility VM's initrd to path: the static agent
// binary as /init, and programs (host paths, carried with their ELF
// interpreter and libraries: initramfs.Spec.Programs). The kernel must have
// every driver built in (see the package comment): there are no modules to
// load. The programs are the e2fsprogs (e2fsck, resize2fs, mke2fs) the VM's
// agent runs on distros' disks; a Windows host has none to give, so `make
// cross-windows` writes this initrd on Linux (`subsys vm-initrd`) and embeds
// it, and serve on Windows falls back to the agent alone (whose disk checks,
// resizes and formats then fail, saying that the program is missing) only
// in a build without it. The file is replaced atomically.
func WriteInitrd(path string, agentBinary []byte, programs []string) error {
	if len(agentBinary) == 0 {
		return fmt.Errorf("initrd: no agent binary")
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".initrd-*")
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = initramfs.Build(f, initramfs.Spec{Init: agentBinary, Programs: programs})
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
