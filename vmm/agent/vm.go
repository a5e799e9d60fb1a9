package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/subsys-dev/subsys/vmm/cgroup"
)

// Version 2 runs every distro in one utility VM. The same agent binary is the
// VM's /init (RunVM): it serves the host on a virtio-serial port and, for each
// distro, mounts the distro's disk and starts a copy of itself as PID 1 of new
// namespaces (RunInit), as vmm/ns does on the host for version 1. The host
// reaches a distro's agent through the VM's agent (OpenDistro).

// AgentPortName is the name of the virtio-serial port the utility VM's agent
// serves on; the host gives the port this name (virtserialport name=…).
const AgentPortName = "subsys.agent"

// MaxDiskTarget is the highest virtio-scsi target a distro's disk may have.
const MaxDiskTarget = 255

// maxDistroID bounds a distro id: it becomes a path, and the distro's agent
// socket under /run/subsys/distros/<id>/ must fit in a unix socket address.
const maxDistroID = 64

// DistroRequest names a distro of the utility VM and its disk.
type DistroRequest struct {
	// ID names the distro inside the VM: 1 to 64 characters of [A-Za-z0-9-].
	// It becomes part of paths, so nothing else passes.
	ID string `json:"id"`
	// Hostname is the distro's hostname (StartDistro): 1 to 64 characters
	// of [A-Za-z0-9._-], not starting with "-" or ".".
	Hostname string `json:"hostname"`
	// DiskTarget is the virtio-scsi target (lun 0) the host hot-plugged the
	// distro's ext4 image at, 0 to MaxDiskTarget.
	DiskTarget int `json:"disk_target"`
	// ReadOnly mounts the disk read-only.
	ReadOnly bool `json:"read_only"`
	// Systemd makes the distro's systemd its PID 1 (InitConfig.Systemd).
	Systemd bool `json:"systemd,omitempty"`
	// Limits are the distro's resource limits (StartDistro): written into
	// its cgroup before its agent is born there. Nil: none.
	Limits *cgroup.Limits `json:"limits,omitempty"`
}

// VMConfig configures RunVM. The zero value is what the utility VM runs with.
type VMConfig struct {
	// Logger receives the agent's log. Default: text lines on stderr, which
	// is the VM's console.
	Logger *slog.Logger
	// PortName is the virtio-serial port to serve on; default AgentPortName.
	PortName string
	// ModulesList is the file listing the kernel modules to load, one
	// absolute path a line, in load order; default "/modules.load" (see
	// vmm/qemu/initramfs).
	ModulesList string
}

// dataEnd is the payload of a data-end frame: how a data stream ended.
type dataEnd struct {
	Error *wireError `json:"error,omitempty"`
	// Unpacked is unpack-tree's result, in the agent's end frame.
	Unpacked *UnpackResult `json:"unpacked,omitempty"`
	// File is what a file-write wrote, in its closing frame.
	File *FileInfo `json:"file,omitempty"`
}

// validDistroID accepts 1 to maxDistroID characters of [A-Za-z0-9-]: safe as
// a single path element (no "/", no "." or ".."), in a flag value and in a
// cgroup name.
func validDistroID(id string) bool {
	if id == "" || len(id) > maxDistroID {
		return false
	}
	for _, r := range id {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-':
		default:
			return false
		}
	}
	return true
}

// validHostname accepts what sethostname(2) takes and a terminal shows
// harmlessly: 1 to 64 characters of [A-Za-z0-9._-], not starting with "-"
// or ".".
func validHostname(h string) bool {
	if h == "" || len(h) > 64 || h[0] == '-' || h[0] == '.' {
		return false
	}
	for _, r := range h {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-', r == '.', r == '_':
		default:
			return false
		}
	}
	return true
}

// checkDistroRequest validates what the host sent before any of it becomes a
// path or an argument. withHostname also checks the hostname (start-distro).
func checkDistroRequest(req DistroRequest, withHostname bool) error {
	if !validDistroID(req.ID) {
		return fmt.Errorf("%w: distro id %q: want 1 to %d characters of [A-Za-z0-9-]", ErrBadRequest, req.ID, maxDistroID)
	}
	if withHostname && !validHostname(req.Hostname) {
		return fmt.Errorf("%w: hostname %q", ErrBadRequest, req.Hostname)
	}
	if req.DiskTarget < 0 || req.DiskTarget > MaxDiskTarget {
		return fmt.Errorf("%w: disk target %d is not 0 to %d", ErrBadRequest, req.DiskTarget, MaxDiskTarget)
	}
	return nil
}

