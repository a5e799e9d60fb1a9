package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/subsys-dev/subsys/vmm/qemu/initramfs"
)

// buildInitrd writes the VM's initrd into dir, an uncompressed cpio (any
// kernel unpacks it) with the agent as /init, and returns its path.
func buildInitrd(agentPath, dir string) (string, error) {
	init, err := os.ReadFile(agentPath)
	if err != nil {
		return "", fmt.Errorf("the agent for the VM: %w", err)
	}
	path := filepath.Join(dir, "initrd.img")
	f, err := os.CreateTemp(dir, ".initrd-*")
	if err != nil {
		return "", fmt.Errorf("initrd: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = initramfs.Build(f, initramfs.Spec{Init: init})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("initrd: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("initrd: %w", err)
	}
	return path, nil
}
