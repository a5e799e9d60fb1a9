// Package archive imports and exports distro root file systems as tarballs
// (plain, gzip, zstd or xz), and is written to be safe against hostile archives:
// Extract writes only through directory handles confined to the destination, so
// no entry, symlink or hard link can create, replace or link a file outside it.
//
// vmm imports it for import, export, clone and disk usage, and server for the
// export formats and to map its errors to HTTP statuses; it imports nothing
// from this module.
package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
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
// or the inode table, and keep free space on the destination's file system.
// Zero fields take the defaults.
type Limits struct {
	// MaxExpandedBytes caps the data the entries write, as allocated on
	// disk: a sparse file counts the data it holds, not its holes. Default
	// 256 GiB, the default maximum size planned for a version 2 disk.
	MaxExpandedBytes int64
	// MaxEntries caps the number of entries (headers) in the archive plus
	// the directories Extract makes for entries whose parents it does not
	// list. Default 4,000,000, far above a full desktop distro (~500,000).
	MaxEntries int
	// ReserveBytes and ReservePercent keep free space on the file system
	// of the destination: Extract stops with an *InsufficientStorageError
	// before the space free to unprivileged users (df's "Avail") would fall
	// below the smaller of ReserveBytes and ReservePercent % of the file
	// system's size, so that an import never fills the disk the host and
	// other distros live on. Defaults 1 GiB and 5 (on an 8 GiB disk the
	// reserve is 410 MiB; on a 1 TiB disk, 1 GiB). A negative field leaves
	// that bound out; with both negative only a full file system (ENOSPC,
	// EDQUOT) stops Extract, with the same error.
	ReserveBytes   int64
	ReservePercent int
}

// Default limits, used for zero fields of Limits.
const (
	DefaultMaxExpandedBytes int64 = 256 << 30
	DefaultMaxEntries             = 4_000_000
	DefaultReserveBytes     int64 = 1 << 30
	DefaultReservePercent         = 5
)

