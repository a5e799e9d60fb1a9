package vmm

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestOperationEndsAfterLockRelease: a client told that an import succeeded
// (WaitOperation, as GET /operations/{id}?wait=1 does) may act on the distro
// at once. Before, Done closed before the distro's lock was released, and a
// DELETE right after a successful import failed as busy now and then (2 in
// 200 through the API).
func TestOperationEndsAfterLockRelease(t *testing.T) {
	m, _, _ := newTestManager(t, map[int]Backend{1: newFakeBackend(t)})
	ctx := context.Background()
	tarball := tinyTar(t)
	const tries = 200
	busy := 0
	for i := range tries {
		op, err := m.Import(ctx, ImportRequest{Name: "d", Body: bytes.NewReader(tarball), Size: int64(len(tarball))})
		if err != nil {
			t.Fatalf("try %d: Import = %v", i, err)
		}
		info, err := m.WaitOperation(ctx, op.ID(), time.Minute)
		if err != nil || info.Status != StatusSuccess {
			t.Fatalf("try %d: WaitOperation = %+v, %v; want success", i, info, err)
		}
		err = m.Unregister(ctx, "d")
		if errors.Is(err, ErrBusy) {
			busy++
			// Let the import let go, then clean up for the next try.
			time.Sleep(50 * time.Millisecond)
			err = m.Unregister(ctx, "d")
		}
		if err != nil {
			t.Fatalf("try %d: Unregister = %v", i, err)
		}
	}
	if busy > 0 {
		t.Errorf("Unregister right after a successful import was busy in %d of %d tries", busy, tries)
	}
}

// TestImportResult: the import operation's result says what the archive held
// and which device nodes were not made (those outside /dev always are).
func TestImportResult(t *testing.T) {
	m, _, _ := newTestManager(t, map[int]Backend{1: newFakeBackend(t)})
	ctx := context.Background()
	tarball := tinyTar(t,
		&tar.Header{Typeflag: tar.TypeDir, Name: "./dev/", Mode: 0o755},
		&tar.Header{Typeflag: tar.TypeBlock, Name: "./etc/disk", Mode: 0o600, Devmajor: 8, Devminor: 0},
		&tar.Header{Typeflag: tar.TypeChar, Name: "./home-mem", Mode: 0o600, Devmajor: 1, Devminor: 1},
	)
	op, err := m.Import(ctx, ImportRequest{Name: "devs", Body: bytes.NewReader(tarball)})
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.WaitOperation(ctx, op.ID(), time.Minute)
	if err != nil || info.Status != StatusSuccess {
		t.Fatalf("import = %+v, %v", info, err)
	}
	r := info.Result
	if r == nil {
		t.Fatalf("import operation has no result: %+v", info)
	}
	if r.Entries != 8 || r.SkippedDevices != 2 {
		t.Errorf("result = %+v, want 8 entries and 2 skipped device nodes", *r)
	}
}

// TestCloneEndsAfterSourceReleased: a clone has ended for its client only once
// its source is free too, so the source can be removed at once.
func TestCloneEndsAfterSourceReleased(t *testing.T) {
	m, _, _ := newTestManager(t, map[int]Backend{1: newFakeBackend(t)})
	ctx := context.Background()
	importTiny(t, m, "src")
	for i := range 50 {
		op, err := m.Clone(ctx, "src", "copy")
		if err != nil {
			t.Fatalf("try %d: Clone = %v", i, err)
		}
		if info, _ := m.WaitOperation(ctx, op.ID(), time.Minute); info.Status != StatusSuccess {
			t.Fatalf("try %d: clone = %+v", i, info)
		}
		for _, name := range []string{"copy", "src"} {
			if err := m.Unregister(ctx, name); err != nil {
				t.Fatalf("try %d: Unregister(%s) right after the clone = %v", i, name, err)
			}
		}
		importTiny(t, m, "src")
	}
}