// findVirtioPort returns the device name ("vport1p1") of the virtio-serial
// port called name, looking under sysRoot (normally /sys) at
// class/virtio-ports/*/name. It returns an error wrapping fs.ErrNotExist when
// no port has that name (yet).
func findVirtioPort(sysRoot, name string) (string, error) {
	dir := filepath.Join(sysRoot, "class", "virtio-ports")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("find virtio port %q: %w", name, err)
	}
	for _, e := range ents {
		if !validVportName(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "name"))
		if err != nil {
			continue // a port without a name, or one going away
		}
		if strings.TrimRight(string(b), "\n") == name {
			return e.Name(), nil
		}
	}
	return "", fmt.Errorf("find virtio port %q: %w", name, os.ErrNotExist)
}

// validVportName accepts "vport<N>p<M>", the kernel's names for
// virtio-serial ports, so that what is read from sysfs is safe under /dev.
func validVportName(s string) bool {
	rest, ok := strings.CutPrefix(s, "vport")
	if !ok {
		return false
	}
	n, m, ok := strings.Cut(rest, "p")
	return ok && allDigits(n) && allDigits(m)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// scsiAddr is a SCSI device's address, host:channel:target:lun, as sysfs names
// it under bus/scsi/devices.
type scsiAddr struct {
	host, channel, target, lun int
}

// parseSCSIAddr parses "H:C:T:L" with decimal non-negative numbers; anything
// else (host0, target0:0:1) is not a device.
func parseSCSIAddr(s string) (scsiAddr, bool) {
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return scsiAddr{}, false
	}
	var n [4]int
	for i, x := range f {
		if !allDigits(x) || len(x) > 9 {
			return scsiAddr{}, false
		}
		v, err := strconv.Atoi(x)
		if err != nil {
			return scsiAddr{}, false
		}
		n[i] = v
	}
	return scsiAddr{n[0], n[1], n[2], n[3]}, true
}

// errNoDisk: no block device has appeared (yet) for a SCSI target.
var errNoDisk = errors.New("no block device for the disk target")

// findSCSIDisk returns the block device name ("sdb") of the disk at channel 0,
// target, lun 0, of whichever SCSI host has it, looking under sysRoot
// (normally /sys) at bus/scsi/devices/<H>:0:<target>:0/block/<name>. The
// utility VM has one virtio-scsi controller, so more than one match is an
// error. It returns errNoDisk (wrapped) while the disk has not appeared.
func findSCSIDisk(sysRoot string, target int) (string, error) {
	dir := filepath.Join(sysRoot, "bus", "scsi", "devices")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("find disk at target %d: %w", target, err)
	}
	var found []string
	for _, e := range ents {
		a, ok := parseSCSIAddr(e.Name())
		if !ok || a.channel != 0 || a.target != target || a.lun != 0 {
			continue
		}
		blocks, err := os.ReadDir(filepath.Join(dir, e.Name(), "block"))
		if err != nil {
			continue // the disk is still being probed
		}
		for _, b := range blocks {
			if validBlockName(b.Name()) {
				found = append(found, b.Name())
			}
		}
	}
	sort.Strings(found)
	switch len(found) {
	case 0:
		return "", fmt.Errorf("find disk at target %d: %w", target, errNoDisk)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("find disk at target %d: %d block devices (%s)", target, len(found), strings.Join(found, ", "))
}

// validBlockName accepts the kernel's names for SCSI disks ("sda", "sdaa"), so
// that what is read from sysfs is safe under /dev.
func validBlockName(s string) bool {
	rest, ok := strings.CutPrefix(s, "sd")
	if !ok || rest == "" || len(rest) > 8 {
		return false
	}
	for _, r := range rest {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	return true
}

// parseModuleList parses the module load list: one absolute path a line;
// blank lines and lines starting with "#" are skipped. A relative path is an
// error, so a broken list is noticed rather than resolved against the cwd.
func parseModuleList(b []byte) ([]string, error) {
	var mods []string
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !filepath.IsAbs(l) {
			return mods, fmt.Errorf("module list line %d: %q is not an absolute path", i+1, l)
		}
		mods = append(mods, filepath.Clean(l))
	}
	return mods, nil
}
