package vmm

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/store"
)

// TestRecoverSnapshots: at start, a snapshot copy that never got its
// record (a crash during the copy) and the snapshots of a distro that is
// gone are removed; a recorded snapshot stays.
func TestRecoverSnapshots(t *testing.T) {
	ctx := context.Background()
	m, db, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t)})
	if err := db.CreateDistro(ctx, store.Distro{ID: "d1", Name: "one", Version: 1, State: "Stopped", Location: filepath.Join(data, "distros", "d1"), DefaultUser: "root"}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddSnapshot(ctx, store.Snapshot{DistroID: "d1", Name: "kept", Version: 1, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	mk := func(p string) string {
		if err := os.MkdirAll(filepath.Join(p, "rootfs", "etc"), 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kept := mk(m.cfg.snapshotsDir("d1") + "/kept")
	unrecorded := mk(m.cfg.snapshotsDir("d1") + "/half")
	staging := mk(m.cfg.snapshotsDir("d1") + "/" + snapshotStagingPrefix + "half")
	gone := mk(m.cfg.snapshotsDir("gone-distro") + "/old")
	m.Close()
	m2, err := New(ctx, Config{Store: db, DataDir: data, Backends: map[int]Backend{1: newFakeBackend(t)}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("the recorded snapshot was removed: %v", err)
	}
	for _, p := range []string{unrecorded, staging, filepath.Dir(gone)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", p, err)
		}
	}
}
