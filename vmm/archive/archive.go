// Package archive imports and exports distro root file systems as tarballs
// (plain, gzip, zstd or xz), and is written to be safe against hostile archives:
// Extract writes only through directory handles confined to the destination, so
// no entry, symlink or hard link can create, replace or link a file outside it.
//
// The backends (vmm/ns, vmm/qemu, vmm/hcs) import it for import, export and
// clone; it imports nothing from this module.
package archive

import (
	"errors"
	"fmt"
	"strings"
)

// Format is a tarball format, as named by the ?format= query parameter and the
// CLI. Extract never needs one: it detects compression from the data.
type Format string

// The formats Write can produce and Extract can read.
const (
	Tar    Format = "tar"
	TarGz  Format = "tar.gz"
	TarZst Format = "tar.zst"
	TarXz  Format = "tar.xz"
)

// Formats lists every supported format, in the order a UI should offer them.
var Formats = []Format{Tar, TarGz, TarZst, TarXz}

// ParseFormat parses a format name such as "tar.zst". Common aliases ("tgz",
// "gz", "zst", "zstd", "xz", "txz") are accepted because users type file
// extensions; anything else returns an error wrapping ErrFormat.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimPrefix(s, ".")) {
	case "tar":
		return Tar, nil
	case "tar.gz", "tgz", "gz", "gzip":
		return TarGz, nil
	case "tar.zst", "tar.zstd", "tzst", "zst", "zstd":
		return TarZst, nil
	case "tar.xz", "txz", "xz":
		return TarXz, nil
	}
	return "", fmt.Errorf("%w: %q (want one of tar, tar.gz, tar.zst, tar.xz)", ErrFormat, s)
}

// Limits bound what one Extract may create, so that a small archive (a
// compression bomb, or a sparse file claiming terabytes) cannot fill the disk
// or the inode table. Zero fields take the defaults.
type Limits struct {
	// MaxExpandedBytes caps the sum of the sizes in the entry headers.
	// Default 256 GiB, the default maximum size of a version 2 disk.
	MaxExpandedBytes int64
	// MaxEntries caps the number of entries (headers) in the archive plus
	// the directories Extract makes for entries whose parents it does not
	// list. Default 4,000,000, far above a full desktop distro (~500,000).
	MaxEntries int
}

// Default limits, used for zero fields of Limits.
const (
	DefaultMaxExpandedBytes int64 = 256 << 30
	DefaultMaxEntries             = 4_000_000
)

func (l Limits) withDefaults() Limits {
	if l.MaxExpandedBytes <= 0 {
		l.MaxExpandedBytes = DefaultMaxExpandedBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// Stats reports what Extract read: the number of entries and the sum of their
// header sizes (the expanded bytes that Limits bounds).
type Stats struct {
	Entries int
	Bytes   int64
}

// Sentinel errors. Every error Extract returns because of the archive's
// content wraps one of them, so callers map them to a status with errors.Is.
var (
	// ErrFormat: the input is empty, not a tarball, compressed in a way that is
	// not supported, or a format name is unknown.
	ErrFormat = errors.New("unsupported archive format")
	// ErrCorrupt: the archive is truncated, its compression is damaged, a header
	// is malformed, or an entry cannot be applied (a hard link to a missing file).
	ErrCorrupt = errors.New("corrupt archive")
	// ErrUnsafe: an entry would write, link or point outside the destination.
	ErrUnsafe = errors.New("unsafe archive entry")
	// ErrLimit: the archive has more entries or expanded bytes than Limits allow.
	ErrLimit = errors.New("archive exceeds limits")
)

// EntryError reports a problem with one entry of an archive. Err wraps one of
// the sentinels (or, for a failure of the host such as a full disk, the
// system error), so errors.Is works on it.
type EntryError struct {
	Name   string // the entry's name as written in the archive
	Reason string // what is wrong, for people
	Err    error
}

func (e *EntryError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("archive entry %q: %s", e.Name, e.Reason)
	}
	return fmt.Sprintf("archive entry %q: %s: %v", e.Name, e.Reason, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// maxPath is Linux's PATH_MAX less its NUL. Longer names cannot be used by
// the distro, and one name could otherwise make thousands of directories.
const maxPath = 4095

// cleanName turns an entry name into a path relative to the destination, with
// no empty, "." or ".." components and no trailing slash; "" means the root.
// It rejects what could address anything outside the root: absolute names,
// ".." components and NUL bytes. A leading "./" (as written by `tar -C dir .`
// and mmdebstrap) is accepted, as is a plain relative name.
func cleanName(name string) (string, string) {
	if name == "" {
		return "", "empty name"
	}
	if len(name) > maxPath {
		return "", "name longer than PATH_MAX"
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", "name contains a NUL byte"
	}
	if name[0] == '/' {
		return "", "absolute path"
	}
	// Fast path: names from a well-formed archive are already clean apart from a
	// "./" prefix and a trailing "/" on directories.
	s := strings.TrimPrefix(name, "./")
	s = strings.TrimSuffix(s, "/")
	if s == "." || s == "" {
		return "", ""
	}
	if !strings.Contains(s, "//") && !strings.HasPrefix(s, "/") && !hasDotComponent(s) {
		return s, ""
	}
	parts := make([]string, 0, strings.Count(s, "/")+1)
	for p := range strings.SplitSeq(name, "/") {
		switch p {
		case "", ".":
		case "..":
			return "", `path contains ".."`
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/"), ""
}

// hasDotComponent reports whether slash-separated s has a "." or ".." component.
func hasDotComponent(s string) bool {
	for p := range strings.SplitSeq(s, "/") {
		if p == "." || p == ".." {
			return true
		}
	}
	return false
}

// checkSymlinkTarget rejects symlink targets that are empty, contain NUL, or
// are relative and climb above the root when resolved lexically from the
// directory of the link (name is the cleaned link name). Absolute targets are
// allowed: a Debian root file system has many (/etc/alternatives/*), and inside
// the distro they resolve to its own root. Extract never follows a symlink out
// of the destination anyway; this check keeps obviously hostile links out of
// the tree so that no host tool that walks it later is led astray.
func checkSymlinkTarget(name, target string) string {
	if target == "" {
		return "empty symlink target"
	}
	if strings.IndexByte(target, 0) >= 0 {
		return "symlink target contains a NUL byte"
	}
	if target[0] == '/' {
		return ""
	}
	depth := strings.Count(name, "/") // components of the link's directory
	for p := range strings.SplitSeq(target, "/") {
		switch p {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return "symlink target escapes the root"
			}
		default:
			depth++
		}
	}
	return ""
}
