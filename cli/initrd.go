package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/subsys-dev/subsys/vmm/hcs"
)

// buildInitrd writes the Windows VM's initrd into dir (hcs.WriteInitrd: an
// uncompressed cpio with the agent as /init) and returns its path.
func buildInitrd(agentPath, dir string) (string, error) {
	init, err := os.ReadFile(agentPath)
	if err != nil {
		return "", fmt.Errorf("the agent for the VM: %w", err)
	}
	path := filepath.Join(dir, "initrd.img")
	if err := hcs.WriteInitrd(path, init); err != nil {
		return "", err
	}
	return path, nil
}