func (l Limits) withDefaults() Limits {
	if l.MaxExpandedBytes <= 0 {
		l.MaxExpandedBytes = DefaultMaxExpandedBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.ReserveBytes == 0 {
		l.ReserveBytes = DefaultReserveBytes
	}
	if l.ReservePercent == 0 {
		l.ReservePercent = DefaultReservePercent
	}
	return l
}

// reserve returns the free space to keep on a file system of size bytes.
func (l Limits) reserve(size int64) int64 {
	r := int64(-1)
	if l.ReserveBytes > 0 {
		r = l.ReserveBytes
	}
	if l.ReservePercent > 0 && size > 0 {
		// size/100*p, without overflowing for any size.
		p := size/100*int64(l.ReservePercent) + size%100*int64(l.ReservePercent)/100
		if r < 0 || p < r {
			r = p
		}
	}
	return max(r, 0)
}

// Stats reports what Extract read and made; on an error, as far as it got.
type Stats struct {
	// Entries counts the archive's entries: files, directories, links,
	// device nodes and global headers, not the extended headers that
	// describe them.
	Entries int
	// Bytes is the data the entries wrote, as allocated on disk (a sparse
	// file's holes excluded): what MaxExpandedBytes bounds.
	Bytes int64
	// ApparentBytes is the sum of the regular files' sizes as ls shows
	// them, holes included.
	ApparentBytes int64
	// SkippedDevices counts device nodes not created: those outside /dev,
	// which a distro has no use for and which would give its users a handle
	// on host devices, and those the kernel did not permit (not root, or in
	// a user namespace). A distro's /dev is a fresh mount at start, so
	// nothing is lost.
	SkippedDevices int
	// Warnings are what the import accepted but a person should hear about
	// (skipped entries, attributes the file system refused, data after the
	// end of the archive), one line each, for the operation's result.
	Warnings []string
}

// Usage is what DiskUsage counts.
type Usage struct {
	// Bytes is the space allocated to the tree (st_blocks), each inode
	// once however many links it has: what du reports, sparse files
	// counting only what they use.
	Bytes int64
	// Apparent is the sum of the entries' sizes, holes included, each
	// inode once.
	Apparent int64
	// Entries counts the inodes: files, directories, symlinks, nodes.
	Entries int64
}

// Sentinel errors. Every error Extract returns because of the archive's
// content wraps one of them, so callers map them to a status with errors.Is.
var (
	// ErrFormat: the input is empty, not a tarball, compressed in a way that is
	// not supported, holds no entries, or a format name is unknown.
	ErrFormat = errors.New("unsupported archive format")
	// ErrCorrupt: the archive is truncated, its compression is damaged, a header
	// is malformed or would be read differently by GNU tar, or an entry cannot
	// be applied (a hard link to a missing file).
	ErrCorrupt = errors.New("corrupt archive")
	// ErrUnsafe: an entry would write, link or point outside the destination.
	ErrUnsafe = errors.New("unsafe archive entry")
	// ErrLimit: the archive has more entries or expanded bytes than Limits allow.
	ErrLimit = errors.New("archive exceeds limits")
	// ErrInsufficientStorage: the destination's file system is full, or the
	// import would leave less free than Limits reserve. The error is an
	// *InsufficientStorageError, which names the file system; servers
	// answer 507 Insufficient Storage.
	ErrInsufficientStorage = errors.New("insufficient storage")
)

// InsufficientStorageError reports that an import stopped because its file
// system is (nearly) full. errors.Is(err, ErrInsufficientStorage) matches it.
type InsufficientStorageError struct {
	Path       string // the destination directory
	MountPoint string // where the file system holding Path is mounted; "" if unknown
	FSType     string // its type, such as "ext4" or "tmpfs"; "" if unknown
	Free       int64  // bytes free to unprivileged users when the import stopped
	Needed     int64  // bytes the entry being written still needed; 0 if unknown
	Reserve    int64  // free space the import keeps (see Limits)
	Err        error  // the system's error (ENOSPC, EDQUOT), nil when the reserve stopped it
}

// Error names the file system, its free space and what the import needed.
func (e *InsufficientStorageError) Error() string {
	fs := e.MountPoint
	if fs == "" {
		fs = "the file system of " + e.Path
	}
	if e.FSType != "" {
		fs += " (" + e.FSType + ")"
	}
	var b strings.Builder
	if e.Err != nil {
		fmt.Fprintf(&b, "%s is full (%v): %s free", fs, e.Err, humanSize(e.Free))
	} else {
		fmt.Fprintf(&b, "not enough free space on %s: %s free", fs, humanSize(e.Free))
	}
	if e.Needed > 0 {
		fmt.Fprintf(&b, ", %s more needed", humanSize(e.Needed))
	}
	if e.Reserve > 0 {
		fmt.Fprintf(&b, ", %s kept in reserve", humanSize(e.Reserve))
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInsufficientStorage) true.
func (e *InsufficientStorageError) Is(target error) bool { return target == ErrInsufficientStorage }

// Unwrap returns the system's error, if there was one.
func (e *InsufficientStorageError) Unwrap() error { return e.Err }

// EntryError reports a problem with one entry of an archive. Err wraps one of
// the sentinels (or, for a failure of the host, the system error), so
// errors.Is works on it.
type EntryError struct {
	Name   string // the entry's name as written in the archive
	Reason string // what is wrong, for people
	Err    error
}

// Error names the entry and says what is wrong with it.
func (e *EntryError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("archive entry %q: %s", e.Name, e.Reason)
	}
	return fmt.Sprintf("archive entry %q: %s: %v", e.Name, e.Reason, e.Err)
}

// Unwrap returns the sentinel or system error under the entry's problem.
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

// The fields of a tar header block (POSIX ustar, with GNU's where they
// differ), as offset and length.
type field struct {
	name     string
	off, len int
}

func (f field) of(b []byte) []byte { return b[f.off : f.off+f.len] }

var (
	fieldName     = field{"name", 0, 100}
	fieldMode     = field{"mode", 100, 8}
	fieldUID      = field{"uid", 108, 8}
	fieldGID      = field{"gid", 116, 8}
	fieldSize     = field{"size", 124, 12}
	fieldMtime    = field{"mtime", 136, 12}
	fieldChksum   = field{"checksum", 148, 8}
	fieldMagic    = field{"magic", 257, 6}
	fieldVersion  = field{"version", 263, 2}
	fieldDevmajor = field{"devmajor", 329, 8}
	fieldDevminor = field{"devminor", 337, 8}
	fieldPrefix   = field{"prefix", 345, 155}
	fieldRealsize = field{"realsize", 483, 12} // GNU sparse
	fieldTrailer  = field{"trailer", 508, 4}   // star
)

const (
	typeOffset     = 156
	gnuSparseOff   = 386 // the GNU header's four sparse slots
	gnuSparseSlots = 4
	gnuExtended    = 482 // nonzero: a sparse extension block follows
	extSparseSlots = 21  // slots of an extension block, from offset 0
	extExtended    = 504
	// maxSpecial bounds an extended header, a long name or a sparse map,
	// as archive/tar and libarchive do.
	maxSpecial = 1 << 20
)

// numericField reads a numeric header field, accepting only what every tar
// reader (GNU tar, bsdtar, Python's tarfile, Go's archive/tar) reads as the
// same number: octal digits after optional spaces, followed by NULs and
// spaces only (no digits at all reads as 0, but GNU tar refuses a field of
// spaces alone), or base-256, which a first byte of 0x80 (positive) or 0xff
// (negative) marks. Anything else is refused: the leading NULs that
// archive/tar skips and GNU tar reads as the end of the number, a NUL before
// a digit, digits after a space, other bytes with the high bit set.
func numericField(f []byte) (int64, bool) {
	if len(f) > 0 && (f[0] == 0x80 || f[0] == 0xff) {
		return base256(f)
	}
	i := 0
	for i < len(f) && f[i] == ' ' {
		i++
	}
	var u uint64
	digits := 0
	for ; i < len(f) && f[i] >= '0' && f[i] <= '7'; i++ {
		if u > math.MaxInt64>>3 {
			return 0, false
		}
		u = u<<3 | uint64(f[i]-'0')
		digits++
	}
	for ; i < len(f); i++ {
		if f[i] != 0 && f[i] != ' ' {
			return 0, false
		}
	}
	if digits == 0 {
		// GNU tar skips one leading NUL, then blanks, and refuses a field
		// that ends there; a NUL after them reads as 0.
		j := 0
		if f[0] == 0 {
			j = 1
		}
		for j < len(f) && f[j] == ' ' {
			j++
		}
		if j == len(f) || f[j] != 0 {
			return 0, false
		}
	}
	return int64(u), true
}

// base256 decodes GNU's base-256 numbers as GNU tar and archive/tar both do:
// big-endian two's complement of the whole field, after the marker bit.
func base256(f []byte) (int64, bool) {
	var inv byte
	if f[0] == 0xff {
		inv = 0xff
	}
	var x uint64
	for i, c := range f {
		c ^= inv
		if i == 0 {
			c &= 0x7f
		}
		if x>>56 != 0 {
			return 0, false
		}
		x = x<<8 | uint64(c)
	}
	if x>>63 != 0 {
		return 0, false
	}
	if inv != 0 {
		return ^int64(x), true
	}
	return int64(x), true
}

// goNumeric reports whether archive/tar decodes f (its parseNumeric) without
// an error; for fields no other reader looks at.
func goNumeric(f []byte) bool {
	if f[0]&0x80 != 0 {
		// Base-256 in archive/tar's wider sense (any first byte with the
		// high bit): an 8-byte field cannot overflow it.
		return len(f) <= 8
	}
	s := bytes.Trim(f, " \x00")
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if len(s) == 0 {
		return true
	}
	x, err := strconv.ParseUint(string(s), 8, 64)
	return err == nil && x <= math.MaxInt64
}

// cString is a header string field up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// blockName is the name a header block gives its entry, for errors.
func blockName(b []byte) string {
	name := cString(fieldName.of(b))
	if string(fieldMagic.of(b)) == "ustar\x00" {
		if p := cString(fieldPrefix.of(b)); p != "" {
			name = p + "/" + name
		}
	}
	return name
}

// quoteField shows a raw field in an error, NULs and all.
func quoteField(f []byte) string {
	return strconv.Quote(string(f))
}

// checkChecksum returns why b is not a tar header block, or "" if it is.
func checkChecksum(b []byte) string {
	sum, ok := numericField(fieldChksum.of(b))
	if !ok || b[fieldChksum.off]&0x80 != 0 {
		return fmt.Sprintf("its checksum field %s is not an octal number", quoteField(fieldChksum.of(b)))
	}
	if u, s := checksums(b); sum != u && sum != s {
		return "its checksum does not match (a damaged header, or data that is not a tar archive)"
	}
	return ""
}

// checkHeader returns why a header block, whose checksum is right, is one
// that some tar reader would read differently from the way Extract does, or
// "" if it is not. It checks every numeric field that GNU tar, bsdtar or
// Python reads (see numericField): the device numbers only of device nodes
// and the sparse map only of GNU sparse files, the only ones that use them.
// Extension blocks of a sparse map are checked by checkSparseSlots.
func checkHeader(b []byte) string {
	typ := b[typeOffset]
	fields := []field{fieldMode, fieldUID, fieldGID, fieldSize, fieldMtime}
	if typ == tar.TypeChar || typ == tar.TypeBlock {
		fields = append(fields, fieldDevmajor, fieldDevminor)
	}
	for _, f := range fields {
		v, ok := numericField(f.of(b))
		if !ok {
			return fmt.Sprintf("its %s field %s is not a number that every tar reader reads the same way", f.name, quoteField(f.of(b)))
		}
		if v < 0 && f != fieldMtime {
			return fmt.Sprintf("its %s field is negative", f.name)
		}
	}
	magic := string(fieldMagic.of(b))
	if magic == "ustar\x00" || magic == "ustar " {
		// archive/tar decodes the device numbers of every entry and fails
		// on one it cannot read; say which field it was.
		for _, f := range []field{fieldDevmajor, fieldDevminor} {
			if !goNumeric(f.of(b)) {
				return fmt.Sprintf("its %s field %s is not a number", f.name, quoteField(f.of(b)))
			}
		}
	}
	if magic == "ustar\x00" && b[fieldPrefix.off] != 0 {
		// archive/tar takes the prefix whatever the version; Python and
		// libarchive only with version "00". A star header has a shorter
		// prefix, which GNU tar reads as far as its first NUL.
		if string(fieldVersion.of(b)) != "00" {
			return fmt.Sprintf("it has a name prefix but the version %s, which tar readers disagree on", quoteField(fieldVersion.of(b)))
		}
		if string(fieldTrailer.of(b)) == "tar\x00" && b[fieldPrefix.off+130] != 0 {
			return "its star name prefix has no terminating NUL"
		}
	}
	if typ == tar.TypeGNUSparse {
		if _, ok := numericField(fieldRealsize.of(b)); !ok {
			return fmt.Sprintf("its realsize field %s is not a number that every tar reader reads the same way", quoteField(fieldRealsize.of(b)))
		}
		if why := checkSparseSlots(b[gnuSparseOff:], gnuSparseSlots); why != "" {
			return why
		}
	}
	return ""
}

// checkSparseSlots checks the n offset and length pairs of an old GNU sparse
// map that start at b. A slot is empty when its first byte is NUL, but
// archive/tar looks at the offset and GNU tar at the length, so both must
// agree.
func checkSparseSlots(b []byte, n int) string {
	for i := range n {
		off, num := b[i*24:i*24+12], b[i*24+12:i*24+24]
		if (off[0] == 0) != (num[0] == 0) {
			return fmt.Sprintf("its sparse map slot %d is half empty, which tar readers disagree on", i)
		}
		if off[0] == 0 {
			continue
		}
		for _, f := range [][]byte{off, num} {
			if v, ok := numericField(f); !ok || v < 0 {
				return fmt.Sprintf("its sparse map slot %d holds %s, not a number that every tar reader reads the same way", i, quoteField(f))
			}
		}
	}
	return ""
}

// checksums returns the sum of a header's bytes with the checksum field
// counted as spaces, unsigned and (as historic tars computed it) signed.
func checksums(b []byte) (unsigned, signed int64) {
	for i, c := range b[:blockSize] {
		if i >= fieldChksum.off && i < fieldChksum.off+fieldChksum.len {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return unsigned, signed
}

// fragment is one stretch of a sparse file's data: n bytes at offset off.
type fragment struct{ off, n int64 }

// tarEntry is one entry of an archive as tarReader frames it.
type tarEntry struct {
	*tar.Header // as archive/tar decodes it; Size is the file's apparent size
	// offset is where the entry's first header block starts in the tar
	// stream (after decompression), for errors.
	offset int64
	// data is the number of bytes of file data the archive holds for the
	// entry, which tarReader.Read returns.
	data int64
	// sparse, for a sparse file, says where those bytes go, in order; the
	// rest of the file is holes. nil for other entries.
	sparse []fragment
}

// tarReader frames a tar stream the way GNU tar does and leaves the decoding
// of each entry's headers (PAX records, long names, times) to archive/tar.
// It reads every header block itself, refuses any that a tar reader would
// read differently (see checkHeader and checkEntry), and hands archive/tar
// the blocks of one entry at a time, so that the two can never disagree on
// where an entry's data ends and the next header starts. Unlike archive/tar
// it ends the archive at a single zero block (GNU tar's "A lone zero block")
// and at the end of the input without end-of-archive blocks, as GNU tar
// does, and it returns the sparse map of a sparse file, so that its holes
// need not be read as zeros.
type tarReader struct {
	r      io.Reader
	off    int64 // offset in the tar stream of the next byte of r
	blk    [blockSize]byte
	remain int64  // data of the current entry not yet read
	pad    int64  // padding after it
	last   string // name of the last entry returned, for errors
	done   bool
	warn   func(string)
	src    headerSource
	meta   []byte // reused for each entry's header blocks
}

func newTarReader(r io.Reader, warn func(string)) *tarReader {
	return &tarReader{r: r, warn: warn}
}

// Read reads the current entry's data, as the archive holds it (for a sparse
// file, its fragments one after the other).
func (t *tarReader) Read(p []byte) (int, error) {
	if t.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > t.remain {
		p = p[:t.remain]
	}
	n, err := t.r.Read(p)
	t.remain -= int64(n)
	t.off += int64(n)
	if err == io.EOF && t.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// where describes a position for errors: the offset, and the last entry.
func (t *tarReader) where(off int64) string {
	if t.last == "" {
		return fmt.Sprintf("at offset %d", off)
	}
	return fmt.Sprintf("at offset %d, after entry %q", off, t.last)
}

// readErr classifies an error of the underlying reader at offset off: the
// caller's and the decompressor's errors pass with the position added; an
// early end is ErrCorrupt.
func (t *tarReader) readErr(err error, off int64, what string) error {
	var se *sourceError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("read archive %s: %w", t.where(off), se.err)
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrFormat):
		return fmt.Errorf("%s: %w", t.where(off), err)
	case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: the archive is truncated in %s %s", ErrCorrupt, what, t.where(off))
	}
	return fmt.Errorf("%w: %s: %v", ErrCorrupt, t.where(off), err)
}

// skip discards what is left of the current entry.
func (t *tarReader) skip() error {
	if t.remain > 0 {
		n, err := io.CopyN(io.Discard, t.r, t.remain)
		t.off += n
		if err != nil {
			return t.readErr(err, t.off, fmt.Sprintf("the data of %q", t.last))
		}
		t.remain = 0
	}
	if t.pad > 0 {
		n, err := io.ReadFull(t.r, t.blk[:t.pad])
		t.off += int64(n)
		t.pad = 0
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			// The data is whole; only its padding is missing. Accept it,
			// as archive/tar and GNU tar do.
			t.done = true
			t.warn("the archive ends without its end-of-archive blocks; if it was cut short, entries are missing")
			return nil
		}
		if err != nil {
			return t.readErr(err, t.off, "padding")
		}
	}
	return nil
}

// readBlock reads one block into t.blk; io.EOF means the input ended exactly
// before it.
func (t *tarReader) readBlock() error {
	n, err := io.ReadFull(t.r, t.blk[:])
	t.off += int64(n)
	return err
}

// readSpecial reads the data of an extended header, a long name or a global
// header whose header block is in t.blk, and returns the block and the data
// (padded) together, as archive/tar reads them back.
func (t *tarReader) readSpecial(off int64, size int64) ([]byte, error) {
	if size > maxSpecial {
		return nil, &EntryError{blockName(t.blk[:]), fmt.Sprintf("header at offset %d: an extended header of %d bytes, more than %d", off, size, maxSpecial), ErrCorrupt}
	}
	buf := make([]byte, blockSize+size+blockPadding(size))
	copy(buf, t.blk[:])
	n, err := io.ReadFull(t.r, buf[blockSize:])
	t.off += int64(n)
	if err != nil {
		return nil, t.readErr(err, t.off, fmt.Sprintf("the extended header at offset %d", off))
	}
	return buf, nil
}

func blockPadding(n int64) int64 { return -n & (blockSize - 1) }

// headerSource feeds archive/tar the header blocks of one entry, meta, and
// after them the start of the entry's data from r, keeping what it read of
// that: the sparse map that GNU's PAX sparse format 1.0 puts before a file's
// data. It is reused from entry to entry, its buffers with it.
type headerSource struct {
	r    io.Reader
	meta []byte // header blocks not yet read
	buf  []byte // what was read from r
}

func (s *headerSource) Read(p []byte) (int, error) {
	if len(s.meta) > 0 {
		n := copy(p, s.meta)
		s.meta = s.meta[n:]
		return n, nil
	}
	if len(s.buf) >= maxSpecial+blockSize {
		return 0, fmt.Errorf("%w: sparse map longer than %d bytes", ErrCorrupt, maxSpecial)
	}
	p = p[:min(len(p), maxSpecial+blockSize-len(s.buf))]
	n, err := s.r.Read(p)
	s.buf = append(s.buf, p[:n]...)
	return n, err
}

// next returns the next entry, or io.EOF at the end of the archive. The data
// of the entry before it that was not read is skipped.
func (t *tarReader) next() (*tarEntry, error) {
	if t.done {
		return nil, io.EOF
	}
	if err := t.skip(); err != nil {
		return nil, err
	}
	if t.done {
		return nil, io.EOF
	}
	// The newest of each kind of extended header: a later one replaces an
	// earlier one for GNU tar and archive/tar alike.
	var pax, long, longLink []byte
	start := t.off
	meta := t.meta[:0]
	var sparseBlocks [][]byte // the old GNU sparse map: header and extension blocks
	for {
		off := t.off
		err := t.readBlock()
		if err == io.EOF && pax == nil && long == nil && longLink == nil {
			t.done = true
			t.warn("the archive ends without its end-of-archive blocks; if it was cut short, entries are missing")
			return nil, io.EOF
		}
		if err != nil {
			return nil, t.readErr(err, off, "a header")
		}
		if isZeroBlock(t.blk[:]) {
			return nil, t.end(off)
		}
		if why := checkChecksum(t.blk[:]); why != "" {
			return nil, fmt.Errorf("%w: no valid tar header %s: %s", ErrCorrupt, t.where(off), why)
		}
		if why := checkHeader(t.blk[:]); why != "" {
			return nil, &EntryError{blockName(t.blk[:]), fmt.Sprintf("header at offset %d: %s", off, why), ErrCorrupt}
		}
		size, _ := numericField(fieldSize.of(t.blk[:]))
		typ := t.blk[typeOffset]
		switch typ {
		case tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink, tar.TypeXGlobalHeader:
			if typ == tar.TypeXGlobalHeader && (pax != nil || long != nil || longLink != nil) {
				// GNU tar keeps the extended header for the entry after
				// the global one, archive/tar drops it.
				return nil, &EntryError{blockName(t.blk[:]), fmt.Sprintf("header at offset %d: a global header between an extended header and its entry, which tar readers disagree on", off), ErrCorrupt}
			}
			buf, err := t.readSpecial(off, size)
			if err != nil {
				return nil, err
			}
			switch typ {
			case tar.TypeXHeader:
				pax = buf
			case tar.TypeGNULongName:
				long = buf
			case tar.TypeGNULongLink:
				longLink = buf
			case tar.TypeXGlobalHeader:
				meta = buf
			}
			if typ != tar.TypeXGlobalHeader {
				continue
			}
		case 'X':
			// Solaris' extended header: GNU tar applies its records (a
			// size among them) to the next entry, archive/tar does not.
			return nil, &EntryError{blockName(t.blk[:]), fmt.Sprintf("header at offset %d: a Solaris extended header (type 'X'), which tar readers disagree on", off), ErrCorrupt}
		case tar.TypeGNUSparse:
			sparseBlocks = append(sparseBlocks, slices.Clone(t.blk[:]))
			for ext := t.blk[gnuExtended] != 0; ext; ext = t.blk[extExtended] != 0 {
				if len(sparseBlocks)*blockSize > maxSpecial {
					return nil, &EntryError{blockName(sparseBlocks[0]), fmt.Sprintf("header at offset %d: sparse map longer than %d bytes", off, maxSpecial), ErrCorrupt}
				}
				if err := t.readBlock(); err != nil {
					return nil, t.readErr(err, t.off, fmt.Sprintf("the sparse map of %q", blockName(sparseBlocks[0])))
				}
				if why := checkSparseSlots(t.blk[:], extSparseSlots); why != "" {
					return nil, &EntryError{blockName(sparseBlocks[0]), fmt.Sprintf("sparse map block at offset %d: %s", t.off-blockSize, why), ErrCorrupt}
				}
				sparseBlocks = append(sparseBlocks, slices.Clone(t.blk[:]))
			}
		}
		if typ != tar.TypeXGlobalHeader {
			for _, b := range [][]byte{pax, long, longLink} {
				meta = append(meta, b...)
			}
			if len(sparseBlocks) > 0 {
				meta = append(meta, slices.Concat(sparseBlocks...)...)
			} else {
				meta = append(meta, t.blk[:]...)
			}
		}
		e, err := t.decode(start, meta, pax != nil, long, longLink, sparseBlocks, size)
		if typ != tar.TypeXGlobalHeader {
			t.meta = meta[:0]
		}
		if err != nil {
			return nil, err
		}
		t.last = e.Name
		return e, nil
	}
}

// end handles a zero block at offset off: GNU tar ends the archive there,
// after reading the block that follows, whatever it holds.
func (t *tarReader) end(off int64) error {
	t.done = true
	err := t.readBlock()
	switch {
	case err == io.EOF, err == io.ErrUnexpectedEOF:
		// One zero block and the end: what some writers leave.
	case err != nil:
		return t.readErr(err, off+blockSize, "the end-of-archive blocks")
	case !isZeroBlock(t.blk[:]):
		t.warn(fmt.Sprintf("the archive ends with a single zero block at offset %d followed by other data, which was ignored (as GNU tar does)", off))
	}
	return io.EOF
}

// decode has archive/tar decode the header blocks of one entry, meta, and
// checks what it made of them. hdrSize is the size field of the entry's own
// header block.
func (t *tarReader) decode(start int64, meta []byte, pax bool, long, longLink []byte, sparseBlocks [][]byte, hdrSize int64) (*tarEntry, error) {
	// The name the entry's own header block gives, for errors.
	name := func() string {
		if len(sparseBlocks) > 0 {
			return blockName(sparseBlocks[0])
		}
		if meta[typeOffset] == tar.TypeXGlobalHeader {
			return blockName(meta)
		}
		return blockName(meta[len(meta)-blockSize:])
	}
	t.src = headerSource{r: t.r, meta: meta, buf: t.src.buf[:0]}
	c := &t.src
	hdr, err := tar.NewReader(c).Next()
	t.off += int64(len(c.buf))
	if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
		var se *sourceError
		if errors.As(err, &se) || errors.Is(err, ErrCorrupt) {
			return nil, t.readErr(err, t.off, "a sparse map")
		}
		what := "its header"
		switch {
		case len(sparseBlocks) > 0:
			what = "its GNU sparse map"
		case len(c.buf) > 0:
			what = "its sparse map (GNU PAX format 1.0)"
		case pax:
			what = "its PAX extended header"
		case meta[typeOffset] == tar.TypeXGlobalHeader:
			what = "the global PAX header"
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			return nil, fmt.Errorf("%w: the archive is truncated in the sparse map of %q (header at offset %d)", ErrCorrupt, name(), start)
		}
		why := fmt.Sprintf("header at offset %d: %s is malformed", start, what)
		if !errors.Is(err, tar.ErrHeader) {
			why += fmt.Sprintf(" (%v)", err)
		}
		return nil, &EntryError{name(), why, ErrCorrupt}
	}
	left := 0
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		left = int(blockPadding(hdrSize)) // archive/tar returns before the padding
	}
	if len(c.meta) != left || (len(c.buf) > 0 && !isSparse1(hdr)) {
		// Cannot happen unless this file and archive/tar frame a header
		// differently; refuse rather than guess which is right.
		return nil, &EntryError{hdr.Name, fmt.Sprintf("header at offset %d: archive/tar framed it differently (%d bytes left, %d read ahead)", start, len(c.meta), len(c.buf)), ErrCorrupt}
	}
	e := &tarEntry{Header: hdr, offset: start}
	fail := func(why string) error {
		n := hdr.Name
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			n = name() // not what a path record in it says
		}
		return &EntryError{n, fmt.Sprintf("header at offset %d: %s", start, why), ErrCorrupt}
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		for k := range hdr.PAXRecords {
			if globalRefused(k) {
				return nil, fail(fmt.Sprintf("a global PAX header sets %q, which GNU tar applies to every later entry and archive/tar ignores", k))
			}
		}
		return e, nil
	}
	if why := checkEntry(hdr, long, longLink); why != "" {
		return nil, fail(why)
	}
	// The data the archive holds for the entry: the PAX size if there is
	// one, else the header's; none for types that have no data.
	e.data = hdrSize
	if s := hdr.PAXRecords["size"]; s != "" {
		e.data, _ = strconv.ParseInt(s, 10, 64) // checked by checkEntry
	}
	// The type as written: archive/tar has made a directory of a '\x00'
	// entry named with a trailing slash.
	typ := meta[len(meta)-blockSize+typeOffset]
	if len(sparseBlocks) > 0 {
		typ = sparseBlocks[0][typeOffset]
	}
	switch {
	case (typ == 0 || typ == tar.TypeReg || typ == tar.TypeCont || typ == tar.TypeGNUSparse) && strings.HasSuffix(hdr.Name, "/"):
		if e.data != 0 {
			// GNU tar extracts a file named with a trailing slash as a
			// directory and reads no data, but skips the data when
			// listing; archive/tar reads it, or not, by the type.
			return nil, fail(fmt.Sprintf("a file named as a directory with %d bytes of data, which tar readers disagree on", e.data))
		}
	case hdr.Typeflag == tar.TypeLink, hdr.Typeflag == tar.TypeSymlink, hdr.Typeflag == tar.TypeChar,
		hdr.Typeflag == tar.TypeBlock, hdr.Typeflag == tar.TypeFifo:
		if e.data != 0 {
			// archive/tar reads no data for these; GNU tar skips it when
			// listing but not when extracting.
			return nil, fail(fmt.Sprintf("a %s with %d bytes of data, which tar readers disagree on", typeName(hdr.Typeflag), e.data))
		}
	case hdr.Typeflag == tar.TypeDir:
		e.data = 0 // GNU tar and archive/tar both read no data for a directory
	}
	if e.sparse, err = sparseMap(hdr, sparseBlocks, c.buf); err != nil {
		return nil, fail(err.Error())
	}
	if e.sparse != nil {
		e.data -= int64(len(c.buf))
		var sum int64
		for i, f := range e.sparse {
			sum += f.n
			if f.n%blockSize != 0 && i < len(e.sparse)-1 && slices.ContainsFunc(e.sparse[i+1:], func(g fragment) bool { return g.n > 0 }) {
				// GNU tar starts each fragment's data on a new block;
				// archive/tar reads them back to back.
				return nil, fail(fmt.Sprintf("sparse fragment %d is %d bytes, not a multiple of %d, which tar readers disagree on", i, f.n, blockSize))
			}
		}
		if sum != e.data {
			return nil, fail(fmt.Sprintf("its sparse map holds %d bytes of data but the entry %d", sum, e.data))
		}
	}
	t.remain = e.data
	t.pad = blockPadding(e.data + int64(len(c.buf)))
	return e, nil
}

