package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Defaults of a Config's zero fields.
const (
	DefaultBinary    = "qemu-system-x86_64"
	DefaultMemoryMiB = 512
	DefaultCPUs      = 1
	// DefaultAccel is TCG, QEMU's emulator, because it runs everywhere; KVM
	// (with a fall-back to TCG when a KVM guest does not get going, as on
	// hosts where /dev/kvm exists but cannot run guests) is left to the
	// caller that wires this in.
	DefaultAccel = "tcg"
)

// Names of the sockets that Start makes QEMU create in Config.RunDir.
const (
	QMPSocketName     = "qmp.sock"
	ConsoleSocketName = "console.sock"
	// AgentSocketName is the host end of the agent's virtio-serial port.
	AgentSocketName = "agent.sock"
	// PIDFileName is where QEMU writes its pid (-pidfile), so that a server
	// started after the one that started QEMU can adopt it (Adopt).
	PIDFileName = "qemu.pid"
)

// AgentPortName is the name of the virtio-serial port the agent serves on;
// the guest finds it in /sys/class/virtio-ports/*/name.
const AgentPortName = "subsys.agent"

// SCSIBus is the bus of the virtio-scsi controller that distros' disks are
// hot-plugged on (AttachDisk).
const SCSIBus = "scsi0.0"

// maxSocketPath is the longest path a unix socket address holds on Linux
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// Config says what VM to start.
type Config struct {
	// Binary is the QEMU program, a path or a name looked up in $PATH;
	// DefaultBinary when empty.
	Binary string
	// Kernel is the path of the kernel image QEMU boots directly (-kernel).
	// Required.
	Kernel string
	// Initrd is the path of the initramfs (-initrd); none when empty.
	Initrd string
	// Append is the kernel command line (-append). The serial console is
	// ttyS0, so it usually holds "console=ttyS0".
	Append string
	// MemoryMiB is the guest's memory in MiB; DefaultMemoryMiB when zero.
	MemoryMiB int
	// HotplugMiB is memory beyond MemoryMiB that the guest gets through a
	// virtio-mem device (HotplugDeviceID), plugged as it needs it: PlugMiB
	// of it at boot, more or less later (VM.SetPluggedMemory). 0 for
	// none. The guest's kernel allocates its page structures (1.6 % of
	// RAM) only for memory that is plugged, so a VM with a large maximum
	// that uses little costs the host little.
	HotplugMiB int
	PlugMiB    int
	// CPUs is the number of virtual CPUs; DefaultCPUs when zero.
	CPUs int
	// Accel is QEMU's accelerator ("tcg", "kvm"); DefaultAccel when empty.
	Accel string
	// RunDir is the directory of the QMP, console and agent sockets and the
	// pid file. Start creates it with mode 0700 (or makes it 0700).
	// Required; its socket paths must fit in a unix socket address (107
	// bytes).
	RunDir string
	// HostShare is a host directory shared into the VM over virtio-9p with
	// the mount tag HostShareTag ("" for none). QEMU runs as root and the
	// share passes owners and modes through as they are (passthrough), so
	// the VM's root is the host's root there, as /mnt/host is in version 1.
	HostShare string
	// Virtiofsd is the virtiofsd program (a path). With HostShare set, the
	// VM gets HostShare over virtio-fs as well, with the tag HostFSTag,
	// served by virtiofsd on VirtiofsSocket; the guest prefers it to 9p.
	Virtiofsd string
	// VirtiofsdMaxFiles is virtiofsd's limit on open files (it keeps one
	// per file the guest holds in its cache); 0 means the most the host
	// allows (fs.nr_open).
	VirtiofsdMaxFiles int
	// Network gives the VM a NIC on a user-mode network with IPv4 and
	// IPv6 (see UserNet): passt's when Passt is set, QEMU's slirp otherwise.
	Network bool
	// Passt is the passt program (a path), or "" for slirp.
	Passt string
	// ExtraArgs are appended to QEMU's arguments as they are (tests use them
	// to add devices).
	ExtraArgs []string
}

// HostShareTag is the 9p mount tag of Config.HostShare.
const HostShareTag = "subsys.host"

// HostFSTag is the virtio-fs tag of Config.HostShare (with Config.Virtiofsd).
const HostFSTag = "subsys.hostfs"

