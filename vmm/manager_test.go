package vmm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/store"
)

// importTiny imports tinyTar as name and waits for it.
func importTiny(t *testing.T, m *Manager, name string) Distro {
	t.Helper()
	ctx := context.Background()
	tarball := tinyTar(t)
	op, err := m.Import(ctx, ImportRequest{Name: name, Body: bytes.NewReader(tarball)})
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := m.WaitOperation(ctx, op.ID(), time.Minute); info.Status != StatusSuccess {
		t.Fatalf("import %s: %+v", name, info)
	}
	d, err := m.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRelativeDataDir: a relative data directory (serve --data ./mydata) is
// made absolute when the manager opens, so the locations it stores and the
// paths it hands to backends do not depend on the working directory.
func TestRelativeDataDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Chdir(dir)
	db, err := store.Open(ctx, filepath.Join(dir, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fb := newFakeBackend(t)
	m, err := New(ctx, Config{Store: db, DataDir: "mydata", Backends: map[int]Backend{1: fb}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	d := importTiny(t, m, "rel")
	if want := filepath.Join(dir, "mydata", "distros", d.ID); d.Location != want {
		t.Errorf("location = %q, want %q", d.Location, want)
	}
	if _, err := m.Start(ctx, "rel"); err != nil {
		t.Fatal(err)
	}
	if s := fb.lastSpec; !filepath.IsAbs(s.RootFS) {
		t.Errorf("backend was given the relative root %q", s.RootFS)
	}
	// Unregister from another working directory still finds the files.
	t.Chdir(t.TempDir())
	if err := m.Unregister(ctx, "rel"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mydata", "distros", d.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unregister left the distro's files: %v", err)
	}

	if _, err := New(ctx, Config{Store: db}); err == nil {
		t.Errorf("New without a data directory succeeded")
	}
}

// TestUnregisterForgets: unregister asks the backend to remove what it keeps
// of the distro (the ns backend's run/<id>.log).
func TestUnregisterForgets(t *testing.T) {
	fb := newFakeBackend(t)
	m, _, _ := newTestManager(t, map[int]Backend{1: fb})
	d := importTiny(t, m, "gone")
	if _, err := m.Start(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	if err := m.Unregister(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if !slices.Contains(fb.forgot, d.ID) {
		t.Errorf("backend not told to forget %s (forgot %v)", d.ID, fb.forgot)
	}
	if fb.running[d.ID] != nil {
		t.Errorf("distro still running after unregister")
	}
}
