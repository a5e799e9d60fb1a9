package disk

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// debianTarball is the minbase tree the e2e tests import.
const debianTarball = "/var/cache/subsys-test/debian-bookworm-minbase.tar"

// BenchmarkCreateDebian makes a 256 GiB image of a real distro tree and
// reports how long mkfs takes and what the image costs on the host against
// the tree itself (du -sb: bytes; du -s: blocks the tree takes on its own
// filesystem). Run with -bench CreateDebian -benchtime 3x.
func BenchmarkCreateDebian(b *testing.B) {
	needTools(b)
	if _, err := os.Stat(debianTarball); err != nil {
		testenv.SkipOrFail(b, "needs the test tarball (make deps):", err)
	}
	dir := b.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", debianTarball, "-C", tree).CombinedOutput(); err != nil {
		b.Fatalf("tar: %v: %s", err, out)
	}
	du := func(args ...string) int64 {
		out, err := exec.Command("du", append(args, tree)...).Output()
		if err != nil {
			b.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	treeBytes := du("-sb")
	treeAlloc := du("-s", "-B1")
	inodes, _ := countInodes(context.Background(), tree)

	b.ResetTimer()
	var mkfs time.Duration
	var allocated int64
	for i := range b.N {
		image := filepath.Join(dir, "img"+strconv.Itoa(i))
		start := time.Now()
		if err := Create(context.Background(), image, tree, DefaultMaxSize, Options{}); err != nil {
			b.Fatal(err)
		}
		mkfs += time.Since(start)
		b.StopTimer()
		_, allocated, _ = Usage(image)
		os.Remove(image)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(allocated)/float64(treeBytes), "alloc/du-sb")
	b.ReportMetric(float64(allocated)/float64(treeAlloc), "alloc/du-s")
	b.ReportMetric(float64(allocated-treeBytes)/(1<<20), "overhead-MiB")
	b.Logf("tree: %d entries, du -sb %d (%.1f MiB), du -s %d (%.1f MiB); image: allocated %d (%.1f MiB), %.3f× du -sb, %.3f× du -s, %.1f MiB over du -sb; mkfs %v per image",
		inodes, treeBytes, float64(treeBytes)/(1<<20), treeAlloc, float64(treeAlloc)/(1<<20),
		allocated, float64(allocated)/(1<<20), float64(allocated)/float64(treeBytes), float64(allocated)/float64(treeAlloc),
		float64(allocated-treeBytes)/(1<<20), mkfs/time.Duration(b.N))
}
