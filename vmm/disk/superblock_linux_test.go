package disk

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// TestParseSuperblockOfCreate: what Create makes, ParseSuperblock accepts,
// checksum included, at the sizes Create is asked for.
func TestParseSuperblockOfCreate(t *testing.T) {
	if _, err := lookProg(mkfsProg); err != nil {
		testenv.SkipOrFailf(t, "needs %s (%s): %v", mkfsProg, hint, err)
	}
	tree := t.TempDir()
	if err := os.WriteFile(filepath.Join(tree, "hello"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{MinMaxSize, 1 << 30, DefaultMaxSize, MaxMaxSize} {
		img := filepath.Join(t.TempDir(), "disk.img")
		if err := Create(context.Background(), img, tree, size, Options{}); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, SuperblockOffset+SuperblockSize)
		_, err = io.ReadFull(f, b)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseSuperblock(b)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !s.Checksummed || s.Size() != size || s.FitsIn(size) != nil || s.FitsIn(size-1) == nil {
			t.Errorf("size %d: ParseSuperblock = %+v (size %d)", size, s, s.Size())
		}
		// The free blocks are dumpe2fs's (e2fsprogs' own reading).
		if dump, err := exec.Command("dumpe2fs", "-h", img).Output(); err != nil {
			t.Errorf("dumpe2fs: %v", err)
		} else if m := regexp.MustCompile(`(?m)^Free blocks:\s+(\d+)$`).FindSubmatch(dump); m == nil || string(m[1]) != strconv.FormatUint(s.FreeBlocks, 10) {
			t.Errorf("size %d: FreeBlocks = %d; dumpe2fs says %q", size, s.FreeBlocks, m)
		} else if s.Free() <= 0 || s.Free() >= size {
			t.Errorf("size %d: Free() = %d", size, s.Free())
		}
		os.Remove(img)
	}
}
