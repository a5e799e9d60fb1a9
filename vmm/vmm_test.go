package vmm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/store"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"debian", true},
		{"Ubuntu-24.04", true},
		{"a", true},
		{"0_x.y-z", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"-x", false},
		{".hidden", false},
		{"../etc", false},
		{"a/b", false},
		{"a b", false},
		{"ünï", false},
	}
	for _, tc := range tests {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateName(%q) error %v is not ErrInvalid", tc.name, err)
		}
	}
}

func FuzzValidateName(f *testing.F) {
	f.Add("debian")
	f.Add("../x")
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) == nil && (strings.ContainsAny(name, "/\x00 ") || strings.HasPrefix(name, ".") || len(name) > 64) {
			t.Errorf("ValidateName accepted %q", name)
		}
	})
}

// TestRecovery: what a crash leaves (a half-imported distro, a half-removed one,
// staging files, a running operation) is cleaned up when the manager opens.
func TestRecovery(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(data, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mk := func(id, name, state string) store.Distro {
		d := store.Distro{ID: id, Name: name, Version: 1, State: state, Location: filepath.Join(data, "distros", id), DefaultUser: "root"}
		if err := db.CreateDistro(ctx, d); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(d.Location, "rootfs", "etc"), 0o755)
		return d
	}
	mk("i1", "half", string(StateInstalling))
	mk("u1", "going", string(StateUninstalling))
	keep := mk("k1", "keep", string(StateRunning)) // no backend: comes back Stopped
	os.MkdirAll(filepath.Join(data, "tmp", "i1", "usr"), 0o755)
	if err := db.SaveOperation(ctx, store.Operation{ID: "op", Kind: KindImport, Distro: "half", Status: StatusRunning}); err != nil {
		t.Fatal(err)
	}

	m, err := New(ctx, Config{Store: db, DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	list, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "keep" || list[0].State != StateStopped || !list[0].Default {
		t.Errorf("List() after recovery = %+v, want only keep, Stopped, default", list)
	}
	for _, p := range []string{filepath.Join(data, "distros", "i1"), filepath.Join(data, "distros", "u1"), filepath.Join(data, "tmp", "i1")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived recovery (%v)", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(keep.Location, "rootfs", "etc")); err != nil {
		t.Errorf("recovery removed a complete distro: %v", err)
	}
	op, err := m.Operation(ctx, "op")
	if err != nil || op.Status != StatusFailure || op.Error == "" {
		t.Errorf("Operation(op) = %+v, %v; want failure with a reason", op, err)
	}
	// With no backend for version 1, imports are refused clearly.
	if _, err := m.Import(ctx, ImportRequest{Name: "x", Path: "/dev/null"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Import without a backend = %v, want ErrUnsupported", err)
	}
	if _, err := m.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}
}
