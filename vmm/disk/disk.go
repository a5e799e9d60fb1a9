// Package disk makes and looks after the ext4 disk images of version 2
// distros: one sparse file per distro, with a maximum size (DefaultMaxSize
// unless the user chooses another), filled from an already extracted,
// trusted staging tree by mkfs.ext4 -d, so that no image is ever loop-mounted
// or mounted on the host.
//
// An image is sized so that a fresh one takes on the host little more than
// the tree itself: the file is truncated to its maximum first (a hole), and
// mkfs is told that the storage reads as zeros, so it writes only the
// metadata it must. The choices and their reasons are in mkfsArgs and
// mke2fsConf.
//
// Host e2fsprogs (Check, Grow) are run only on images this server made and
// whose content it still trusts. A filesystem a guest has written, or one a
// user imported, is parsed inside the VM, never by e2fsck or resize2fs running
// as root on the host: those programs are large C parsers of an untrusted
// format.
//
// The package works on Linux; elsewhere every function returns
// errors.ErrUnsupported, but ParseSuperblock, which is plain Go. vmm uses
// it for version 2 distros.
package disk

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultMaxSize is the maximum size of a distro's image unless the user
// chooses another: 256 GiB, as WSL's, large enough that a distro rarely
// needs Grow, and free until used, since the file is sparse.
const DefaultMaxSize int64 = 256 << 30

// MinMaxSize and MaxMaxSize bound the maximum size a user may choose for a
// distro's image. Below 64 MiB a distro hardly fits beside ext4's metadata.
// 8 TiB is far beyond any distro, and below the largest file the host's
// own file system may hold: ext4 with 4 KiB blocks stops just short of
// 16 TiB, and the image is one sparse file of its maximum size.
const (
	MinMaxSize int64 = 64 << 20
	MaxMaxSize int64 = 8 << 40
)

// BlockSize is the filesystem block size. Image sizes are rounded down to a
// multiple of it, so that the filesystem covers the whole file.
const BlockSize = 4096

// Options are the choices a caller may make for Create; the zero value is
// the right one for a distro disk.
type Options struct {
	// Label is the volume label (at most 16 bytes), so the guest can find
	// the disk by LABEL=; empty means none.
	Label string
	// BytesPerInode is the inode ratio (mkfs -i); 0 means
	// DefaultBytesPerInode. Create raises the inode count above what the
	// ratio gives when the tree needs it (see mkfsArgs).
	BytesPerInode int64
	// JournalMiB is the journal size in MiB; 0 means DefaultJournalMiB.
	JournalMiB int
}

// DefaultBytesPerInode is the default inode ratio, 64 KiB: 4 Mi inodes for
// a 256 GiB disk, 1 GiB of inode tables rather than the 4 GiB of ext4's
// 16 KiB default. A distro's files average well above 64 KiB of disk per
// inode once it holds any data, and Create adds inodes for a tree that would
// need more.
const DefaultBytesPerInode = 64 << 10

// DefaultJournalMiB is the default journal size, 128 MiB: what mke2fs itself
// gives a 16–32 GiB filesystem, enough that apt or a build is not throttled
// by journal checkpoints, where its 1 GiB default for 256 GiB would, once the
// guest has cycled through it, take 1 GiB of the host's disk for nothing.
// Even fully written it stays inside the 150 MiB of overhead a fresh image
// may have beyond its tree.
const DefaultJournalMiB = 128

// maxStderr bounds how much of a program's stderr goes into an error.
const maxStderr = 2048

// sanitize makes a program's stderr fit to go into an error message: at
// most maxStderr bytes, valid UTF-8, no control characters (newlines become
// "; "), so a name in the tree cannot forge lines in a log or a terminal.
func sanitize(b []byte) string {
	cut := len(b) > maxStderr
	if cut {
		b = b[:maxStderr]
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == '\n':
			// One separator for a run of line ends and blank lines.
			if t := strings.TrimRight(sb.String(), " "); t != "" && !strings.HasSuffix(t, ";") {
				sb.WriteString("; ")
			}
		case r == utf8.RuneError && n == 1:
			sb.WriteString(`\x` + strconv.FormatUint(uint64(b[0]), 16))
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			q := strconv.QuoteRuneToASCII(r)
			sb.WriteString(q[1 : len(q)-1])
		default:
			sb.WriteRune(r)
		}
		b = b[n:]
	}
	s := strings.TrimSuffix(strings.TrimSpace(sb.String()), ";")
	if cut {
		s += " …(truncated)"
	}
	return s
}
