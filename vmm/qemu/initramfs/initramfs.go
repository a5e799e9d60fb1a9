// Package initramfs builds the initramfs that version 2's utility VM boots
// with: Debian's linux-image kernel runs the static subsys agent as /init,
// and the agent first loads the kernel modules packed beside it (virtio
// transport and disks, ext4, 9p, virtiofs, virtio-mem, vsock) before it can
// reach its disks and the host.
//
// The archive is a newc ("070701") cpio, the format the kernel unpacks,
// written with github.com/cavaliergopher/cpio. It is deterministic — entries
// sorted, every mtime 0, owner root, inode numbers by position — so the same
// inputs give the same bytes and CacheKey can name a built image by its
// content.
//
// The archive has no /dev/console node: the cpio library cannot write device
// numbers, and it does not need to, because a kernel built without
// CONFIG_INITRAMFS_SOURCE (Debian's) carries a built-in default initramfs
// with /dev and /dev/console that it unpacks before this one. The agent is
// expected to mount devtmpfs on /dev itself; the kernel's
// CONFIG_DEVTMPFS_MOUNT does not apply to an initramfs root.
//
// Beside the agent and the modules it can carry host programs with the
// shared libraries they need (Spec.Programs): the VM runs e2fsck,
// resize2fs and mke2fs on distros' disks, so that the host never parses a
// file system a guest has written, nor needs to make one. vmm/qemu builds and caches the image.
package initramfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// LoadOrderPath is where the archive lists the modules for the agent to load,
// one absolute path a line, every module after the modules it needs, so the
// agent can finit_module them top to bottom with no dependency logic of its
// own. It is not named modules.order because kmod already uses that name,
// for a different list, inside lib/modules/<version>.
const LoadOrderPath = "/modules.load"

// mountPoints are empty directories the agent mounts file systems on
// (devtmpfs, proc, sysfs, tmpfs); the root of an initramfs is read-write,
// but creating them here saves the agent a step that can only fail.
var mountPoints = []string{"dev", "proc", "run", "sys", "tmp"}

// extraDeps lists, by module name, modules a module needs that modules.dep
// does not say: depmod only follows symbols, and these are reached through
// the crypto API by name at run time. ext4 and jbd2 compute crc32c
// checksums of metadata with crypto_alloc_shash("crc32c"); without an
// implementation loaded, mounting an ext4 file system with metadata_csum
// (every mkfs.ext4 default since 1.43) fails. modinfo shows it only as a
// softdep ("pre: crc32c"), which names an alias, not a file. An extra
// dependency is taken only where the tree has it, as a module or built in:
// kernels from 6.14 on fold crc32c into the crc32 library and have no
// crc32c_generic module at all.
var extraDeps = map[string][]string{
	"ext4": {"crc32c_generic"},
	"jbd2": {"crc32c_generic"},
}

// Spec says what goes into an initramfs.
type Spec struct {
	// Init is the agent binary, written as /init with mode 0755. It must be
	// static: the archive has no libc.
	Init []byte
	// ModulesDir is the kernel's module tree, <root>/lib/modules/<version>,
	// with modules.dep in it (and modules.builtin if the kernel has one).
	// Its base name is the kernel version the modules are copied under.
	ModulesDir string
	// Modules are the names of the modules that must be in the image, with
	// or without dashes; a name that is neither in modules.dep nor built in
	// is an error.
	Modules []string
	// Optional are the names of modules to take where the kernel has them
	// and leave out where it does not (vsock transports, say); the Manifest
	// lists those left out.
	Optional []string
	// Programs are host programs (absolute paths) to carry at the same
	// paths, with their ELF interpreter and shared libraries (see
	// LibDirs): e2fsck, resize2fs and mke2fs, which the VM runs on
	// distros' disks so that the host never parses a guest's file system.
	Programs []string
	// Extra are more regular files, mode 0644, by path inside the archive
	// (relative or absolute; they must not collide with the files Build
	// writes itself).
	Extra map[string][]byte
}

// Manifest says what Build wrote.
type Manifest struct {
	// KernelVersion is the base name of Spec.ModulesDir.
	KernelVersion string
	// Modules are the names of the modules in the archive, in load order:
	// every module after those it needs.
	Modules []string
	// Load are the absolute paths of those modules inside the archive, in
	// the same order; the file at LoadOrderPath holds the same list.
	Load []string
	// Builtin are the names asked for (or needed) that the kernel has built
	// in, so there is nothing to load.
	Builtin []string
	// Absent are the optional names the kernel has neither as a module nor
	// built in.
	Absent []string
	// Programs are the archive paths of Spec.Programs and the libraries
	// they need, sorted.
	Programs []string
	// Files are the archive paths of every entry, in archive order.
	Files []string
}

// entry is one member of the archive before it is written.
type entry struct {
	name string // archive path, relative, no leading "/"
	dir  bool
	mode cpio.FileMode
	data []byte
}

