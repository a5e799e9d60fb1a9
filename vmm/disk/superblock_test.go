package disk

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

// testSuperblock returns the first 2 KiB of an image whose superblock
// describes a filesystem of blocks blocks of 4 KiB, 32768 per group, as
// mkfs.ext4 makes them; change then edits the superblock (offsets as in
// ParseSuperblock) before its checksum is set when csum is true.
func testSuperblock(blocks uint64, csum bool, change func(sb []byte)) []byte {
	b := make([]byte, SuperblockOffset+SuperblockSize)
	sb := b[SuperblockOffset:]
	le := binary.LittleEndian
	groups := (blocks + 32767) / 32768
	le.PutUint32(sb[0x00:], uint32(groups*8192))
	le.PutUint32(sb[0x04:], uint32(blocks))
	le.PutUint32(sb[0x14:], 0)
	le.PutUint32(sb[0x18:], 2) // 4 KiB
	le.PutUint32(sb[0x20:], 32768)
	le.PutUint32(sb[0x28:], 8192)
	le.PutUint16(sb[0x38:], ext4Magic)
	le.PutUint32(sb[0x60:], incompat64Bit)
	le.PutUint32(sb[0x150:], uint32(blocks>>32))
	if csum {
		le.PutUint32(sb[0x64:], roCompatMetadataCsum)
	}
	if change != nil {
		change(sb)
	}
	if csum {
		le.PutUint32(sb[0x3FC:], ^crc32.Checksum(sb[:0x3FC], castagnoli))
	}
	return b
}

func TestParseSuperblock(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		name      string
		b         []byte
		fileSize  int64
		wantErr   string // "" for a good one; else part of the error
		wantSize  int64
		wantCsum  bool
		wantFitOK bool
	}{
		{name: "1 GiB", b: testSuperblock(262144, true, nil), fileSize: 1 << 30, wantSize: 1 << 30, wantCsum: true, wantFitOK: true},
		{name: "no metadata_csum", b: testSuperblock(262144, false, nil), fileSize: 1 << 30, wantSize: 1 << 30, wantFitOK: true},
		{name: "file larger than its filesystem", b: testSuperblock(262144, true, nil), fileSize: 2 << 30, wantSize: 1 << 30, wantCsum: true, wantFitOK: true},
		{name: "truncated image", b: testSuperblock(262144, true, nil), fileSize: 1<<30 - 4096, wantSize: 1 << 30, wantCsum: true},
		{name: "16 TiB with 64bit", b: testSuperblock(1<<32, true, nil), fileSize: 16 << 40, wantSize: 16 << 40, wantCsum: true, wantFitOK: true},
		{name: "1 KiB blocks", b: testSuperblock(0, false, func(sb []byte) {
			le.PutUint32(sb[0x00:], 2048)
			le.PutUint32(sb[0x04:], 8192)
			le.PutUint32(sb[0x14:], 1)
			le.PutUint32(sb[0x18:], 0)
			le.PutUint32(sb[0x20:], 8192)
			le.PutUint32(sb[0x28:], 2048)
		}), fileSize: 8 << 20, wantSize: 8 << 20, wantFitOK: true},
		{name: "more free blocks than blocks", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x0C:], 262145) }), wantErr: "free blocks"},
		{name: "free blocks high half", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x158:], 1) }), wantErr: "free blocks"},
		{name: "too short", b: make([]byte, 2047), wantErr: "too short"},
		{name: "zeros", b: make([]byte, 4096), wantErr: "magic"},
		{name: "tarball", b: []byte(strings.Repeat("./etc/passwd\x00", 200)), wantErr: "magic"},
		{name: "bad checksum", b: func() []byte { b := testSuperblock(262144, true, nil); b[SuperblockOffset+0x3FC] ^= 1; return b }(), wantErr: "checksum"},
		{name: "corrupt after checksum", b: func() []byte { b := testSuperblock(262144, true, nil); b[SuperblockOffset+0x100] ^= 1; return b }(), wantErr: "checksum"},
		{name: "block size 128 KiB", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x18:], 7) }), wantErr: "block size"},
		{name: "huge log block size", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x18:], 0xffffffff) }), wantErr: "block size"},
		{name: "no blocks", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x04:], 0) }), wantErr: "0 blocks"},
		{name: "no inodes", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x00:], 0) }), wantErr: "0 inodes"},
		{name: "size overflows", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x150:], 0xffffffff) }), wantErr: "beyond any disk"},
		{name: "first data block 1 with 4 KiB blocks", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x14:], 1) }), wantErr: "first data block"},
		{name: "zero blocks per group", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x20:], 0) }), wantErr: "blocks per group"},
		{name: "too many blocks per group", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x20:], 32769) }), wantErr: "blocks per group"},
		{name: "zero inodes per group", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x28:], 0) }), wantErr: "inodes per group"},
		{name: "inode count disagrees", b: testSuperblock(262144, true, func(sb []byte) { le.PutUint32(sb[0x00:], 12345) }), wantErr: "groups"},
		{name: "high bits without 64bit", b: testSuperblock(262144, true, func(sb []byte) {
			le.PutUint32(sb[0x60:], 0)
			le.PutUint32(sb[0x150:], 1) // ignored: not a 64bit filesystem
		}), fileSize: 1 << 30, wantSize: 1 << 30, wantCsum: true, wantFitOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSuperblock(tc.b)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrNotExt4) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSuperblock = %+v, %v; want an ErrNotExt4 error about %q", s, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSuperblock: %v", err)
			}
			if s.Size() != tc.wantSize || s.Checksummed != tc.wantCsum {
				t.Errorf("ParseSuperblock = %+v (size %d), want size %d, checksummed %v", s, s.Size(), tc.wantSize, tc.wantCsum)
			}
			if err := s.FitsIn(tc.fileSize); (err == nil) != tc.wantFitOK || (err != nil && !errors.Is(err, ErrNotExt4)) {
				t.Errorf("FitsIn(%d) = %v, want ok %v", tc.fileSize, err, tc.wantFitOK)
			}
		})
	}
}

// FuzzParseSuperblock: any bytes are parsed without a panic, and what is
// accepted describes a filesystem whose size is positive and fits in int64.
func FuzzParseSuperblock(f *testing.F) {
	f.Add(testSuperblock(262144, true, nil))
	f.Add(testSuperblock(1<<32, false, nil))
	f.Add(make([]byte, 2048))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSuperblock(b)
		if err != nil {
			if !errors.Is(err, ErrNotExt4) {
				t.Fatalf("error %v does not wrap ErrNotExt4", err)
			}
			return
		}
		if s.Size() <= 0 || s.BlockSize < 1024 || s.BlockSize > 65536 || s.Inodes == 0 {
			t.Fatalf("accepted %+v (size %d)", s, s.Size())
		}
		if s.FitsIn(s.Size()) != nil || s.FitsIn(s.Size()-1) == nil {
			t.Fatalf("FitsIn disagrees with Size %d", s.Size())
		}
		// The free space is shown to users: never negative, never more
		// than the file system.
		if s.Free() < 0 || s.Free() > s.Size() {
			t.Fatalf("Free() = %d of %d", s.Free(), s.Size())
		}
	})
}
