//go:build linux

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/subsys-dev/subsys/internal/ocitest"
	"github.com/subsys-dev/subsys/internal/testenv"
)

// benchImage is an image of 5 layers of ~32 MiB each: in each, 8 files of
// 2 MiB of random bytes (incompressible), 8 of 2 MiB of text (gzip takes
// it to a few percent) and 256 small files; the upper layers delete and
// replace some files of the lower ones.
func benchImage(b *testing.B) v1.Image {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) string {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return string(p)
	}
	text := func(n int) string {
		var sb strings.Builder
		for sb.Len() < n {
			fmt.Fprintf(&sb, "line %d of a config file with a value of %d\n", sb.Len(), rng.IntN(1000))
		}
		return sb.String()[:n]
	}
	var layers []v1.Layer
	for l := range 5 {
		var es []ocitest.Entry
		dir := fmt.Sprintf("layer%d/", l)
		es = append(es, ocitest.Dir(dir))
		for i := range 8 {
			es = append(es, ocitest.File(fmt.Sprintf("%srandom%d", dir, i), random(2<<20)), ocitest.File(fmt.Sprintf("%stext%d", dir, i), text(2<<20)))
		}
		for i := range 256 {
			es = append(es, ocitest.File(fmt.Sprintf("%ssmall%d", dir, i), text(4096)))
		}
		if l > 0 {
			prev := fmt.Sprintf("layer%d/", l-1)
			es = append(es, ocitest.File(prev+".wh.random0", ""), ocitest.File(prev+"text1", text(1<<20)))
		}
		layers = append(layers, ocitest.Layer(b, es...))
	}
	return ocitest.Image(b, runtime.GOARCH, layers...)
}

// BenchmarkInstallOCI: `subsys install --from 127.0.0.1:PORT/bench/img:1`
// of a 5-layer image (~160 MiB unpacked) into a
// version 1 distro, through the CLI, vs `crane export REF - | tar -x` of
// the same image from the same in-process registry, three rounds each,
// taking turns, medians. The anchor pulls and unpacks too: crane export
// applies the layers with their whiteouts (go-containerregistry's
// mutate.Extract) into one tar stream, as subsys does, and tar writes it
// out; a crane pull or skopeo copy would only store the blobs. Goal:
// ≤ 1.5× (subsys also extracts through its confined extractor and
// records a distro).
func BenchmarkInstallOCI(b *testing.B) {
	crane := filepath.Join(b.TempDir(), "crane")
	build := exec.Command("go", "build", "-o", crane, "github.com/google/go-containerregistry/cmd/crane")
	if o, err := build.CombinedOutput(); err != nil {
		testenv.SkipOrFailf(b, "build crane (github.com/google/go-containerregistry/cmd/crane): %v: %s", err, o)
	}
	s := startServerEnv(b, b.TempDir(), "info")
	reg := ocitest.Serve(b)
	img := benchImage(b)
	ref := reg.Push(b, "bench/img:1", img)
	layers, _ := img.Layers()
	var compressed int64
	for _, l := range layers {
		n, _ := l.Size()
		compressed += n
	}
	var subsys, anchor []time.Duration
	for i := range 3 {
		dir := filepath.Join(b.TempDir(), "x")
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		pipe := exec.Command("sh", "-c", `"$1" export "$2" - | tar -x -C "$3"`, "sh", crane, ref, dir)
		if o, err := pipe.CombinedOutput(); err != nil {
			b.Fatalf("crane export | tar -x: %v: %s", err, o)
		}
		anchor = append(anchor, time.Since(began))
		os.RemoveAll(dir)
		name := fmt.Sprintf("oci%d", i)
		began = time.Now()
		if o, e, code := s.cli(nil, "install", name, "--from", ref, "--version", "1"); code != 0 {
			b.Fatalf("subsys install: %d\n%s%s", code, o, e)
		}
		subsys = append(subsys, time.Since(began))
		s.cli(nil, "unregister", name)
	}
	slices.Sort(subsys)
	slices.Sort(anchor)
	ratio := subsys[1].Seconds() / anchor[1].Seconds()
	b.Logf("5-layer image (%d MiB of compressed layers): subsys install %v (rounds %v) vs crane export | tar -x %v (rounds %v): %.2f× (goal ≤ 1.5×)",
		compressed>>20, subsys[1].Round(10*time.Millisecond), subsys, anchor[1].Round(10*time.Millisecond), anchor, ratio)
	b.ReportMetric(ratio, "install/crane-export")
}
