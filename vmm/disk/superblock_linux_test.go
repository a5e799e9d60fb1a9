package disk

import (
	"context"
	"io"
	"os"
	"path/filepath"
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
		os.Remove(img)
	}
}
