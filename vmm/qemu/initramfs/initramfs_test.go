package initramfs

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/subsys-dev/subsys/internal/testenv"
)

const fakeVersion = "6.1.0-99-amd64"

// fakeTree makes lib/modules/<version> in a temp dir with made-up module
// files (each holds its own path, so a mix-up shows) and a modules.dep in
// depmod's form, Debian-like: ext4's chain in .ko.xz, crc32c_generic in
// .ko.zst, a plain .ko, and virtio built in.
func fakeTree(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", fakeVersion)
	dep := `kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz kernel/lib/crc16.ko.xz
kernel/fs/jbd2/jbd2.ko.xz:
kernel/fs/mbcache.ko.xz:
kernel/lib/crc16.ko.xz:
kernel/crypto/crc32c_generic.ko.zst:
kernel/drivers/block/virtio_blk.ko.xz:
kernel/drivers/virtio/virtio_pci.ko.xz: kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz
kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz:
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko
`
	writeFile(t, filepath.Join(dir, "modules.dep"), dep)
	writeFile(t, filepath.Join(dir, "modules.builtin"), "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n")
	for _, line := range strings.Split(dep, "\n") {
		if p, _, ok := strings.Cut(line, ":"); ok {
			writeFile(t, filepath.Join(dir, p), "module "+p)
		}
	}
	return dir
}

func writeFile(t testing.TB, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fakeSpec(dir string) Spec {
	return Spec{
		Init:       []byte("\x7fELF fake agent"),
		ModulesDir: dir,
		Modules:    []string{"virtio_pci", "virtio-blk", "ext4", "virtio", "9p", "9pnet_virtio"},
		Optional:   []string{"vmw_vsock_virtio_transport", "crc16"},
		Extra:      map[string][]byte{"/etc/subsys/agent.conf": []byte("x=1\n")},
	}
}

// member is one archive entry as read back.
type member struct {
	name string
	mode uint32 // type and permission bits
	data string
}

// wantMembers is the archive fakeSpec must give, in archive order.
func wantMembers() []member {
	const d, f, x = 0o040755, 0o100644, 0o100755
	mod := "lib/modules/" + fakeVersion + "/"
	m := func(p string) member { return member{mod + p, f, "module " + p} }
	return []member{
		{"dev", d, ""},
		{"etc", d, ""},
		{"etc/subsys", d, ""},
		{"etc/subsys/agent.conf", f, "x=1\n"},
		{"init", x, "\x7fELF fake agent"},
		{"lib", d, ""},
		{"lib/modules", d, ""},
		{"lib/modules/" + fakeVersion, d, ""},
		{mod + "kernel", d, ""},
		{mod + "kernel/crypto", d, ""},
		m("kernel/crypto/crc32c_generic.ko.zst"),
		{mod + "kernel/drivers", d, ""},
		{mod + "kernel/drivers/block", d, ""},
		m("kernel/drivers/block/virtio_blk.ko.xz"),
		{mod + "kernel/drivers/virtio", d, ""},
		m("kernel/drivers/virtio/virtio_pci.ko.xz"),
		m("kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz"),
		m("kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz"),
		{mod + "kernel/fs", d, ""},
		{mod + "kernel/fs/9p", d, ""},
		m("kernel/fs/9p/9p.ko"),
		{mod + "kernel/fs/ext4", d, ""},
		m("kernel/fs/ext4/ext4.ko.xz"),
		{mod + "kernel/fs/jbd2", d, ""},
		m("kernel/fs/jbd2/jbd2.ko.xz"),
		m("kernel/fs/mbcache.ko.xz"),
		{mod + "kernel/fs/netfs", d, ""},
		m("kernel/fs/netfs/netfs.ko"),
		{mod + "kernel/lib", d, ""},
		m("kernel/lib/crc16.ko.xz"),
		{mod + "kernel/net", d, ""},
		{mod + "kernel/net/9p", d, ""},
		m("kernel/net/9p/9pnet.ko"),
		m("kernel/net/9p/9pnet_virtio.ko"),
		{"modules.load", f, ""}, // checked against the manifest instead
		{"proc", d, ""},
		{"run", d, ""},
		{"sys", d, ""},
		{"tmp", d, ""},
	}
}

func TestBuild(t *testing.T) {
	dir := fakeTree(t)
	var buf bytes.Buffer
	m, err := Build(&buf, fakeSpec(dir))
	if err != nil {
		t.Fatal(err)
	}

	// Load order: dependencies first (crc32c_generic, the extra one, before
	// jbd2 and ext4), each module's modules.dep list walked backwards as
	// modprobe does, and the order asked for otherwise.
	wantOrder := []string{
		"virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk",
		"crc32c_generic", "crc16", "mbcache", "jbd2", "ext4",
		"netfs", "9pnet", "9p", "9pnet_virtio",
	}
	if !reflect.DeepEqual(m.Modules, wantOrder) {
		t.Errorf("load order\n got %v\nwant %v", m.Modules, wantOrder)
	}
	if m.KernelVersion != fakeVersion {
		t.Errorf("KernelVersion = %q", m.KernelVersion)
	}
	if !reflect.DeepEqual(m.Builtin, []string{"virtio"}) || !reflect.DeepEqual(m.Absent, []string{"vmw_vsock_virtio_transport"}) {
		t.Errorf("Builtin = %v, Absent = %v", m.Builtin, m.Absent)
	}
	if len(m.Load) != len(m.Modules) || m.Load[4] != "/lib/modules/"+fakeVersion+"/kernel/crypto/crc32c_generic.ko.zst" {
		t.Errorf("Load = %v", m.Load)
	}

	// Read back with the library.
	var got []member
	r := cpio.NewReader(bytes.NewReader(buf.Bytes()))
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Guid != 0 || h.ModTime.Unix() != 0 {
			t.Errorf("%s: uid %d gid %d mtime %v, want root and 0", h.Name, h.Uid, h.Guid, h.ModTime)
		}
		got = append(got, member{h.Name, uint32(h.Mode), string(data)})
	}
	checkMembers(t, got, m)
	if names := memberNames(got); !reflect.DeepEqual(names, m.Files) {
		t.Errorf("Manifest.Files = %v, archive has %v", m.Files, names)
	}
}

