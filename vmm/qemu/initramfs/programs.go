package initramfs

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// LibDirs are the directories a program's shared libraries are looked up in,
// in the order Debian's dynamic loader searches them when it has no
// ld.so.cache (the VM has none): the multiarch directories first. A library
// is written into the archive under the directory it was found in, so the
// loader in the VM finds it in the same place.
var LibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// maxProgramBytes bounds one program or library file: e2fsprogs and glibc are
// a few MB; anything far larger is not what the caller meant to pack.
const maxProgramBytes = 64 << 20

// programFiles resolves host programs into archive entries: each program at
// its own path (mode 0755), its ELF interpreter at the path PT_INTERP names,
// and every library it needs (DT_NEEDED, followed through the libraries)
// under the LibDirs directory it was found in (mode 0755, as the loader maps
// them executable). Symlinks are followed: the archive holds regular files
// only. It returns the entries by archive path.
func programFiles(programs []string) (map[string]entry, error) {
	out := map[string]entry{}
	seenLib := map[string]bool{}
	var addFile func(archivePath, hostPath string) (*elf.File, error)
	addFile = func(archivePath, hostPath string) (*elf.File, error) {
		data, err := readBounded(hostPath)
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(path.Clean(archivePath), "/")
		out[name] = entry{name: name, mode: cpio.TypeReg | 0o755, data: data}
		ef, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("not an ELF file: %w", err)
		}
		return ef, nil
	}
	var walk func(ef *elf.File, neededBy string) error
	walk = func(ef *elf.File, neededBy string) error {
		libs, err := ef.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("initramfs: %s: %w", neededBy, err)
		}
		for _, lib := range libs {
			if seenLib[lib] {
				continue
			}
			seenLib[lib] = true
			if strings.ContainsRune(lib, '/') {
				return fmt.Errorf("initramfs: %s needs %q, a path rather than a library name", neededBy, lib)
			}
			found := ""
			for _, d := range LibDirs {
				if st, err := os.Stat(filepath.Join(d, lib)); err == nil && st.Mode().IsRegular() {
					found = filepath.Join(d, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("initramfs: library %s (needed by %s) is in none of %s", lib, neededBy, strings.Join(LibDirs, ", "))
			}
			lf, err := addFile(found, found)
			if err != nil {
				return fmt.Errorf("initramfs: library %s: %w", lib, err)
			}
			if err := walk(lf, lib); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range programs {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("initramfs: program %q is not an absolute, clean path", p)
		}
		ef, err := addFile(p, p)
		if err != nil {
			return nil, fmt.Errorf("initramfs: program %s: %w", p, err)
		}
		for _, prog := range ef.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return nil, fmt.Errorf("initramfs: program %s: its interpreter: %w", p, err)
			}
			interp := strings.TrimRight(string(b), "\x00")
			if !filepath.IsAbs(interp) || filepath.Clean(interp) != interp {
				return nil, fmt.Errorf("initramfs: program %s: interpreter %q is not an absolute, clean path", p, interp)
			}
			if _, err := addFile(interp, interp); err != nil {
				return nil, fmt.Errorf("initramfs: program %s: its interpreter: %w", p, err)
			}
		}
		if err := walk(ef, p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readBounded reads the regular file p (through symlinks), at most
// maxProgramBytes of it.
func readBounded(p string) ([]byte, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: p, Err: errors.New("not a regular file")}
	}
	if st.Size() > maxProgramBytes {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", p, st.Size(), maxProgramBytes)
	}
	return os.ReadFile(p)
}
