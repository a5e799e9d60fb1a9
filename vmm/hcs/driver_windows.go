package hcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/Microsoft/go-winio"
	"github.com/Microsoft/go-winio/pkg/guid"
	"github.com/Microsoft/go-winio/vhd"
	"github.com/Microsoft/hcsshim/osversion"
	"golang.org/x/sys/windows"
)

// minBuild is the oldest Windows this backend runs on: Windows 10 1903,
// whose Host Compute Service has schema 2.1 with LinuxKernelDirect and
// whose hvsocket reaches a Linux guest's AF_VSOCK ports.
const minBuild = osversion.V19H1

// HRESULTs of the Host Compute Service this driver tells apart.
const (
	hcsSystemNotFound = syscall.Errno(0xc037010e) // HCS_E_SYSTEM_NOT_FOUND
	hrTimeout         = syscall.Errno(0x800705b4) // HRESULT_FROM_WIN32(ERROR_TIMEOUT)
)

// waitSlice is how long one HcsWaitForOperationResult call blocks, so that
// a cancelled context is noticed.
const waitSlice = 250 * time.Millisecond

// stopPoll is how often Wait asks whether the system has stopped.
const stopPoll = 500 * time.Millisecond

// hcsAvailable says whether computecore.dll and its functions load: a
// generated call on a missing function panics, so every entry point asks
// first. Without the Virtual Machine Platform feature they do not.
var hcsAvailable = sync.OnceValue(func() error {
	for _, p := range []*windows.LazyProc{procHcsCreateOperation, procHcsCloseOperation, procHcsWaitForOperationResult,
		procHcsCreateComputeSystem, procHcsOpenComputeSystem, procHcsCloseComputeSystem, procHcsStartComputeSystem,
		procHcsShutDownComputeSystem, procHcsTerminateComputeSystem, procHcsModifyComputeSystem,
		procHcsGetComputeSystemProperties, procHcsEnumerateComputeSystems, procHcsGrantVmAccess} {
		if err := p.Find(); err != nil {
			return fmt.Errorf("%w: the Host Compute Service is missing (%v): turn on the Windows feature \"Virtual Machine Platform\" (dism /online /enable-feature /featurename:VirtualMachinePlatform) and restart", errors.ErrUnsupported, err)
		}
	}
	return nil
})

// platformDriver is the Host Compute Service.
func platformDriver() (Driver, error) {
	return hcsDriver{}, nil
}

// hcsDriver calls computecore.dll and virtdisk.dll. Nothing in it has run
// on Windows in this project's tests: it compiles in CI, and the logic it
// serves is tested on Linux against a fake.
type hcsDriver struct{}

// Preflight refuses Windows older than 10 1903 and hosts without the
// Host Compute Service (the Virtual Machine Platform feature).
func (hcsDriver) Preflight() error {
	// hcsshim's osversion reads the build as its own callers do.
	if b := osversion.Build(); b < minBuild {
		return fmt.Errorf("version 2 distros need Windows 10 version 1903 (build %d) or later; this is build %d", minBuild, b)
	}
	if err := hcsAvailable(); err != nil {
		return err
	}
	if err := procResizeVirtualDisk.Find(); err != nil {
		return fmt.Errorf("virtdisk.dll: %w", err)
	}
	return nil
}

// utf16 converts s for a call; s never holds NUL (JSON and paths).
func utf16(s string) (*uint16, error) {
	return windows.UTF16PtrFromString(s)
}

// run creates an operation, starts the call with it and waits for its
// result document, bounded by ctx.
func run(ctx context.Context, what string, call func(op hcsOperation) error) (string, error) {
	op := hcsCreateOperation(0, 0)
	if op == 0 {
		return "", fmt.Errorf("%s: HcsCreateOperation failed", what)
	}
	defer hcsCloseOperation(op)
	if err := call(op); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	for {
		var res *uint16
		err := hcsWaitForOperationResult(op, uint32(waitSlice/time.Millisecond), &res)
		doc := ""
		if res != nil {
			doc = windows.UTF16PtrToString(res)
			windows.LocalFree(windows.Handle(unsafe.Pointer(res)))
		}
		if errors.Is(err, hrTimeout) || errors.Is(err, windows.ERROR_TIMEOUT) || errors.Is(err, syscall.Errno(windows.WAIT_TIMEOUT)) {
			if ctx.Err() != nil {
				return "", fmt.Errorf("%s: %w", what, ctx.Err())
			}
			continue
		}
		if err != nil {
			if doc != "" {
				return doc, fmt.Errorf("%s: %w: %s", what, err, doc)
			}
			return "", fmt.Errorf("%s: %w", what, err)
		}
		return doc, nil
	}
}

