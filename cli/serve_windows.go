package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/hcs"
)

// newPlatform is Windows's wiring: version 2 only, in one utility VM the
// Host Compute Service makes (vmm/hcs); there is no version 1 backend, so
// the Manager refuses every version 1 request (vmm.ErrNoVersion1).
//
// The VM's kernel is the kernel setting, read once here (a change applies
// at the next `subsys serve`): a kernel image file with the Hyper-V drivers
// built in, default <data>\vm\kernel. Its initrd is built here from the
// embedded agent as /init, with no modules (such a kernel needs none).
func newPlatform(ctx context.Context, pc platformConfig) (*platform, error) {
	st, err := vmm.ReadSettings(ctx, pc.db)
	if err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	vmDir := filepath.Join(pc.dataDir, "vm")
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", vmDir, err)
	}
	kernel := st.Kernel
	if kernel == "" {
		kernel = filepath.Join(vmDir, "kernel")
	}
	if fi, err := os.Stat(kernel); err != nil || !fi.Mode().IsRegular() {
		// Not fatal: the settings and every other request work, and the
		// VM's start names the missing kernel again.
		pc.log.Error("no kernel for version 2 distros: put a WSL 2 kernel image (bzImage) there, or set the kernel setting to one, and restart the server",
			"kernel", kernel, "err", err)
	}
	initrd, err := buildInitrd(pc.agentPath, vmDir, pc.vmInitrd)
	if err != nil {
		return nil, err
	}
	v2, err := hcs.New(hcs.Config{
		StateDir:      vmDir,
		Kernel:        kernel,
		Initrd:        initrd,
		KernelCmdline: os.Getenv("SUBSYS_KERNEL_CMDLINE"),
		MemoryMiB:     st.VMMemoryMiB,
		CPUs:          st.VMProcessors,
		Logger:        pc.log,
	})
	if err != nil {
		return nil, fmt.Errorf("the Host Compute Service backend: %w", err)
	}
	return &platform{
		backends: map[int]vmm.Backend{2: v2},
		guest:    v2,
		close:    func() { v2.Close() },
	}, nil
}

// restrictedDescriptor is restrictedSDDL for the user this process runs as.
func restrictedDescriptor() (*windows.SECURITY_DESCRIPTOR, error) {
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("the server's user: %w", err)
	}
	sd, err := windows.SecurityDescriptorFromString(restrictedSDDL(tu.User.Sid.String()))
	if err != nil {
		return nil, fmt.Errorf("security descriptor: %w", err)
	}
	return sd, nil
}

// setRestricted gives path restrictedSDDL's protected DACL; on a directory
// Windows carries it down to what is already inside.
func setRestricted(path string, sd *windows.SECURITY_DESCRIPTOR) error {
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		return fmt.Errorf("%s: set its access control list: %w", path, err)
	}
	return nil
}

// prepareDataDir creates the data directory with the restricted DACL in
// the same call (so it is never open to others, even for a moment), or
// gives an existing one that DACL. Everything made inside — the token, the
// database, the socket — inherits it.
func prepareDataDir(dataDir string, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(dataDir), 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	sd, err := restrictedDescriptor()
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	name, err := windows.UTF16PtrFromString(dataDir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	sa := windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(unsafe.Sizeof(sa))
	if err := windows.CreateDirectory(name, &sa); err != nil {
		if !errors.Is(err, windows.ERROR_ALREADY_EXISTS) {
			return fmt.Errorf("create data directory: %w", err)
		}
		if err := setRestricted(dataDir, sd); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	return nil
}

// listenSocket opens the CLI's AF_UNIX socket (Windows 10 1803 and later).
// The file is made inside the restricted data directory, so it inherits
// its DACL as it is created, and is then given that DACL explicitly too:
// only the server's user and Administrators may connect. The server also
// checks each peer's process token (server.peerCred).
func listenSocket(path string, log *slog.Logger) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: another subsys server is serving this data directory", path)
		}
		os.Remove(path) // left by a server that died
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	sd, err := restrictedDescriptor()
	if err == nil {
		err = setRestricted(path, sd)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket: %w", err)
	}
	return ln, nil
}
