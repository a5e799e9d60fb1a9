package initramfs

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// moduleSuffixes are the file name endings of a loadable module as Debian's
// kernels ship them: kmod installs .ko.xz (bookworm, trixie), newer kernels
// may use .ko.zst, and a hand-built tree plain .ko. The module is copied as
// it is; the kernel decompresses it itself when the agent passes
// MODULE_INIT_COMPRESSED_FILE to finit_module.
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// Dep is one line of modules.dep: the module file and the module files it
// needs, both relative to the modules directory (lib/modules/<version>).
type Dep struct {
	// Path is the module's file, e.g. "kernel/fs/ext4/ext4.ko.xz".
	Path string
	// Deps are the files of the modules it needs, as depmod wrote them:
	// the whole closure, the one to load last first.
	Deps []string
}

// ModuleName is the name a module file is known by: its base name without
// the .ko suffix (and compression suffix), with dashes as underscores, which
// is how the kernel and modprobe compare names ("crc32c-generic" and
// "crc32c_generic" are the same module). ok is false when file is not a
// module file.
func ModuleName(file string) (name string, ok bool) {
	base := path.Base(file)
	for _, suf := range moduleSuffixes {
		if strings.HasSuffix(base, suf) && len(base) > len(suf) {
			return NormalizeName(strings.TrimSuffix(base, suf)), true
		}
	}
	return "", false
}

// NormalizeName turns a module name as a user or modinfo writes it into the
// form the kernel compares: dashes become underscores.
func NormalizeName(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// maxDepLine bounds one modules.dep line; a real one is a few hundred bytes,
// and the bound keeps a corrupt file from costing unbounded memory.
const maxDepLine = 1 << 20

// ParseModulesDep reads a modules.dep file as depmod writes it ("path: dep
// dep ...", one module a line) into a table keyed by module name. The file
// comes from a kernel package, so it is treated as outside input: every path
// must be relative and stay inside the modules directory (no "..", no
// leading "/"), and must name a module file; otherwise a path could make
// Build copy an arbitrary host file into the image. Empty lines and lines
// starting with '#' are ignored; a module listed twice is an error, since
// it is not clear which line to believe.
func ParseModulesDep(r io.Reader) (map[string]Dep, error) {
	table := make(map[string]Dep)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxDepLine)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: no ':' in %q", lineNo, clip(line))
		}
		file = strings.TrimSpace(file)
		name, err := checkModulePath(file)
		if err != nil {
			return nil, fmt.Errorf("modules.dep line %d: %w", lineNo, err)
		}
		if _, dup := table[name]; dup {
			return nil, fmt.Errorf("modules.dep line %d: module %s listed twice", lineNo, name)
		}
		d := Dep{Path: file}
		for _, dep := range strings.Fields(rest) {
			if _, err := checkModulePath(dep); err != nil {
				return nil, fmt.Errorf("modules.dep line %d (%s): %w", lineNo, name, err)
			}
			d.Deps = append(d.Deps, dep)
		}
		table[name] = d
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	return table, nil
}

// checkModulePath returns the module name of p, a path from modules.dep, or
// why p may not be used.
func checkModulePath(p string) (string, error) {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("module path %q is not a clean relative path inside the modules directory", clip(p))
	}
	if strings.ContainsAny(p, "\x00\\") {
		return "", fmt.Errorf("module path %q has a forbidden character", clip(p))
	}
	name, ok := ModuleName(p)
	if !ok {
		return "", fmt.Errorf("module path %q does not end in %s", clip(p), strings.Join(moduleSuffixes, ", "))
	}
	return name, nil
}

// clip shortens s for an error message, so a huge corrupt line does not
// become a huge error.
func clip(s string) string {
	const max = 120
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
