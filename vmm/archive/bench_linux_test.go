package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// benchTarballs are the plain, gzip and zstd forms of the benchmark tarball,
// written once per process into a directory on the same disk as the
// destinations, so that Extract and tar(1) read the same files.
var benchTarballs = sync.OnceValues(func() (map[string]string, error) {
	dir, err := os.MkdirTemp("", "archive-bench")
	if err != nil {
		return nil, err
	}
	plain := os.Getenv("ARCHIVE_BENCH_TARBALL") // e.g. an mmdebstrap rootfs.tar
	if plain == "" {
		plain = filepath.Join(dir, "tree.tar")
		if err := genTree(plain); err != nil {
			return nil, err
		}
	}
	files := map[string]string{"dir": dir, "tar": plain, "tar.gz": filepath.Join(dir, "tree.tar.gz"), "tar.zst": filepath.Join(dir, "tree.tar.zst")}
	if err := run("sh", "-c", fmt.Sprintf("gzip -c < %q > %q && zstd -q -c < %q > %q", plain, files["tar.gz"], plain, files["tar.zst"])); err != nil {
		return nil, err
	}
	return files, nil
})

// genTree writes a tarball shaped like a root file system: 10,000 small
// files (0–16 KiB of compressible text) in 400 directories, some symlinks,
// and 6 large files of 16 MiB; about 180 MB.
func genTree(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	rnd := rand.New(rand.NewPCG(7, 8))
	words := []string{"usr", "lib", "share", "doc", "bin", "libc", "debian", "config", "copyright", "the ", "and ", "\n"}
	text := make([]byte, 0, 1<<20)
	for len(text) < 1<<20 {
		text = append(text, words[rnd.IntN(len(words))]...)
	}
	mt := time.Unix(1700000000, 0)
	hdr := func(h *tar.Header) error {
		h.ModTime, h.Format = mt, tar.FormatPAX
		return tw.WriteHeader(h)
	}
	if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}); err != nil {
		return err
	}
	for d := range 400 {
		dir := fmt.Sprintf("./usr/share/pkg%03d/", d)
		if d == 0 {
			hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./usr/", Mode: 0o755})
			hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./usr/share/", Mode: 0o755})
		}
		hdr(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755})
		for i := range 25 {
			size := rnd.IntN(16 << 10)
			off := rnd.IntN(len(text) - size)
			if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%sfile%02d", dir, i), Mode: 0o644, Size: int64(size)}); err != nil {
				return err
			}
			if _, err := tw.Write(text[off : off+size]); err != nil {
				return err
			}
		}
		hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: dir + "link", Linkname: "file00", Mode: 0o777})
	}
	big := make([]byte, 16<<20)
	for i := range big {
		big[i] = byte(rnd.Uint32() >> 28) // compressible, but not trivially
	}
	hdr(&tar.Header{Typeflag: tar.TypeDir, Name: "./var/", Mode: 0o755})
	for i := range 6 {
		if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("./var/big%d", i), Mode: 0o644, Size: int64(len(big))}); err != nil {
			return err
		}
		if _, err := tw.Write(big); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, out)
	}
	return nil
}

// BenchmarkExtract compares Extract with GNU tar on the same tarball and the
// same disk. Each iteration runs four contenders back to back, in rotating
// order, so that drift in the disk's speed (other work, ext4's slow inode
// allocation after mass deletions) hits them alike; the metrics are their mean
// wall times. Extract syncs the file system at the end, so "archive-s" compares
// with "tar+sync-s"; "nosync-s" (Extract without its final syncfs) compares
// with "tar-s". Destinations are removed only at the end, so it needs about
// 4 × N × the tarball's size of free disk.
//
//	go test -run ^$ -bench Extract -benchtime 5x ./vmm/archive/
//	ARCHIVE_BENCH_TARBALL=rootfs.tar go test -run ^$ -bench Extract -benchtime 5x ./vmm/archive/
func BenchmarkExtract(b *testing.B) {
	files, err := benchTarballs()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(files["dir"]) })
	fi, err := os.Stat(files["tar"])
	if err != nil {
		b.Fatal(err)
	}
	var dests []string
	b.Cleanup(func() {
		for _, d := range dests {
			os.RemoveAll(d)
		}
	})
	newDest := func(b *testing.B) string {
		d, err := os.MkdirTemp(files["dir"], "dest")
		if err != nil {
			b.Fatal(err)
		}
		dests = append(dests, d)
		return d
	}
	// Warm the page cache so that every contender reads from memory.
	for _, format := range []string{"tar", "tar.gz", "tar.zst"} {
		run("sh", "-c", fmt.Sprintf("cat %q > /dev/null", files[format]))
	}
	defer func() { syncAtEnd = true }()
	tarFlags := map[string]string{"tar": "-xf", "tar.gz": "-xzf", "tar.zst": "--zstd -xf"}
	for _, format := range []string{"tar", "tar.gz", "tar.zst"} {
		tarball := files[format]
		archive := func(sync bool) func(b *testing.B) {
			return func(b *testing.B) {
				syncAtEnd = sync
				f, err := os.Open(tarball)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				if _, err := Extract(context.Background(), f, newDest(b), Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		}
		gnutar := func(sync bool) func(b *testing.B) {
			script := fmt.Sprintf("tar --numeric-owner %s %q -C \"$1\"", tarFlags[format], tarball)
			if sync {
				script += ` && sync -f "$1"`
			}
			return func(b *testing.B) {
				if err := run("sh", "-c", script, "sh", newDest(b)); err != nil {
					b.Fatal(err)
				}
			}
		}
		contenders := []struct {
			metric string
			run    func(*testing.B)
		}{
			{"nosync-s", archive(false)}, {"tar-s", gnutar(false)},
			{"archive-s", archive(true)}, {"tar+sync-s", gnutar(true)},
		}
		b.Run(format, func(b *testing.B) {
			b.SetBytes(4 * fi.Size())
			total := make([]time.Duration, len(contenders))
			n := 0
			for b.Loop() {
				for i := range contenders {
					c := (i + n) % len(contenders)
					b.StopTimer()
					run("sync") // start each from a clean page cache
					b.StartTimer()
					start := time.Now()
					contenders[c].run(b)
					total[c] += time.Since(start)
				}
				n++
			}
			for i, c := range contenders {
				b.ReportMetric(total[i].Seconds()/float64(n), c.metric)
			}
			b.ReportMetric(float64(total[0])/float64(total[1]), "nosync/tar")
			b.ReportMetric(float64(total[2])/float64(total[3]), "archive/tar+sync")
		})
	}
}