// Names of the files virtiofsd uses in Config.RunDir.
const (
	VirtiofsSocketName   = "virtiofs.sock"
	VirtiofsdPIDFileName = "virtiofsd.pid"
)

// passtFD is the descriptor number QEMU finds passt's socket on (its first
// extra file).
const passtFD = 3

// UserNet is the user-mode network a VM with Config.Network gets: QEMU's
// slirp with IPv4 and IPv6 both on (naming only ipv6 turns IPv4 off). The
// host is HostAddress (and HostAddress6): slirp hands connections to it to
// the host's loopback. DNS forwards to the host's resolvers.
var UserNet = struct {
	MAC, Net, Address4, Gateway4, DNS4, Net6, Address6, Host6, DNS6 string
}{
	MAC: "52:54:00:5b:55:01", Net: "10.0.2.0/24", Address4: "10.0.2.15/24", Gateway4: "10.0.2.2", DNS4: "10.0.2.3",
	Net6: "fec0::/64", Address6: "fec0::15", Host6: "fec0::2", DNS6: "fec0::3",
}

// AgentSocket is the path of the agent's virtio-serial socket: one client at a
// time, which may disconnect and come back (a server restart) while the VM runs.
func (c Config) AgentSocket() string { return filepath.Join(c.RunDir, AgentSocketName) }

// VirtiofsSocket is the path of virtiofsd's vhost-user socket.
func (c Config) VirtiofsSocket() string { return filepath.Join(c.RunDir, VirtiofsSocketName) }

// VirtiofsdPIDFile is where Start writes virtiofsd's pid, for a server that
// adopts the VM to watch it.
func (c Config) VirtiofsdPIDFile() string { return filepath.Join(c.RunDir, VirtiofsdPIDFileName) }

// virtiofsdFileLimit is the limit on open files virtiofsd gets.
func (c Config) virtiofsdFileLimit() int {
	if c.VirtiofsdMaxFiles > 0 {
		return c.VirtiofsdMaxFiles
	}
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return n
		}
	}
	return 1 << 20
}

// PIDFile is the path of the file QEMU writes its pid to.
func (c Config) PIDFile() string { return filepath.Join(c.RunDir, PIDFileName) }

// QMPSocket is the path of the QMP socket.
func (c Config) QMPSocket() string { return filepath.Join(c.RunDir, QMPSocketName) }

// ConsoleSocket is the path of the serial console's socket.
func (c Config) ConsoleSocket() string { return filepath.Join(c.RunDir, ConsoleSocketName) }

// HotplugDeviceID is the id of the virtio-mem device (Config.HotplugMiB).
const HotplugDeviceID = "vmem0"

// hotplugMemdev is the id of the hot-pluggable memory's backend object.
const hotplugMemdev = "vmem"

func (c Config) withDefaults() Config {
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	if c.Accel == "" {
		c.Accel = DefaultAccel
	}
	return c
}