// checkMembers compares an archive read back with wantMembers, and its
// modules.load with the manifest.
func checkMembers(t *testing.T, got []member, m Manifest) {
	t.Helper()
	want := wantMembers()
	for i := range got {
		if got[i].name == "modules.load" {
			if wantLoad := strings.Join(m.Load, "\n") + "\n"; got[i].data != wantLoad {
				t.Errorf("modules.load = %q, want %q", got[i].data, wantLoad)
			}
			got[i].data = ""
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("archive\n got %v\nwant %v", got, want)
	}
}

func memberNames(ms []member) []string {
	var names []string
	for _, m := range ms {
		names = append(names, m.name)
	}
	return names
}

// TestBuildCpioTool reads the archive with GNU cpio, which is stricter about
// newc than the library that wrote it and is what a person debugging an
// image would use.
func TestBuildCpioTool(t *testing.T) {
	cpioBin := testenv.RequireCommand(t, "cpio", "Debian package cpio")
	dir := fakeTree(t)
	img := filepath.Join(t.TempDir(), "initrd.cpio")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Build(f, fakeSpec(dir))
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err != nil {
		t.Fatal(err)
	}

	list := exec.Command(cpioBin, "-it", "--quiet", "-F", img)
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v\n%s", err, out)
	}
	if names := strings.Fields(string(out)); !reflect.DeepEqual(names, memberNames(wantMembers())) {
		t.Errorf("cpio -it lists\n%v\nwant\n%v", names, memberNames(wantMembers()))
	}

	dest := t.TempDir()
	extract := exec.Command(cpioBin, "-i", "--quiet", "--no-absolute-filenames", "-F", img)
	extract.Dir = dest
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	var got []member
	for _, w := range wantMembers() {
		p := filepath.Join(dest, w.name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("after cpio -i: %v", err)
			continue
		}
		mode := uint32(fi.Mode().Perm())
		var data []byte
		if fi.IsDir() {
			mode |= 0o040000
		} else if fi.Mode().IsRegular() {
			mode |= 0o100000
			if data, err = os.ReadFile(p); err != nil {
				t.Fatal(err)
			}
		}
		got = append(got, member{w.name, mode, string(data)})
	}
	checkMembers(t, got, m)
}

