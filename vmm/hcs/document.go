package hcs

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Owner is the Owner of the compute systems subsys creates: how a server
// finds the VM an earlier one left running (HcsEnumerateComputeSystems).
const Owner = "subsys"

// AgentVsockPort is the AF_VSOCK port the VM's agent listens on; it must
// equal agent.VsockPort. The host reaches it as the hvsocket service
// VsockServiceID(AgentVsockPort).
const AgentVsockPort = 5005

// MaxDiskTarget is the highest SCSI LUN a disk gets on the VM's one
// controller (Hyper-V's synthetic SCSI controller has 64).
const MaxDiskTarget = 63

// baseCmdline is the VM's kernel command line before Config.KernelCmdline:
// the console on COM1 (the named pipe the backend keeps), a panic ends the
// VM (with StopOnReset) instead of hanging, and quiet boot messages.
const baseCmdline = "console=ttyS0 panic=-1 quiet"

// adminOnlySD is an SDDL security descriptor granting SYSTEM and the
// Administrators group full access, and nobody else: who on the host may
// connect to the agent's hvsocket service. The server runs elevated; any
// other local process is hostile.
const adminOnlySD = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"

// denyAllSD grants nothing: services the table does not name.
const denyAllSD = "D:P"

// VMSpec is what the create document describes.
type VMSpec struct {
	// Kernel and Initrd are host paths of the kernel image and initrd.
	Kernel, Initrd string
	// Cmdline is appended to the base command line; may be empty.
	Cmdline   string
	MemoryMiB int
	CPUs      int
	// ConsolePipe is the named pipe COM1 is connected to
	// (\\.\pipe\...).
	ConsolePipe string
	// AgentService is the hvsocket service GUID of the agent's port, in
	// its string form (VsockServiceID(AgentVsockPort)).
	AgentService string
}

// ErrSpec is returned by CreateDocument for a spec it will not describe.
var ErrSpec = errors.New("hcs: invalid VM spec")

// CreateDocument returns the HCS schema 2 document of the utility VM:
// a Linux VM booted directly from its kernel and initrd, with pageable
// memory committed on first touch and given back through free page
// reporting, an empty SCSI controller for the distros' disks, the agent's
// hvsocket service open to administrators only, and COM1 on a named pipe.
func CreateDocument(s VMSpec) ([]byte, error) {
	switch {
	case s.Kernel == "":
		return nil, fmt.Errorf("%w: no kernel", ErrSpec)
	case s.MemoryMiB < 256:
		return nil, fmt.Errorf("%w: %d MiB of memory is too little (256 at least)", ErrSpec, s.MemoryMiB)
	case s.CPUs < 1:
		return nil, fmt.Errorf("%w: %d processors", ErrSpec, s.CPUs)
	case s.AgentService == "":
		return nil, fmt.Errorf("%w: no agent service", ErrSpec)
	case s.ConsolePipe != "" && !strings.HasPrefix(s.ConsolePipe, `\\.\pipe\`):
		return nil, fmt.Errorf("%w: console pipe %q is not a local named pipe", ErrSpec, s.ConsolePipe)
	}
	cmdline := baseCmdline
	if c := strings.TrimSpace(s.Cmdline); c != "" {
		cmdline += " " + c
	}
	doc := computeSystem{
		Owner:         Owner,
		SchemaVersion: schemaVersion{Major: 2, Minor: 1},
		VirtualMachine: virtualMachine{
			StopOnReset: true,
			Chipset: chipset{LinuxKernelDirect: &linuxKernelDirect{
				KernelFilePath: s.Kernel, InitRdPath: s.Initrd, KernelCmdLine: cmdline}},
			ComputeTopology: computeTopology{
				Memory: memory{SizeInMB: evenMiB(s.MemoryMiB), AllowOvercommit: true,
					EnableDeferredCommit: true, EnableColdDiscardHint: true},
				Processor: processor{Count: s.CPUs},
			},
			Devices: devices{
				Scsi: map[string]scsi{"0": {Attachments: map[string]attachment{}}},
				HvSocket: &hvSocket{HvSocketConfig: hvSocketConfig{
					DefaultBindSecurityDescriptor:    denyAllSD,
					DefaultConnectSecurityDescriptor: denyAllSD,
					ServiceTable: map[string]hvSocketService{s.AgentService: {
						BindSecurityDescriptor: adminOnlySD, ConnectSecurityDescriptor: adminOnlySD}},
				}},
			},
		},
	}
	if s.ConsolePipe != "" {
		doc.VirtualMachine.Devices.ComPorts = map[string]comPort{"0": {NamedPipe: s.ConsolePipe}}
	}
	return json.Marshal(doc)
}

// scsiPath is the resource path of LUN target on controller 0.
func scsiPath(target int) string {
	return "VirtualMachine/Devices/Scsi/0/Attachments/" + strconv.Itoa(target)
}

func checkTarget(target int) error {
	if target < 0 || target > MaxDiskTarget {
		return fmt.Errorf("%w: SCSI target %d is not in 0..%d", ErrSpec, target, MaxDiskTarget)
	}
	return nil
}

// AttachDiskRequest returns the modify request that hot-adds the VHDX at
// path as LUN target (the agent's DistroRequest.DiskTarget).
func AttachDiskRequest(target int, path string, readOnly bool) ([]byte, error) {
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, fmt.Errorf("%w: no disk path", ErrSpec)
	}
	return json.Marshal(modifySettingRequest{ResourcePath: scsiPath(target), RequestType: "Add",
		Settings: attachment{Type: "VirtualDisk", Path: path, ReadOnly: readOnly}})
}

// DetachDiskRequest returns the modify request that removes LUN target.
func DetachDiskRequest(target int) ([]byte, error) {
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	return json.Marshal(modifySettingRequest{ResourcePath: scsiPath(target), RequestType: "Remove"})
}

// MemoryRequest returns the modify request that sets the running VM's
// memory to mib (the balloon gives or takes the difference). The processor
// count cannot change while a VM runs: it applies at the next boot.
func MemoryRequest(mib int) ([]byte, error) {
	if mib < 256 {
		return nil, fmt.Errorf("%w: %d MiB of memory is too little (256 at least)", ErrSpec, mib)
	}
	return json.Marshal(modifySettingRequest{ResourcePath: "VirtualMachine/ComputeTopology/Memory/SizeInMB",
		RequestType: "Update", Settings: evenMiB(mib)})
}

// evenMiB rounds mib up to an even number: the Host Compute Service
// refuses a VM memory size that is not a multiple of 2 MiB.
func evenMiB(mib int) uint64 {
	return uint64(mib+1) &^ 1
}

// listQuery is the enumeration query for subsys's compute systems.
func listQuery() []byte {
	b, _ := json.Marshal(systemQuery{Owners: []string{Owner}})
	return b
}

// statsQuery asks for the VM's statistics (besides the basic properties:
// state and runtime id).
func statsQuery() []byte {
	b, _ := json.Marshal(propertyQuery{PropertyTypes: []string{"Statistics"}})
	return b
}

// parseProperties reads HcsGetComputeSystemProperties's answer.
func parseProperties(b []byte) (properties, error) {
	var p properties
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("hcs: compute system properties: %w", err)
	}
	return p, nil
}
