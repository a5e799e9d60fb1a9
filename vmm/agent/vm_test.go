package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestValidDistroID(t *testing.T) {
	for _, id := range []string{"a", "debian", "Debian-12", "0123456789abcdef", strings.Repeat("x", maxDistroID)} {
		if !validDistroID(id) {
			t.Errorf("validDistroID(%q) = false", id)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "../x", "a b", "a_b", "a.b", "é", "a\x00", strings.Repeat("x", maxDistroID+1)} {
		if validDistroID(id) {
			t.Errorf("validDistroID(%q) = true", id)
		}
	}
}

func TestCheckDistroRequest(t *testing.T) {
	ok := DistroRequest{ID: "d1", Hostname: "debian", DiskTarget: 3}
	if err := checkDistroRequest(ok, true); err != nil {
		t.Fatal(err)
	}
	for _, r := range []DistroRequest{
		{ID: "../etc", Hostname: "h"},
		{ID: "d", Hostname: ""},
		{ID: "d", Hostname: "-x"},
		{ID: "d", Hostname: "a b"},
		{ID: "d", Hostname: "a\nb"},
		{ID: "d", Hostname: strings.Repeat("h", 65)},
		{ID: "d", Hostname: "h", DiskTarget: -1},
		{ID: "d", Hostname: "h", DiskTarget: MaxDiskTarget + 1},
	} {
		if err := checkDistroRequest(r, true); !errors.Is(err, ErrBadRequest) {
			t.Errorf("checkDistroRequest(%+v) = %v, want ErrBadRequest", r, err)
		}
	}
	// Without a hostname (stop, export), only the id and target count.
	if err := checkDistroRequest(DistroRequest{ID: "d"}, false); err != nil {
		t.Error(err)
	}
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFindVirtioPort(t *testing.T) {
	sys := t.TempDir()
	ports := filepath.Join(sys, "class", "virtio-ports")
	writeFile(t, filepath.Join(ports, "vport0p0", "name"), "org.qemu.guest_agent.0\n")
	writeFile(t, filepath.Join(ports, "vport1p1", "name"), "subsys.agent\n")
	// A port without a name, and an entry that is not a port name.
	os.MkdirAll(filepath.Join(ports, "vport1p2"), 0o755)
	writeFile(t, filepath.Join(ports, "evil", "name"), "subsys.agentx\n")
	writeFile(t, filepath.Join(ports, "..vport2p1", "name"), "other\n")

	got, err := findVirtioPort(sys, "subsys.agent")
	if err != nil || got != "vport1p1" {
		t.Errorf("findVirtioPort = %q, %v; want vport1p1", got, err)
	}
	if _, err := findVirtioPort(sys, "subsys.agentx"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("port under a bad directory name found: %v", err)
	}
	if _, err := findVirtioPort(sys, "missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing port: %v, want ErrNotExist", err)
	}
	if _, err := findVirtioPort(t.TempDir(), "subsys.agent"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no virtio-ports class: %v, want ErrNotExist", err)
	}
}

func TestValidVportName(t *testing.T) {
	for _, s := range []string{"vport0p0", "vport12p345"} {
		if !validVportName(s) {
			t.Errorf("validVportName(%q) = false", s)
		}
	}
	for _, s := range []string{"", "vport", "vportp1", "vport1p", "vport1p1x", "vport1/p1", "../vport1p1", "hvc0"} {
		if validVportName(s) {
			t.Errorf("validVportName(%q) = true", s)
		}
	}
}

// fakeSCSI makes bus/scsi/devices/<addr>/block/<dev> under sys, as sysfs has
// it (the real entries are symlinks into devices/; directories do as well).
func fakeSCSI(t *testing.T, sys, addr string, devs ...string) {
	t.Helper()
	d := filepath.Join(sys, "bus", "scsi", "devices", addr)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dev := range devs {
		if err := os.MkdirAll(filepath.Join(d, "block", dev), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindSCSIDisk(t *testing.T) {
	sys := t.TempDir()
	os.MkdirAll(filepath.Join(sys, "bus", "scsi", "devices", "host2"), 0o755)
	os.MkdirAll(filepath.Join(sys, "bus", "scsi", "devices", "target2:0:1"), 0o755)
	fakeSCSI(t, sys, "2:0:1:0", "sda")
	fakeSCSI(t, sys, "2:0:12:0", "sdb")
	fakeSCSI(t, sys, "2:0:3:1", "sdc")  // lun 1: not a distro disk
	fakeSCSI(t, sys, "2:1:4:0", "sdd")  // channel 1
	fakeSCSI(t, sys, "2:0:5:0")         // still probing: no block dir
	fakeSCSI(t, sys, "2:0:6:0", "sr0")  // not a disk name
	fakeSCSI(t, sys, "2:0:7:0", "sde")  // two controllers would be an error
	fakeSCSI(t, sys, "3:0:7:0", "sdf")  //
	fakeSCSI(t, sys, "2:0:8:0", "sd..") // not a disk name

	for target, want := range map[int]string{1: "sda", 12: "sdb"} {
		got, err := findSCSIDisk(sys, target)
		if err != nil || got != want {
			t.Errorf("findSCSIDisk(%d) = %q, %v; want %q", target, got, err, want)
		}
	}
	for _, target := range []int{0, 2, 3, 4, 5, 6, 8} {
		if got, err := findSCSIDisk(sys, target); !errors.Is(err, errNoDisk) {
			t.Errorf("findSCSIDisk(%d) = %q, %v; want errNoDisk", target, got, err)
		}
	}
	if got, err := findSCSIDisk(sys, 7); err == nil || errors.Is(err, errNoDisk) {
		t.Errorf("findSCSIDisk(7) with two disks = %q, %v; want an error", got, err)
	}
	if _, err := findSCSIDisk(t.TempDir(), 1); err == nil || errors.Is(err, errNoDisk) {
		t.Errorf("no scsi bus: %v, want an error other than errNoDisk", err)
	}
}

func TestParseSCSIAddr(t *testing.T) {
	if a, ok := parseSCSIAddr("2:0:17:0"); !ok || a != (scsiAddr{2, 0, 17, 0}) {
		t.Errorf("parseSCSIAddr = %+v, %v", a, ok)
	}
	for _, s := range []string{"", "host0", "target0:0:1", "0:0:1", "0:0:1:0:0", "a:0:1:0", "-1:0:1:0", "0:0:+1:0", "0:0: 1:0", "0:0:9999999999:0"} {
		if a, ok := parseSCSIAddr(s); ok {
			t.Errorf("parseSCSIAddr(%q) = %+v, true", s, a)
		}
	}
}

func FuzzParseSCSIAddr(f *testing.F) {
	for _, s := range []string{"2:0:17:0", "host0", "target0:0:1", "0:0:1", ":::", "1:2:3:4:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := parseSCSIAddr(s)
		if !ok {
			return
		}
		if a.host < 0 || a.channel < 0 || a.target < 0 || a.lun < 0 {
			t.Fatalf("parseSCSIAddr(%q) = %+v: negative", s, a)
		}
		// What parses names only digits and colons, so it is safe in a path.
		if strings.Trim(s, "0123456789:") != "" || strings.Count(s, ":") != 3 {
			t.Fatalf("parseSCSIAddr(%q) accepted", s)
		}
	})
}

func TestValidBlockName(t *testing.T) {
	for _, s := range []string{"sda", "sdz", "sdaa"} {
		if !validBlockName(s) {
			t.Errorf("validBlockName(%q) = false", s)
		}
	}
	for _, s := range []string{"", "sd", "sda1", "sr0", "vda", "sd/a", "sd..", "sdA"} {
		if validBlockName(s) {
			t.Errorf("validBlockName(%q) = true", s)
		}
	}
}

func TestParseModuleList(t *testing.T) {
	mods, err := parseModuleList([]byte("/lib/modules/6.1/kernel/a.ko\n\n# comment\n  /lib/modules/6.1/kernel/b.ko  \n/x/../y/c.ko"))
	want := []string{"/lib/modules/6.1/kernel/a.ko", "/lib/modules/6.1/kernel/b.ko", "/y/c.ko"}
	if err != nil || !slices.Equal(mods, want) {
		t.Errorf("parseModuleList = %q, %v; want %q", mods, err, want)
	}
	mods, err = parseModuleList([]byte("/a.ko\nb.ko\n/c.ko\n"))
	if err == nil || !slices.Equal(mods, []string{"/a.ko"}) {
		t.Errorf("relative path: %q, %v; want an error after /a.ko", mods, err)
	}
}