// Build writes the initramfs that s describes to w as a newc cpio archive
// and returns what it put there. It reads modules.dep from s.ModulesDir to
// add every module's dependencies, copies each module file unchanged, and
// fails naming the module when one that is needed cannot be found.
func Build(w io.Writer, s Spec) (Manifest, error) {
	entries, m, err := plan(s)
	if err != nil {
		return Manifest{}, err
	}
	cw := cpio.NewWriter(w)
	for i, e := range entries {
		h := &cpio.Header{
			Name:  e.name,
			Mode:  e.mode,
			Size:  int64(len(e.data)),
			Links: 1,
			// Inodes by position rather than the writer's counter, so
			// the numbers are part of the deterministic layout; 0 is
			// avoided because some readers treat it as "no inode".
			Inode: int64(i + 1),
		}
		if e.dir {
			h.Links = 2
			h.Size = 0
		}
		if err := cw.WriteHeader(h); err != nil {
			return Manifest{}, fmt.Errorf("initramfs: write %s: %w", e.name, err)
		}
		if len(e.data) > 0 {
			if _, err := cw.Write(e.data); err != nil {
				return Manifest{}, fmt.Errorf("initramfs: write %s: %w", e.name, err)
			}
		}
		m.Files = append(m.Files, e.name)
	}
	if err := cw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("initramfs: finish archive: %w", err)
	}
	return m, nil
}

// cacheKeyVersion changes whenever the archive layout changes, so an image
// cached by an older subsys is not taken for a current one.
const cacheKeyVersion = "subsys-initramfs-2\n"

// CacheKey names the image Build would write for s: the hex SHA-256 of the
// archive itself (behind a layout version). Because the archive is
// deterministic, the key changes exactly when the agent, a module file's
// content, the module names, the extra files or the kernel version do, and a
// cached image can be checked by hashing it again. It costs one build into
// a hash, which is cheap (the files are copied, not compressed). It fails
// where Build would, since a key for an image that cannot be built would
// name nothing.
func CacheKey(s Spec) (string, error) {
	h := sha256.New()
	io.WriteString(h, cacheKeyVersion)
	if _, err := Build(h, s); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// plan resolves s into the sorted archive entries and the manifest without
// Files.
func plan(s Spec) ([]entry, Manifest, error) {
	var m Manifest
	if len(s.Init) == 0 {
		return nil, m, errors.New("initramfs: no init (agent) given")
	}
	// No module tree: a kernel with its drivers built in (a custom one, as
	// WSL's kernel= setting takes). Nothing to load, an empty load list.
	r := &resolver{builtinUsed: map[string]bool{}, absent: map[string]bool{}}
	if s.ModulesDir == "" {
		if len(s.Modules)+len(s.Optional) > 0 {
			return nil, m, errors.New("initramfs: modules asked for without a modules directory")
		}
	} else {
		m.KernelVersion = filepath.Base(filepath.Clean(s.ModulesDir))
		if m.KernelVersion == "." || m.KernelVersion == "/" || strings.ContainsAny(m.KernelVersion, "/\\\x00") {
			return nil, m, fmt.Errorf("initramfs: cannot take a kernel version from %q", s.ModulesDir)
		}
		var err error
		if r, err = newResolver(s.ModulesDir); err != nil {
			return nil, m, err
		}
	}
	for _, n := range s.Modules {
		if err := r.resolve(NormalizeName(n), true, ""); err != nil {
			return nil, m, err
		}
	}
	for _, n := range s.Optional {
		if err := r.resolve(NormalizeName(n), false, ""); err != nil {
			return nil, m, err
		}
	}
	m.Builtin = sortedKeys(r.builtinUsed)
	m.Absent = sortedKeys(r.absent)

	files := map[string]entry{}
	add := func(e entry) error {
		if _, dup := files[e.name]; dup {
			return fmt.Errorf("initramfs: %s is written twice", e.name)
		}
		files[e.name] = e
		return nil
	}
	add(entry{name: "init", mode: cpio.TypeReg | 0o755, data: s.Init})
	modRoot := path.Join("lib/modules", m.KernelVersion)
	var load bytes.Buffer
	for _, mod := range r.order {
		data, err := os.ReadFile(filepath.Join(s.ModulesDir, filepath.FromSlash(mod.path)))
		if err != nil {
			return nil, m, fmt.Errorf("initramfs: module %s: %w", mod.name, err)
		}
		name := path.Join(modRoot, mod.path)
		if err := add(entry{name: name, mode: cpio.TypeReg | 0o644, data: data}); err != nil {
			return nil, m, err
		}
		m.Modules = append(m.Modules, mod.name)
		m.Load = append(m.Load, "/"+name)
		load.WriteString("/" + name + "\n")
	}
	add(entry{name: strings.TrimPrefix(LoadOrderPath, "/"), mode: cpio.TypeReg | 0o644, data: load.Bytes()})
	progs, err := programFiles(s.Programs)
	if err != nil {
		return nil, m, err
	}
	for _, name := range sortedKeys(progs) {
		if err := add(progs[name]); err != nil {
			return nil, m, err
		}
		m.Programs = append(m.Programs, name)
	}
	for _, p := range sortedKeys(s.Extra) {
		name := strings.TrimPrefix(p, "/")
		if name == "" || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") || strings.ContainsRune(name, 0) {
			return nil, m, fmt.Errorf("initramfs: extra file %q is not a clean path", p)
		}
		if err := add(entry{name: name, mode: cpio.TypeReg | 0o644, data: s.Extra[p]}); err != nil {
			return nil, m, err
		}
	}
	// Every parent directory gets its own entry: the kernel's unpacker
	// does not create missing parents.
	for _, name := range sortedKeys(files) {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if e, ok := files[d]; ok {
				if !e.dir {
					return nil, m, fmt.Errorf("initramfs: %s is both a file and a directory", d)
				}
				break
			}
			files[d] = entry{name: d, dir: true, mode: cpio.TypeDir | 0o755}
		}
	}
	for _, d := range mountPoints {
		if e, ok := files[d]; ok && !e.dir {
			return nil, m, fmt.Errorf("initramfs: extra file %s would hide a mount point", d)
		}
		files[d] = entry{name: d, dir: true, mode: cpio.TypeDir | 0o755}
	}
	// Byte order puts a directory before everything under it ("a" <
	// "a-b" < "a/b"), so sorting alone keeps parents first.
	entries := make([]entry, 0, len(files))
	for _, name := range sortedKeys(files) {
		entries = append(entries, files[name])
	}
	return entries, m, nil
}

