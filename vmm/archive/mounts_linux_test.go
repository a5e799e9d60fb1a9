package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// TestWriteSkippingMounts: a bind mount of the same file system below the
// tree (as a distro's /mnt/host is of the host's root) is kept as an empty
// directory, where Write, the probe, goes into it.
func TestWriteSkippingMounts(t *testing.T) {
	testenv.RequireRoot(t, "makes a bind mount")
	dir := t.TempDir()
	tree, other := filepath.Join(dir, "tree"), filepath.Join(dir, "other")
	for _, d := range []string{filepath.Join(tree, "m"), other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(tree, "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(other, "inside"), []byte("x"), 0o644)
	if err := unix.Mount(other, filepath.Join(tree, "m"), "", unix.MS_BIND, ""); err != nil {
		testenv.SkipOrFailf(t, "bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(tree, "m"), unix.MNT_DETACH) })
	names := func(write func(context.Context, io.Writer, string, Format) error) []string {
		var buf bytes.Buffer
		if err := write(context.Background(), &buf, tree, Tar); err != nil {
			t.Fatal(err)
		}
		var out []string
		tr := tar.NewReader(&buf)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, h.Name)
		}
	}
	if got := names(Write); !slices.Contains(got, "./m/inside") {
		t.Fatalf("Write = %v: the probe does not see the mount", got)
	}
	got := names(WriteSkippingMounts)
	if slices.Contains(got, "./m/inside") || !slices.Contains(got, "./m/") || !slices.Contains(got, "./a") {
		t.Fatalf("WriteSkippingMounts = %v, want ./a and an empty ./m/", got)
	}
}
