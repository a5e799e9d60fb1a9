package vmm_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/vmmtest"
)

// TestNoVersion1 runs a Manager as Windows's serve makes it: a version 2
// backend and no version 1. Every request that would need version 1 is
// refused up front with vmm.ErrNoVersion1 and leaves nothing (no row, no
// file, no agent started); each request is first shown to
// succeed on a Manager that has a version 1 backend, so the refusal is the
// missing backend's and not some other fault of the request.
func TestNoVersion1(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(data, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	open := func(backends map[int]vmm.Backend) *vmm.Manager {
		t.Helper()
		m, err := vmm.New(ctx, vmm.Config{Store: db, DataDir: data, Backends: backends, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	// The positive side, with both versions: version 1 imports, starts and
	// is a valid default.
	v1 := vmmtest.NewBackend(vmmtest.Config{})
	t.Cleanup(func() { v1.Close() })
	both := open(map[int]vmm.Backend{1: v1, 2: vmmtest.NewBackend(vmmtest.Config{})})
	op, err := both.Import(ctx, vmm.ImportRequest{Name: "old", Version: 1, Body: bytes.NewReader(tarball(t))})
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := both.WaitOperation(ctx, op.ID(), wait); info.Status != vmm.StatusSuccess {
		t.Fatalf("import as version 1 with its backend: %+v", info)
	}
	if _, err := both.Start(ctx, "old"); err != nil {
		t.Fatalf("start version 1 with its backend: %v", err)
	}
	if err := both.Terminate(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if s, err := both.Settings(ctx); err != nil || s.DefaultVersion != 1 {
		t.Fatalf("settings with version 1: default_version %d, %v; want 1", s.DefaultVersion, err)
	}
	if _, err := both.UpdateSettings(ctx, vmm.SettingsUpdate{DefaultVersion: ptr(1)}); err != nil {
		t.Fatalf("default_version 1 with its backend: %v", err)
	}
	both.Close()

	// The same data directory, as a host without version 1 sees it.
	v2 := vmmtest.NewBackend(vmmtest.Config{})
	t.Cleanup(func() { v2.Close() })
	m := open(map[int]vmm.Backend{2: v2})
	t.Cleanup(func() { m.Close() })
	entries := func() []string {
		t.Helper()
		es, err := os.ReadDir(filepath.Join(data, "distros"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
	before := entries()
	if len(before) != 1 {
		t.Fatalf("distro directories after one import: %v", before)
	}

	tar := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(tar, tarball(t), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"import version 1", func() error {
			_, err := m.Import(ctx, vmm.ImportRequest{Name: "new", Version: 1, Body: bytes.NewReader(tarball(t))})
			return err
		}},
		{"import version 1 from a server path", func() error {
			_, err := m.Import(ctx, vmm.ImportRequest{Name: "new", Version: 1, Path: tar})
			return err
		}},
		{"install version 1", func() error {
			_, err := m.Install(ctx, vmm.InstallRequest{Name: "new", Source: tar, Version: 1})
			return err
		}},
		{"start a version 1 distro", func() error {
			_, err := m.Start(ctx, "old")
			return err
		}},
		{"default_version 1", func() error {
			_, err := m.UpdateSettings(ctx, vmm.SettingsUpdate{DefaultVersion: ptr(1)})
			return err
		}},
	} {
		err := tc.do()
		if !errors.Is(err, vmm.ErrNoVersion1) {
			t.Errorf("%s: %v; want ErrNoVersion1", tc.name, err)
		}
		if errors.Is(err, vmm.ErrUnsupported) || errors.Is(err, vmm.ErrInvalid) {
			t.Errorf("%s: %v also wraps another sentinel (the server would map it to that one)", tc.name, err)
		}
	}
	if v2.Starts() != 0 {
		t.Errorf("the version 2 backend started %d agents", v2.Starts())
	}
	if _, err := m.Get(ctx, "new"); !errors.Is(err, vmm.ErrNotFound) {
		t.Errorf("a refused request left a distro: %v", err)
	}
	if ds, err := m.List(ctx); err != nil || len(ds) != 1 {
		t.Errorf("distros after the refused requests: %+v, %v; want only the first", ds, err)
	}
	if after := entries(); len(after) != len(before) {
		t.Errorf("distro directories %v, before the refused requests %v", after, before)
	}
	if d, err := m.Get(ctx, "old"); err != nil || d.State != vmm.StateStopped {
		t.Errorf("the version 1 distro: %+v, %v; want it listed, stopped", d, err)
	}

	// The stored default (1, set above) becomes 2 here, so an import that
	// names no version is a version 2 one.
	if s, err := m.Settings(ctx); err != nil || s.DefaultVersion != 2 {
		t.Errorf("settings without version 1: default_version %d, %v; want 2", s.DefaultVersion, err)
	}
	if _, err := m.UpdateSettings(ctx, vmm.SettingsUpdate{DefaultVersion: ptr(2)}); err != nil {
		t.Errorf("default_version 2: %v", err)
	}
	// Converting a distro to version 1 is refused the same way. The row is
	// made here: a version 2 import needs mkfs.ext4 and a disk image.
	if err := db.CreateDistro(ctx, store.Distro{ID: "v2id", Name: "vm", Version: 2, State: string(vmm.StateStopped),
		Location: filepath.Join(data, "distros", "v2id"), DefaultUser: "root", CreatedAt: time.Now(), UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetVersion(ctx, "vm", 1); !errors.Is(err, vmm.ErrNoVersion1) {
		t.Errorf("convert to version 1: %v; want ErrNoVersion1", err)
	}
	if _, err := m.SetVersion(ctx, "vm", 3); !errors.Is(err, vmm.ErrInvalid) {
		t.Errorf("convert to version 3: %v; want ErrInvalid (the version check comes first)", err)
	}
}

func ptr[T any](v T) *T { return &v }