// resolved is a module chosen for the archive.
type resolved struct {
	name, path string
}

// resolver walks modules.dep from the wanted names to a load order.
type resolver struct {
	dir         string
	table       map[string]Dep
	builtin     map[string]bool
	state       map[string]int // 1 while its dependencies are walked, 2 when done
	order       []resolved
	builtinUsed map[string]bool
	absent      map[string]bool
}

func newResolver(dir string) (*resolver, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w (is %s a lib/modules/<version> directory?)", err, dir)
	}
	defer f.Close()
	table, err := ParseModulesDep(f)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s: %w", dir, err)
	}
	r := &resolver{
		dir: dir, table: table, builtin: map[string]bool{}, state: map[string]int{},
		builtinUsed: map[string]bool{}, absent: map[string]bool{},
	}
	// modules.builtin lists what is compiled in, one module path a line;
	// a name found there is satisfied with nothing to load. A tree
	// without the file (a hand-made one) simply has nothing built in.
	b, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := ModuleName(strings.TrimSpace(line)); ok {
			r.builtin[name] = true
		}
	}
	return r, nil
}

// resolve appends name and, before it, everything it needs to r.order.
// Without required, a name the kernel lacks is noted as absent; with it, it
// is an error that says which module wanted it.
func (r *resolver) resolve(name string, required bool, neededBy string) error {
	switch r.state[name] {
	case 1:
		return fmt.Errorf("initramfs: modules.dep has a dependency cycle through %s", name)
	case 2:
		return nil
	}
	d, ok := r.table[name]
	if !ok {
		switch {
		case r.builtin[name]:
			r.builtinUsed[name] = true
		case required && neededBy != "":
			return fmt.Errorf("initramfs: module %s (needed by %s) is not in %s/modules.dep", name, neededBy, r.dir)
		case required:
			return fmt.Errorf("initramfs: module %s is not in %s/modules.dep nor built in", name, r.dir)
		default:
			r.absent[name] = true
		}
		r.state[name] = 2
		return nil
	}
	r.state[name] = 1
	for _, extra := range extraDeps[name] {
		if _, ok := r.table[extra]; ok || r.builtin[extra] {
			if err := r.resolve(extra, true, name); err != nil {
				return err
			}
		}
	}
	// depmod lists the module loaded last first (modprobe walks the list
	// backwards); walking it backwards too keeps the same order, and the
	// recursion puts each dependency's own needs before it either way.
	for i := len(d.Deps) - 1; i >= 0; i-- {
		dep, _ := ModuleName(d.Deps[i]) // ParseModulesDep checked it
		if e, ok := r.table[dep]; ok && e.Path != d.Deps[i] {
			return fmt.Errorf("initramfs: modules.dep: %s needs %s, but %s is listed at %s", name, d.Deps[i], dep, e.Path)
		}
		if err := r.resolve(dep, true, name); err != nil {
			return err
		}
	}
	r.state[name] = 2
	r.order = append(r.order, resolved{name: name, path: d.Path})
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