// isSparse1 reports whether hdr is a sparse file in GNU's PAX format 1.0,
// whose map archive/tar reads from the start of the data.
func isSparse1(hdr *tar.Header) bool {
	return hdr.PAXRecords["GNU.sparse.major"] == "1" && hdr.PAXRecords["GNU.sparse.minor"] == "0"
}

// globalRefused reports whether a global PAX header may not set key: GNU tar
// applies a global header's records to every later entry, archive/tar to
// none, so records that change where data ends, a name, an owner or a
// file's content would make the two extract different trees. Comments,
// character sets and times may stay.
func globalRefused(key string) bool {
	switch key {
	case "size", "path", "linkpath", "uid", "gid", "uname", "gname":
		return true
	}
	for _, p := range []string{"GNU.sparse.", "SCHILY.", "LIBARCHIVE.", "RHT."} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// checkEntry returns why an entry's decoded header is one that tar readers
// would read differently, or "". long and longLink are the GNU long name and
// long link blocks, if any.
func checkEntry(hdr *tar.Header, long, longLink []byte) string {
	rec := hdr.PAXRecords
	for _, k := range []string{"size", "uid", "gid", "GNU.sparse.size", "GNU.sparse.realsize", "GNU.sparse.numblocks", "SCHILY.devmajor", "SCHILY.devminor"} {
		if v, ok := rec[k]; ok && v != "" && strings.Trim(v, "0123456789") != "" {
			// archive/tar's ParseInt takes "+1"; GNU tar's strtoimax takes
			// leading blanks too.
			return fmt.Sprintf("its PAX record %s=%q is not a plain decimal number", k, v)
		}
	}
	// GNU tar takes the device numbers from these records, archive/tar
	// from the header.
	if v := rec["SCHILY.devmajor"]; v != "" && v != strconv.FormatInt(hdr.Devmajor, 10) {
		return fmt.Sprintf("its PAX record SCHILY.devmajor=%s differs from the header's %d", v, hdr.Devmajor)
	}
	if v := rec["SCHILY.devminor"]; v != "" && v != strconv.FormatInt(hdr.Devminor, 10) {
		return fmt.Sprintf("its PAX record SCHILY.devminor=%s differs from the header's %d", v, hdr.Devminor)
	}
	// A GNU long name and a PAX path: archive/tar takes the first, GNU tar
	// the second; GNU.sparse.name overrides both in archive/tar.
	names := map[string]bool{}
	if long != nil {
		names[cString(long[blockSize:])] = true
	}
	for _, k := range []string{"path", "GNU.sparse.name"} {
		if v := rec[k]; v != "" {
			names[v] = true
		}
	}
	if len(names) > 1 {
		return fmt.Sprintf("it has %d different names (GNU long name, PAX path, GNU.sparse.name), which tar readers choose between differently", len(names))
	}
	if longLink != nil && rec["linkpath"] != "" && rec["linkpath"] != cString(longLink[blockSize:]) {
		return "its GNU long link name and PAX linkpath differ, which tar readers choose between differently"
	}
	return ""
}

func typeName(t byte) string {
	switch t {
	case tar.TypeLink:
		return "hard link"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("entry of type %q", t)
}

// sparseMap returns the data fragments of a sparse entry, nil for another,
// or an error saying why the map is refused. archive/tar has decoded and
// checked the map already but keeps it to itself; this reads it again from
// the same bytes: the old GNU header and extension blocks, the PAX records
// of formats 0.0 and 0.1, or the map that format 1.0 puts before the data.
func sparseMap(hdr *tar.Header, blocks [][]byte, pre []byte) ([]fragment, error) {
	var frags []fragment
	add := func(off, n int64) error {
		if off < 0 || n < 0 || off > hdr.Size-n || (len(frags) > 0 && frags[len(frags)-1].off+frags[len(frags)-1].n > off) {
			return fmt.Errorf("sparse fragment %d (%d bytes at %d) is out of order or beyond the file's size %d", len(frags), n, off, hdr.Size)
		}
		if len(frags) >= maxSpecial {
			return fmt.Errorf("sparse map with more than %d fragments", maxSpecial)
		}
		frags = append(frags, fragment{off, n})
		return nil
	}
	rec := hdr.PAXRecords
	major, minor := rec["GNU.sparse.major"], rec["GNU.sparse.minor"]
	switch {
	case len(blocks) > 0:
		frags = []fragment{}
		for i, b := range blocks {
			slots, base := extSparseSlots, 0
			if i == 0 {
				slots, base = gnuSparseSlots, gnuSparseOff
			}
			for s := range slots {
				p := b[base+s*24:]
				if p[0] == 0 {
					break
				}
				off, _ := numericField(p[:12])
				n, _ := numericField(p[12:24])
				if err := add(off, n); err != nil {
					return nil, err
				}
			}
		}
		return frags, nil
	case major == "1" && minor == "0":
		frags = []fragment{}
		fields := strings.Split(string(pre), "\n")
		count, err := strconv.ParseUint(fields[0], 10, 31)
		if err != nil || uint64(len(fields)) < 1+2*count {
			return nil, fmt.Errorf("sparse map with a bad entry count %q", fields[0])
		}
		for i := range count {
			o, n := fields[1+2*i], fields[2+2*i]
			if strings.Trim(o+n, "0123456789") != "" || o == "" || n == "" {
				return nil, fmt.Errorf("sparse map entry %d %q, %q is not two decimal numbers", i, o, n)
			}
			off, err1 := strconv.ParseInt(o, 10, 64)
			num, err2 := strconv.ParseInt(n, 10, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("sparse map entry %d %q, %q is out of range", i, o, n)
			}
			if err := add(off, num); err != nil {
				return nil, err
			}
		}
		return frags, nil
	case major == "0" && (minor == "0" || minor == "1"), major == "" && minor == "" && rec["GNU.sparse.map"] != "":
		frags = []fragment{}
		m := rec["GNU.sparse.map"]
		if m == "" {
			return frags, nil
		}
		nums := strings.Split(m, ",")
		if len(nums)%2 != 0 {
			return nil, fmt.Errorf("sparse map %q has an odd number of fields", m)
		}
		for i := 0; i < len(nums); i += 2 {
			if strings.Trim(nums[i]+nums[i+1], "0123456789") != "" || nums[i] == "" || nums[i+1] == "" {
				return nil, fmt.Errorf("sparse map entry %q, %q is not two decimal numbers", nums[i], nums[i+1])
			}
			off, err1 := strconv.ParseInt(nums[i], 10, 64)
			num, err2 := strconv.ParseInt(nums[i+1], 10, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("sparse map entry %q, %q is out of range", nums[i], nums[i+1])
			}
			if err := add(off, num); err != nil {
				return nil, err
			}
		}
		return frags, nil
	case major != "" || minor != "":
		return nil, fmt.Errorf("GNU sparse format %s.%s, which archive/tar does not read", major, minor)
	}
	for k := range rec {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return nil, fmt.Errorf("PAX record %s without a sparse map, which tar readers disagree on", k)
		}
	}
	return nil, nil
}
