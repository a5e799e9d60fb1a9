package hcs

// The HCS schema 2 types subsys uses: only the fields it sets or reads,
// with the service's JSON names. The service rejects unknown fields, so
// every name here is one it documents.

// schemaVersion is the schema of the documents: 2.1, which Windows 10 1903
// (build 18362, the oldest this backend runs on) has, with
// LinuxKernelDirect.
type schemaVersion struct {
	Major int `json:"Major"`
	Minor int `json:"Minor"`
}

// computeSystem is the document HcsCreateComputeSystem takes.
type computeSystem struct {
	Owner         string        `json:"Owner"`
	SchemaVersion schemaVersion `json:"SchemaVersion"`
	// ShouldTerminateOnLastHandleClosed is false: the VM outlives the
	// server, which re-adopts it (as the QEMU backend does).
	ShouldTerminateOnLastHandleClosed bool           `json:"ShouldTerminateOnLastHandleClosed"`
	VirtualMachine                    virtualMachine `json:"VirtualMachine"`
}

type virtualMachine struct {
	// StopOnReset makes a guest reboot (or panic with panic=-1) stop the
	// VM rather than boot it again without the host knowing.
	StopOnReset     bool            `json:"StopOnReset"`
	Chipset         chipset         `json:"Chipset"`
	ComputeTopology computeTopology `json:"ComputeTopology"`
	Devices         devices         `json:"Devices"`
}

type chipset struct {
	LinuxKernelDirect *linuxKernelDirect `json:"LinuxKernelDirect,omitempty"`
}

type linuxKernelDirect struct {
	KernelFilePath string `json:"KernelFilePath"`
	InitRdPath     string `json:"InitRdPath,omitempty"`
	KernelCmdLine  string `json:"KernelCmdLine,omitempty"`
}

type computeTopology struct {
	Memory    memory    `json:"Memory"`
	Processor processor `json:"Processor"`
}

type memory struct {
	SizeInMB uint64 `json:"SizeInMB"`
	// AllowOvercommit backs guest memory with the host's virtual memory
	// (pageable), so the VM takes only what it touches.
	AllowOvercommit bool `json:"AllowOvercommit"`
	// EnableDeferredCommit commits host memory when the guest first
	// touches a page, not at boot.
	EnableDeferredCommit bool `json:"EnableDeferredCommit"`
	// EnableColdDiscardHint takes the guest's free page reports (Linux's
	// free page reporting over the Hyper-V balloon), so memory the guest
	// frees returns to the host.
	EnableColdDiscardHint bool `json:"EnableColdDiscardHint"`
}

type processor struct {
	Count int `json:"Count"`
}

type devices struct {
	// Scsi maps a controller's index ("0") to it.
	Scsi     map[string]scsi    `json:"Scsi"`
	HvSocket *hvSocket          `json:"HvSocket,omitempty"`
	ComPorts map[string]comPort `json:"ComPorts,omitempty"`
}

type scsi struct {
	// Attachments maps a LUN ("3") to its disk; empty at boot, filled by
	// modify requests.
	Attachments map[string]attachment `json:"Attachments"`
}

type attachment struct {
	Type     string `json:"Type"`
	Path     string `json:"Path"`
	ReadOnly bool   `json:"ReadOnly,omitempty"`
}

type hvSocket struct {
	HvSocketConfig hvSocketConfig `json:"HvSocketConfig"`
}

type hvSocketConfig struct {
	// DefaultBindSecurityDescriptor and DefaultConnectSecurityDescriptor
	// apply to services the table does not name: nobody.
	DefaultBindSecurityDescriptor    string `json:"DefaultBindSecurityDescriptor"`
	DefaultConnectSecurityDescriptor string `json:"DefaultConnectSecurityDescriptor"`
	// ServiceTable maps a service GUID to who on the host may connect to
	// it (and bind it).
	ServiceTable map[string]hvSocketService `json:"ServiceTable"`
}

type hvSocketService struct {
	BindSecurityDescriptor    string `json:"BindSecurityDescriptor"`
	ConnectSecurityDescriptor string `json:"ConnectSecurityDescriptor"`
	AllowWildcardBinds        bool   `json:"AllowWildcardBinds"`
}

type comPort struct {
	NamedPipe string `json:"NamedPipe"`
}

// modifySettingRequest is the document HcsModifyComputeSystem takes.
type modifySettingRequest struct {
	ResourcePath string `json:"ResourcePath"`
	RequestType  string `json:"RequestType"`
	Settings     any    `json:"Settings,omitempty"`
}

// systemQuery is HcsEnumerateComputeSystems's query.
type systemQuery struct {
	Owners []string `json:"Owners,omitempty"`
	IDs    []string `json:"Ids,omitempty"`
}

// propertyQuery is HcsGetComputeSystemProperties's query.
type propertyQuery struct {
	PropertyTypes []string `json:"PropertyTypes"`
}

// properties is what HcsGetComputeSystemProperties answers (the parts read).
type properties struct {
	ID         string      `json:"Id"`
	State      string      `json:"State"`
	RuntimeID  string      `json:"RuntimeId"`
	Statistics *statistics `json:"Statistics,omitempty"`
}

type statistics struct {
	Uptime100ns uint64       `json:"Uptime100ns"`
	Memory      *memoryStats `json:"Memory,omitempty"`
}

type memoryStats struct {
	MemoryUsageCommitBytes            uint64 `json:"MemoryUsageCommitBytes"`
	MemoryUsagePrivateWorkingSetBytes uint64 `json:"MemoryUsagePrivateWorkingSetBytes"`
}
