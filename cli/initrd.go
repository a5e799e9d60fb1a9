package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/vmm/hcs"
	"github.com/subsys-dev/subsys/vmm/qemu"
)

// buildInitrd writes the Windows VM's initrd into dir and returns its path:
// the embedded one when the build has it (embedded, non-nil and not empty:
// the agent and the e2fsprogs of the Linux host that built it), else one
// with the agent alone (hcs.WriteInitrd), whose VM cannot check, resize or
// format disks.
func buildInitrd(agentPath, dir string, embedded func() []byte) (string, error) {
	path := filepath.Join(dir, "initrd.img")
	if embedded != nil {
		if img := embedded(); len(img) > 0 {
			if err := writeFileAtomic(path, img); err != nil {
				return "", fmt.Errorf("initrd: %w", err)
			}
			return path, nil
		}
	}
	init, err := os.ReadFile(agentPath)
	if err != nil {
		return "", fmt.Errorf("the agent for the VM: %w", err)
	}
	if err := hcs.WriteInitrd(path, init, nil); err != nil {
		return "", err
	}
	return path, nil
}

// writeFileAtomic replaces path with data through a temporary file beside it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".initrd-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// newVMInitrdCmd is the hidden verb `make cross-windows` runs on Linux: it
// writes the Windows VM's initrd — this build's agent as /init and this
// host's e2fsck, resize2fs and mke2fs with their libraries, which a Windows
// host has none of — for the Windows build to embed.
func newVMInitrdCmd(b Build) *cobra.Command {
	return &cobra.Command{
		Use:    "vm-initrd FILE",
		Short:  "Write the Windows utility VM's initrd (the agent and this host's e2fsprogs) to FILE",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var agent []byte
			if b.Agent != nil {
				agent = b.Agent()
			}
			if len(agent) == 0 {
				return errors.New("vm-initrd: this build has no embedded agent (make agent, then build again)")
			}
			tools := qemu.DiskTools()
			if len(tools) != 3 {
				return fmt.Errorf("vm-initrd: this host has %d of e2fsck, resize2fs and mke2fs (install e2fsprogs)", len(tools))
			}
			return hcs.WriteInitrd(args[0], agent, tools)
		},
	}
}