func (hcsDriver) Create(ctx context.Context, id string, doc []byte) (System, error) {
	if err := hcsAvailable(); err != nil {
		return nil, err
	}
	pid, err := utf16(id)
	if err != nil {
		return nil, err
	}
	pdoc, err := utf16(string(doc))
	if err != nil {
		return nil, err
	}
	var h hcsSystem
	if _, err := run(ctx, "HcsCreateComputeSystem", func(op hcsOperation) error {
		return hcsCreateComputeSystem(pid, pdoc, op, 0, &h)
	}); err != nil {
		if h != 0 {
			hcsCloseComputeSystem(h)
		}
		return nil, err
	}
	return &hcsSys{h: h, id: id}, nil
}

func (hcsDriver) Open(ctx context.Context, id string) (System, error) {
	if err := hcsAvailable(); err != nil {
		return nil, err
	}
	pid, err := utf16(id)
	if err != nil {
		return nil, err
	}
	var h hcsSystem
	if err := hcsOpenComputeSystem(pid, windows.GENERIC_ALL, &h); err != nil {
		if errors.Is(err, hcsSystemNotFound) {
			return nil, ErrNoSystem
		}
		return nil, fmt.Errorf("HcsOpenComputeSystem %s: %w", id, err)
	}
	return &hcsSys{h: h, id: id}, nil
}

func (hcsDriver) List(ctx context.Context, query []byte) ([]SystemInfo, error) {
	if err := hcsAvailable(); err != nil {
		return nil, err
	}
	pq, err := utf16(string(query))
	if err != nil {
		return nil, err
	}
	doc, err := run(ctx, "HcsEnumerateComputeSystems", func(op hcsOperation) error {
		return hcsEnumerateComputeSystems(pq, op)
	})
	if err != nil {
		return nil, err
	}
	var out []SystemInfo
	if doc == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(doc), &out); err != nil {
		return nil, fmt.Errorf("HcsEnumerateComputeSystems: %w", err)
	}
	return out, nil
}

func (hcsDriver) CreateVHDX(ctx context.Context, path string, size int64) error {
	params := vhd.CreateVirtualDiskParameters{Version: 2, Version2: vhd.CreateVersion2{
		MaximumSize: uint64(size), BlockSizeInBytes: 1 << 20}}
	h, err := vhd.CreateVirtualDisk(path, vhd.VirtualDiskAccessNone, vhd.CreateVirtualDiskFlagNone, &params)
	if err != nil {
		return err
	}
	return syscall.CloseHandle(h)
}

// openVHDX opens path for metadata operations (resize, size).
func openVHDX(path string) (windows.Handle, error) {
	h, err := vhd.OpenVirtualDisk(path, vhd.VirtualDiskAccessNone, vhd.OpenVirtualDiskFlagNone)
	return windows.Handle(h), err
}

func (hcsDriver) ResizeVHDX(ctx context.Context, path string, size int64) error {
	if err := procResizeVirtualDisk.Find(); err != nil {
		return err
	}
	h, err := openVHDX(path)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(h)
	if err := resizeVirtualDisk(h, 0, &resizeVirtualDiskParameters{Version: 1, NewSize: uint64(size)}, nil); err != nil {
		return fmt.Errorf("ResizeVirtualDisk %s: %w", path, err)
	}
	return nil
}