func TestBuildDeterministic(t *testing.T) {
	dir := fakeTree(t)
	var a, b bytes.Buffer
	if _, err := Build(&a, fakeSpec(dir)); err != nil {
		t.Fatal(err)
	}
	// A module file's mtime must not reach the archive, or the key would
	// change with every reinstall of the same kernel package.
	p := filepath.Join(dir, "kernel/fs/ext4/ext4.ko.xz")
	if err := os.Chtimes(p, time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(&b, fakeSpec(dir)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two builds of the same spec differ")
	}

	k1, err := CacheKey(fakeSpec(dir))
	if err != nil {
		t.Fatal(err)
	}
	if k2, _ := CacheKey(fakeSpec(dir)); k1 != k2 || len(k1) != 64 {
		t.Fatalf("CacheKey not stable: %s, %s", k1, k2)
	}
	changes := map[string]func(*Spec){
		"agent": func(s *Spec) { s.Init = append([]byte{}, "other agent"...) },
		"names": func(s *Spec) { s.Modules = s.Modules[:1] },
		"extra": func(s *Spec) { s.Extra["etc/x"] = nil },
	}
	for what, change := range changes {
		s := fakeSpec(dir)
		change(&s)
		if k, err := CacheKey(s); err != nil || k == k1 {
			t.Errorf("changing the %s: key %s, err %v; want a new key", what, k, err)
		}
	}
	writeFile(t, p, "a new ext4")
	if k, err := CacheKey(fakeSpec(dir)); err != nil || k == k1 {
		t.Errorf("changing a module file: key %s, err %v; want a new key", k, err)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := fakeTree(t)
	for _, c := range []struct {
		name   string
		change func(*Spec)
		want   string
	}{
		{"missing module", func(s *Spec) { s.Modules = append(s.Modules, "virtiofs") }, "module virtiofs is not in"},
		{"missing dependency", func(s *Spec) {
			writeFile(t, filepath.Join(dir, "modules.dep"), "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz\n")
			s.Modules, s.Optional = []string{"ext4"}, nil
		}, "module jbd2 (needed by ext4) is not in"},
		{"missing module file", func(s *Spec) {
			writeFile(t, filepath.Join(dir, "modules.dep"), "kernel/fs/ext4/gone.ko.xz:\n")
			s.Modules = []string{"gone"}
		}, "module gone:"},
		{"cycle", func(s *Spec) {
			writeFile(t, filepath.Join(dir, "modules.dep"), "a.ko: b.ko\nb.ko: a.ko\n")
			s.Modules = []string{"a"}
		}, "cycle"},
		{"no modules.dep", func(s *Spec) { s.ModulesDir = t.TempDir() }, "modules.dep"},
		{"no agent", func(s *Spec) { s.Init = nil }, "no init"},
		{"extra over init", func(s *Spec) { s.Extra["/init"] = nil }, "init is written twice"},
		{"extra escapes", func(s *Spec) { s.Extra["../x"] = nil }, "not a clean path"},
		{"extra over a mount point", func(s *Spec) { s.Extra["dev"] = nil }, "mount point"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dep, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
			if err != nil {
				t.Fatal(err)
			}
			defer writeFile(t, filepath.Join(dir, "modules.dep"), string(dep))
			s := fakeSpec(dir)
			c.change(&s)
			_, err = Build(io.Discard, s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
			if _, kerr := CacheKey(s); kerr == nil {
				t.Fatalf("CacheKey err = %v, want Build's", kerr)
			}
		})
	}
}

// BenchmarkBuildHostKernel builds from the running kernel's real module tree
// and checks ext4's chain resolves with dependencies first. It is a
// benchmark, not a test, because CI machines have no module tree (a
// container's /lib/modules is usually empty), so as a strict test it would
// only fail there; run it by hand with -bench BuildHostKernel -benchtime 1x.
func BenchmarkBuildHostKernel(b *testing.B) {
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		testenv.SkipOrFail(b, "no kernel release:", err)
	}
	dir := filepath.Join("/lib/modules", strings.TrimSpace(string(rel)))
	if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err != nil {
		testenv.SkipOrFail(b, "no module tree for the running kernel:", err)
	}
	s := Spec{Init: []byte("agent"), ModulesDir: dir, Modules: []string{"ext4"},
		Optional: []string{"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_console", "virtio_net", "virtio_balloon",
			"9p", "9pnet_virtio", "fuse", "virtiofs", "vsock", "vmw_vsock_virtio_transport"}}
	for b.Loop() {
		m, err := Build(io.Discard, s)
		if err != nil {
			b.Fatal(err)
		}
		pos := map[string]int{}
		for i, n := range m.Modules {
			pos[n] = i
		}
		for _, dep := range []string{"jbd2", "mbcache", "crc16", "crc32c_generic"} {
			if i, ok := pos[dep]; ok && i > pos["ext4"] {
				b.Errorf("%s loads after ext4: %v", dep, m.Modules)
			}
		}
		b.Logf("modules %v, built in %v, absent %v", m.Modules, m.Builtin, m.Absent)
	}
}
