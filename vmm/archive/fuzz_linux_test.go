package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fuzzHost is a fixed sentinel directory that seed archives aim at with
// absolute symlinks and hard links; a fixed path lets the fuzzer's stored
// corpus keep pointing at it across runs and worker processes.
var fuzzHost = filepath.Join(os.TempDir(), "subsys-archive-fuzz-host")

// FuzzExtract extracts arbitrary bytes into a fresh directory and checks that
// Extract neither panics nor touches anything outside it, and that every
// failure is one of the package's sentinels. Minimizing an input costs
// thousands of runs, so fuzz with a short -fuzzminimizetime (e.g. 2s):
//
//	go test -run ^$ -fuzz FuzzExtract -fuzztime 60s -fuzzminimizetime 2s ./vmm/archive/
func FuzzExtract(f *testing.F) {
	if err := os.MkdirAll(fuzzHost, 0o755); err != nil {
		f.Fatal(err)
	}
	// Every fuzz worker process runs this setup while others check the
	// secret, so write it beside and rename it in: readers never see it
	// half written, and the directory never holds a second name.
	secret := filepath.Join(fuzzHost, "secret")
	tmp, err := os.CreateTemp("", "subsys-archive-fuzz-secret")
	if err != nil {
		f.Fatal(err)
	}
	tmp.WriteString("host secret")
	tmp.Close()
	if err := os.Rename(tmp.Name(), secret); err != nil {
		f.Fatal(err)
	}
	seedBox := &sandbox{parent: fuzzHost, dest: fuzzHost, host: fuzzHost, secret: secret}
	for _, c := range hostileCases() {
		f.Add(c.tar(f, seedBox))
	}
	for _, c := range differentialCases() {
		f.Add(c.data)
	}
	f.Add(sparseOld("s", 2048, []fragment{{0, 512}, {1536, 3}}, strings.Repeat("a", 512)+"bcd", nil))
	f.Add(blocks(raw{name: "a", size: oct(2, 12)}, "hi", make([]byte, blockSize), "stray bytes"))
	f.Add(mkTar(f, dir("./"), file("a/b/c", "deep"), hardlink("a/h", "a/b/c"), symlink("a/l", "b/c"),
		ent{typ: '3', name: "dev/null", mode: 0o666}, ent{typ: '6', name: "fifo", mode: 0o600}))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := Extract(ctx, bytes.NewReader(data), s.dest, Limits{MaxExpandedBytes: 4 << 20, MaxEntries: 1000})
		if err != nil && !errors.Is(err, ErrFormat) && !errors.Is(err, ErrCorrupt) &&
			!errors.Is(err, ErrUnsafe) && !errors.Is(err, ErrLimit) && !errors.Is(err, ErrInsufficientStorage) {
			t.Errorf("Extract = %v, want an error wrapping a sentinel", err)
		}
		s.check(t)
		// What Extract made: device nodes only under dev/, and no more
		// allocated than the data limit, a sparse file's holes being holes.
		u, werr := DiskUsage(ctx, s.dest)
		if werr == nil && u.Bytes > 4<<20+u.Entries*8<<10 {
			t.Errorf("the tree allocates %d bytes for %d entries, over the 4 MiB limit", u.Bytes, u.Entries)
		}
		Walk(ctx, s.dest, WalkOptions{}, func(e *WalkEntry) error {
			if m := e.Stat.Mode & unix.S_IFMT; (m == unix.S_IFCHR || m == unix.S_IFBLK) && !strings.HasPrefix(e.Path(), "dev/") {
				t.Errorf("device node %q outside dev/", e.Path())
			}
			return nil
		})
		ents, err := os.ReadDir(fuzzHost)
		if err != nil || len(ents) != 1 {
			t.Errorf("%s holds %d entries (%v), want only the secret: something escaped", fuzzHost, len(ents), err)
		}
		if b, err := os.ReadFile(secret); err != nil || string(b) != "host secret" || nlink(t, secret) != 1 {
			t.Errorf("%s changed: %q, %v", secret, b, err)
		}
	})
}