// VirtualSize is the VHDX's size as the guest sees it (its file is
// smaller: the disk is dynamic).
func (hcsDriver) VirtualSize(path string) (int64, error) {
	if err := procGetVirtualDiskInformation.Find(); err != nil {
		return 0, err
	}
	h, err := openVHDX(path)
	if err != nil {
		return 0, err
	}
	defer windows.CloseHandle(h)
	info := getVirtualDiskInfoSize{Version: 1}
	size := uint32(unsafe.Sizeof(info))
	if err := getVirtualDiskInformation(h, &size, &info, nil); err != nil {
		return 0, fmt.Errorf("GetVirtualDiskInformation %s: %w", path, err)
	}
	return int64(info.VirtualSize), nil
}

func (hcsDriver) GrantVMAccess(ctx context.Context, id, path string) error {
	if err := hcsAvailable(); err != nil {
		return err
	}
	pid, err := utf16(id)
	if err != nil {
		return err
	}
	pp, err := utf16(path)
	if err != nil {
		return err
	}
	if err := hcsGrantVmAccess(pid, pp); err != nil {
		return fmt.Errorf("HcsGrantVmAccess %s: %w", path, err)
	}
	return nil
}

func (hcsDriver) DialAgent(ctx context.Context, runtimeID string, port uint32) (net.Conn, error) {
	vm, err := guid.FromString(runtimeID)
	if err != nil {
		return nil, fmt.Errorf("the VM's runtime id %q: %w", runtimeID, err)
	}
	return winio.Dial(ctx, &winio.HvsockAddr{VMID: vm, ServiceID: winio.VsockServiceID(port)})
}

func (hcsDriver) OpenConsole(ctx context.Context, pipe string) (io.ReadCloser, error) {
	return winio.DialPipeContext(ctx, pipe)
}

// hcsSys is a compute system handle.
type hcsSys struct {
	h  hcsSystem
	id string
}

func (s *hcsSys) Start(ctx context.Context) error {
	_, err := run(ctx, "HcsStartComputeSystem", func(op hcsOperation) error {
		return hcsStartComputeSystem(s.h, op, nil)
	})
	return err
}

func (s *hcsSys) Modify(ctx context.Context, req []byte) error {
	p, err := utf16(string(req))
	if err != nil {
		return err
	}
	_, err = run(ctx, "HcsModifyComputeSystem", func(op hcsOperation) error {
		return hcsModifyComputeSystem(s.h, op, p, 0)
	})
	return err
}

func (s *hcsSys) Properties(ctx context.Context, query []byte) ([]byte, error) {
	var q *uint16
	if len(query) > 0 {
		var err error
		if q, err = utf16(string(query)); err != nil {
			return nil, err
		}
	}
	doc, err := run(ctx, "HcsGetComputeSystemProperties", func(op hcsOperation) error {
		return hcsGetComputeSystemProperties(s.h, op, q)
	})
	return []byte(doc), err
}

func (s *hcsSys) Shutdown(ctx context.Context) error {
	_, err := run(ctx, "HcsShutDownComputeSystem", func(op hcsOperation) error {
		return hcsShutDownComputeSystem(s.h, op, nil)
	})
	return err
}

func (s *hcsSys) Terminate(ctx context.Context) error {
	_, err := run(ctx, "HcsTerminateComputeSystem", func(op hcsOperation) error {
		return hcsTerminateComputeSystem(s.h, op, nil)
	})
	if errors.Is(err, hcsSystemNotFound) {
		return nil
	}
	return err
}

// Wait polls the system's state: a handle's exit notification needs a
// callback into Go (HcsSetComputeSystemCallback), which polling avoids.
func (s *hcsSys) Wait(ctx context.Context) error {
	t := time.NewTicker(stopPoll)
	defer t.Stop()
	for {
		raw, err := s.Properties(ctx, nil)
		if errors.Is(err, hcsSystemNotFound) {
			return nil
		}
		if err == nil {
			if p, perr := parseProperties(raw); perr == nil && p.State == "Stopped" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *hcsSys) Close() error {
	hcsCloseComputeSystem(s.h)
	return nil
}

// hostMemory is the host's physical memory in bytes (0 if unknown).
func hostMemory() int64 {
	if procGlobalMemoryStatusEx.Find() != nil {
		return 0
	}
	var m memoryStatusEx
	m.Length = uint32(unsafe.Sizeof(m))
	if err := globalMemoryStatusEx(&m); err != nil {
		return 0
	}
	return int64(m.TotalPhys)
}
