package hcs

import "golang.org/x/sys/windows"

// The Host Compute Service's computecore.dll (Windows 10 1809 and later)
// and virtdisk.dll's resize and size query, which go-winio's vhd package
// does not bind. The generated zsyscall_windows.go is committed. Strings
// are *uint16 (UTF-16, as the W-less names of these functions take them:
// mkwinsyscall would pass ANSI bytes for a string parameter).

//go:generate go run golang.org/x/sys/windows/mkwinsyscall -output zsyscall_windows.go hcs_windows.go

// hcsOperation and hcsSystem are computecore's HCS_OPERATION and
// HCS_SYSTEM handles.
type (
	hcsOperation windows.Handle
	hcsSystem    windows.Handle
)

//sys	hcsCreateOperation(context uintptr, callback uintptr) (op hcsOperation) = computecore.HcsCreateOperation
//sys	hcsCloseOperation(op hcsOperation) = computecore.HcsCloseOperation
//sys	hcsWaitForOperationResult(op hcsOperation, timeoutMs uint32, result **uint16) (hr error) = computecore.HcsWaitForOperationResult
//sys	hcsCreateComputeSystem(id *uint16, config *uint16, op hcsOperation, sd uintptr, system *hcsSystem) (hr error) = computecore.HcsCreateComputeSystem
//sys	hcsOpenComputeSystem(id *uint16, access uint32, system *hcsSystem) (hr error) = computecore.HcsOpenComputeSystem
//sys	hcsCloseComputeSystem(system hcsSystem) = computecore.HcsCloseComputeSystem
//sys	hcsStartComputeSystem(system hcsSystem, op hcsOperation, options *uint16) (hr error) = computecore.HcsStartComputeSystem
//sys	hcsShutDownComputeSystem(system hcsSystem, op hcsOperation, options *uint16) (hr error) = computecore.HcsShutDownComputeSystem
//sys	hcsTerminateComputeSystem(system hcsSystem, op hcsOperation, options *uint16) (hr error) = computecore.HcsTerminateComputeSystem
//sys	hcsModifyComputeSystem(system hcsSystem, op hcsOperation, config *uint16, identity windows.Handle) (hr error) = computecore.HcsModifyComputeSystem
//sys	hcsGetComputeSystemProperties(system hcsSystem, op hcsOperation, query *uint16) (hr error) = computecore.HcsGetComputeSystemProperties
//sys	hcsEnumerateComputeSystems(query *uint16, op hcsOperation) (hr error) = computecore.HcsEnumerateComputeSystems
//sys	hcsGrantVmAccess(vmID *uint16, path *uint16) (hr error) = computecore.HcsGrantVmAccess
//sys	resizeVirtualDisk(handle windows.Handle, flags uint32, params *resizeVirtualDiskParameters, overlapped *windows.Overlapped) (win32err error) = virtdisk.ResizeVirtualDisk
//sys	globalMemoryStatusEx(buf *memoryStatusEx) (err error) = kernel32.GlobalMemoryStatusEx
//sys	getVirtualDiskInformation(handle windows.Handle, size *uint32, info *getVirtualDiskInfoSize, used *uint32) (win32err error) = virtdisk.GetVirtualDiskInformation

// resizeVirtualDiskParameters is RESIZE_VIRTUAL_DISK_PARAMETERS, version 1.
type resizeVirtualDiskParameters struct {
	Version uint32
	_       uint32 // the union's 8-byte alignment
	NewSize uint64
}

// getVirtualDiskInfoSize is GET_VIRTUAL_DISK_INFO with Version
// GET_VIRTUAL_DISK_INFO_SIZE (1): the union's Size member.
type getVirtualDiskInfoSize struct {
	Version      uint32
	_            uint32
	VirtualSize  uint64
	PhysicalSize uint64
	BlockSize    uint32
	SectorSize   uint32
}

// memoryStatusEx is MEMORYSTATUSEX.
type memoryStatusEx struct {
	Length               uint32
	MemoryLoad           uint32
	TotalPhys            uint64
	AvailPhys            uint64
	TotalPageFile        uint64
	AvailPageFile        uint64
	TotalVirtual         uint64
	AvailVirtual         uint64
	AvailExtendedVirtual uint64
}
