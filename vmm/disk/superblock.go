package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// SuperblockOffset is where an ext2/3/4 superblock starts in its image, and
// SuperblockSize how long it is: ParseSuperblock needs the image's first
// SuperblockOffset+SuperblockSize bytes.
const (
	SuperblockOffset = 1024
	SuperblockSize   = 1024
)

// ext4Magic is s_magic, the superblock's signature.
const ext4Magic = 0xEF53

// Feature flags ParseSuperblock reads.
const (
	incompat64Bit        = 0x80
	roCompatMetadataCsum = 0x400
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrNotExt4 is wrapped by ParseSuperblock's errors: the bytes are not the
// start of an ext2/3/4 filesystem this package would accept.
var ErrNotExt4 = errors.New("not an ext4 filesystem")

// Superblock is what ParseSuperblock reads of an ext4 superblock.
type Superblock struct {
	// BlockSize is the filesystem block size in bytes (1 KiB to 64 KiB).
	BlockSize int64
	// Blocks is the filesystem's size in blocks (s_blocks_count).
	Blocks uint64
	// FreeBlocks is s_free_blocks_count: the free blocks as of the last
	// time the kernel or e2fsprogs wrote the superblock (an unmount, a
	// check). While the file system is mounted it lags.
	FreeBlocks uint64
	// Inodes is its inode count.
	Inodes uint32
	// Checksummed says the superblock carries a metadata_csum checksum,
	// which ParseSuperblock has verified.
	Checksummed bool
}

// Size is the filesystem's size in bytes: what an image holding it must be
// at least.
func (s Superblock) Size() int64 { return int64(s.Blocks) * s.BlockSize }

// Free is the file system's free space in bytes, as FreeBlocks counts it.
func (s Superblock) Free() int64 { return int64(s.FreeBlocks) * s.BlockSize }

// ParseSuperblock reads the ext4 superblock from the first bytes of an image
// (at least SuperblockOffset+SuperblockSize of them) and checks that it is
// plausible: the magic number, a block size the kernel supports, block and
// inode counts and group sizes that agree, a size that fits in int64, and
// the superblock checksum when metadata_csum is on.
//
// It is a cheap sanity check of an untrusted image, in Go, before the image
// is accepted as a distro's disk: it catches the wrong file (a tarball, a
// partitioned disk, a VHDX) and a truncated one (FitsIn), not a crafted one.
// The host never mounts an imported image nor runs e2fsprogs on it; the
// guest's kernel is what parses the rest.
func ParseSuperblock(b []byte) (Superblock, error) {
	if len(b) < SuperblockOffset+SuperblockSize {
		return Superblock{}, fmt.Errorf("%w: %d bytes, too short to hold a superblock", ErrNotExt4, len(b))
	}
	sb := b[SuperblockOffset : SuperblockOffset+SuperblockSize]
	le := binary.LittleEndian
	if m := le.Uint16(sb[0x38:]); m != ext4Magic {
		return Superblock{}, fmt.Errorf("%w: no ext2/3/4 magic number at offset %d (found %#04x)", ErrNotExt4, SuperblockOffset+0x38, m)
	}
	var s Superblock
	logBlock := le.Uint32(sb[0x18:])
	if logBlock > 6 {
		return Superblock{}, fmt.Errorf("%w: block size 2^(10+%d) is beyond the 64 KiB maximum", ErrNotExt4, logBlock)
	}
	s.BlockSize = 1024 << logBlock
	s.Inodes = le.Uint32(sb[0x00:])
	blocksLo := uint64(le.Uint32(sb[0x04:]))
	firstData := le.Uint32(sb[0x14:])
	blocksPerGroup := le.Uint32(sb[0x20:])
	inodesPerGroup := le.Uint32(sb[0x28:])
	incompat := le.Uint32(sb[0x60:])
	roCompat := le.Uint32(sb[0x64:])
	s.Blocks = blocksLo
	s.FreeBlocks = uint64(le.Uint32(sb[0x0C:]))
	if incompat&incompat64Bit != 0 {
		s.Blocks |= uint64(le.Uint32(sb[0x150:])) << 32
		s.FreeBlocks |= uint64(le.Uint32(sb[0x158:])) << 32
	}
	switch {
	case s.Blocks == 0 || s.Inodes == 0:
		return Superblock{}, fmt.Errorf("%w: %d blocks and %d inodes", ErrNotExt4, s.Blocks, s.Inodes)
	case s.Blocks > uint64(1<<63-1)/uint64(s.BlockSize):
		return Superblock{}, fmt.Errorf("%w: %d blocks of %d bytes is beyond any disk", ErrNotExt4, s.Blocks, s.BlockSize)
	// The block holding the superblock is block 1 with 1 KiB blocks, else 0.
	case (s.BlockSize == 1024) != (firstData == 1) || firstData > 1:
		return Superblock{}, fmt.Errorf("%w: first data block %d with %d-byte blocks", ErrNotExt4, firstData, s.BlockSize)
	case s.Blocks <= uint64(firstData):
		return Superblock{}, fmt.Errorf("%w: %d blocks, none after the superblock", ErrNotExt4, s.Blocks)
	// A group's block bitmap is one block: at most 8 bits per byte of it.
	case blocksPerGroup == 0 || int64(blocksPerGroup) > 8*s.BlockSize:
		return Superblock{}, fmt.Errorf("%w: %d blocks per group with %d-byte blocks", ErrNotExt4, blocksPerGroup, s.BlockSize)
	case inodesPerGroup == 0 || int64(inodesPerGroup) > 8*s.BlockSize:
		return Superblock{}, fmt.Errorf("%w: %d inodes per group with %d-byte blocks", ErrNotExt4, inodesPerGroup, s.BlockSize)
	}
	// The inodes are the groups' inodes: s_inodes_count is groups ×
	// s_inodes_per_group, and the groups are what the blocks make.
	groups := (s.Blocks - uint64(firstData) + uint64(blocksPerGroup) - 1) / uint64(blocksPerGroup)
	if uint64(s.Inodes) != groups*uint64(inodesPerGroup) {
		return Superblock{}, fmt.Errorf("%w: %d inodes, where %d groups of %d make %d", ErrNotExt4, s.Inodes, groups, inodesPerGroup, groups*uint64(inodesPerGroup))
	}
	if s.FreeBlocks > s.Blocks {
		return Superblock{}, fmt.Errorf("%w: %d free blocks of %d", ErrNotExt4, s.FreeBlocks, s.Blocks)
	}
	if roCompat&roCompatMetadataCsum != 0 {
		// crc32c of the superblock up to s_checksum, seeded with ~0 and
		// not inverted at the end (ext4_superblock_csum); Go's Checksum
		// inverts, hence the ^.
		want := le.Uint32(sb[0x3FC:])
		if got := ^crc32.Checksum(sb[:0x3FC], castagnoli); got != want {
			return Superblock{}, fmt.Errorf("%w: superblock checksum %#08x, stored %#08x", ErrNotExt4, got, want)
		}
		s.Checksummed = true
	}
	return s, nil
}

// FitsIn checks that the filesystem fits in an image of size bytes: an image
// shorter than its filesystem was cut short (a failed download, a partial
// copy), and its guest would find blocks missing.
func (s Superblock) FitsIn(size int64) error {
	if s.Size() > size {
		return fmt.Errorf("%w: the filesystem is %d bytes (%d blocks of %d) but the image only %d: it is truncated", ErrNotExt4, s.Size(), s.Blocks, s.BlockSize, size)
	}
	return nil
}