// Args returns QEMU's arguments (without the program name) for c, or why c
// cannot be started. It only computes: it neither looks at files nor runs
// anything.
//
// The machine is q35 with no default devices (-nodefaults), no host config
// files (-no-user-config), no display, and -no-reboot, so a guest reboot or
// panic (with panic=-1 on the command line) ends QEMU instead of looping.
// QMP listens without waiting for a client; the console socket makes QEMU wait
// for its client before the machine starts, so Start loses none of the
// console's first lines.
func (c Config) Args() ([]string, error) {
	c = c.withDefaults()
	var errs []error
	if c.Kernel == "" {
		errs = append(errs, errors.New("no kernel"))
	}
	if c.RunDir == "" {
		errs = append(errs, errors.New("no run directory"))
	} else if !filepath.IsAbs(c.RunDir) {
		errs = append(errs, fmt.Errorf("run directory %q is not absolute", c.RunDir))
	} else if p := c.ConsoleSocket(); len(p) > maxSocketPath || len(c.AgentSocket()) > maxSocketPath {
		errs = append(errs, fmt.Errorf("run directory %q is too long for a unix socket path (%d bytes > %d)", c.RunDir, len(p), maxSocketPath))
	}
	if c.HotplugMiB < 0 || c.PlugMiB < 0 || c.PlugMiB > c.HotplugMiB {
		errs = append(errs, fmt.Errorf("hot-plugged memory %d MiB of %d is out of range", c.PlugMiB, c.HotplugMiB))
	}
	if c.MemoryMiB < 0 {
		errs = append(errs, fmt.Errorf("memory %d MiB is negative", c.MemoryMiB))
	}
	if c.CPUs < 0 {
		errs = append(errs, fmt.Errorf("CPU count %d is negative", c.CPUs))
	}
	// The accelerator goes into an option list unescaped: allow names only.
	if strings.ContainsAny(c.Accel, ",= ") {
		errs = append(errs, fmt.Errorf("accelerator %q is not a name", c.Accel))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("qemu config: %w", err)
	}
	mem := strconv.Itoa(c.MemoryMiB)
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		// Guest memory is a shared memfd: virtio-fs (host files) needs
		// memory that virtiofsd can map, and the balloon below hands pages
		// the guest frees back to the host (free page reporting).
		"-object", "memory-backend-memfd,id=mem,share=on,size=" + mem + "M",
		"-machine", "q35,memory-backend=mem",
		"-accel", c.Accel,
		"-m", mem,
		"-smp", strconv.Itoa(c.CPUs),
		"-kernel", c.Kernel,
		"-pidfile", c.PIDFile(),
	}
	if c.HotplugMiB > 0 {
		// The hot-pluggable memory is a shared memfd too (virtiofsd maps
		// it); virtio-mem discards what the guest unplugs.
		for i, a := range args {
			if a == "-m" {
				args[i+1] = mem + "M,maxmem=" + strconv.Itoa(c.MemoryMiB+c.HotplugMiB) + "M"
			}
		}
		args = append(args,
			"-object", "memory-backend-memfd,id="+hotplugMemdev+",share=on,size="+strconv.Itoa(c.HotplugMiB)+"M",
			"-device", "virtio-mem-pci,id="+HotplugDeviceID+",memdev="+hotplugMemdev+",requested-size="+strconv.Itoa(c.PlugMiB)+"M")
	}
	if c.Initrd != "" {
		args = append(args, "-initrd", c.Initrd)
	}
	if c.Append != "" {
		args = append(args, "-append", c.Append)
	}
	args = append(args,
		// QMP first: chardevs are created in order, and the console's waits.
		"-chardev", "socket,id=qmp,path="+optEscape(c.QMPSocket())+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "socket,id=console,path="+optEscape(c.ConsoleSocket())+",server=on,wait=on",
		"-serial", "chardev:console",
		// The agent's port: QEMU listens and never waits; the guest sees
		// the host side open and close as the server connects.
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=agent,path="+optEscape(c.AgentSocket())+",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=agent,name="+AgentPortName,
		// Distros' disks are hot-plugged here (AttachDisk).
		"-device", "virtio-scsi-pci,id=scsi0",
		"-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on",
		// Entropy for the guest's getrandom at boot.
		"-device", "virtio-rng-pci",
	)
	if c.HostShare != "" {
		// multidevs=remap: the host's tree spans file systems, whose inode
		// numbers would collide in the guest without it.
		args = append(args,
			"-fsdev", "local,id=hostfs,path="+optEscape(c.HostShare)+",security_model=passthrough,multidevs=remap",
			"-device", "virtio-9p-pci,fsdev=hostfs,mount_tag="+HostShareTag)
		if c.Virtiofsd != "" {
			args = append(args,
				"-chardev", "socket,id=hostfsd,path="+optEscape(c.VirtiofsSocket()),
				"-device", "vhost-user-fs-pci,chardev=hostfsd,queue-size=1024,tag="+HostFSTag)
		}
	}
	if c.Network {
		netdev := "user,id=net0,ipv4=on,ipv6=on,net=" + UserNet.Net + ",host=" + UserNet.Gateway4 + ",dns=" + UserNet.DNS4 +
			",ipv6-net=" + UserNet.Net6 + ",ipv6-host=" + UserNet.Host6 + ",ipv6-dns=" + UserNet.DNS6
		if c.Passt != "" {
			netdev = "stream,id=net0,addr.type=fd,addr.str=" + strconv.Itoa(passtFD)
		}
		args = append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0,mac="+UserNet.MAC)
	}
	args = append(args, c.ExtraArgs...)
	return args, nil
}

// networkName names the VM's network: "passt", "slirp", or "" for none.
func (c Config) networkName() string {
	switch {
	case !c.Network:
		return ""
	case c.Passt != "":
		return "passt"
	default:
		return "slirp"
	}
}

// optEscape escapes a value inside a QEMU option list, where a comma is
// written twice.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
