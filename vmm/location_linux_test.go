package vmm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/store"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "directories of other users are made with chown, and file systems mounted")
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// TestPrepareLocation: a location is refused when a directory above it lets
// another user swap it (owned by them, or writable by them without the sticky
// bit), and made private (0700) when accepted.
func TestPrepareLocation(t *testing.T) {
	requireRoot(t)
	const user = 1000
	tests := []struct {
		name string
		// setup makes what the case needs under base and returns the location.
		setup   func(t *testing.T, base string) string
		wantErr string // "" means accepted
	}{
		{"new directory under safe parents", func(t *testing.T, base string) string {
			return filepath.Join(base, "a", "b", "loc")
		}, ""},
		{"parent owned by a user", func(t *testing.T, base string) string {
			p := filepath.Join(base, "home")
			os.Mkdir(p, 0o755)
			os.Chown(p, user, user)
			return filepath.Join(p, "loc")
		}, "belongs to uid 1000"},
		{"grandparent owned by a user", func(t *testing.T, base string) string {
			p := filepath.Join(base, "home")
			os.MkdirAll(filepath.Join(p, "root-owned"), 0o755)
			os.Chown(p, user, user)
			return filepath.Join(p, "root-owned", "loc")
		}, "belongs to uid 1000"},
		{"parent writable by all, not sticky", func(t *testing.T, base string) string {
			p := filepath.Join(base, "open")
			os.Mkdir(p, 0o755)
			os.Chmod(p, 0o777)
			return filepath.Join(p, "loc")
		}, "every user"},
		{"parent writable by a group", func(t *testing.T, base string) string {
			p := filepath.Join(base, "group")
			os.Mkdir(p, 0o755)
			os.Chown(p, 0, user)
			os.Chmod(p, 0o775)
			return filepath.Join(p, "loc")
		}, "group 1000"},
		{"parent writable by group root, which may have other members", func(t *testing.T, base string) string {
			p := filepath.Join(base, "group")
			os.Mkdir(p, 0o755)
			os.Chmod(p, 0o775)
			return filepath.Join(p, "loc")
		}, "group 0"},
		{"sticky parent writable by all (like /tmp)", func(t *testing.T, base string) string {
			p := filepath.Join(base, "tmp")
			os.Mkdir(p, 0o755)
			os.Chmod(p, os.ModeSticky|0o777)
			return filepath.Join(p, "loc")
		}, ""},
		{"user's directory inside a sticky parent", func(t *testing.T, base string) string {
			p := filepath.Join(base, "tmp")
			os.Mkdir(p, 0o755)
			os.Chmod(p, os.ModeSticky|0o777)
			os.Mkdir(filepath.Join(p, "mine"), 0o755)
			os.Chown(filepath.Join(p, "mine"), user, user)
			return filepath.Join(p, "mine", "loc")
		}, "belongs to uid 1000"},
		{"existing empty directory of the user", func(t *testing.T, base string) string {
			p := filepath.Join(base, "loc")
			os.Mkdir(p, 0o755)
			os.Chown(p, user, user)
			return p
		}, "belongs to uid 1000"},
		{"existing empty directory of root, 0755", func(t *testing.T, base string) string {
			p := filepath.Join(base, "loc")
			os.Mkdir(p, 0o755)
			return p
		}, ""},
		{"existing directory not empty", func(t *testing.T, base string) string {
			p := filepath.Join(base, "loc")
			os.Mkdir(p, 0o755)
			os.WriteFile(filepath.Join(p, "f"), nil, 0o644)
			return p
		}, "not empty"},
		{"a file", func(t *testing.T, base string) string {
			p := filepath.Join(base, "loc")
			os.WriteFile(p, nil, 0o644)
			return p
		}, "not a directory"},
		{"root's symlink to a safe place", func(t *testing.T, base string) string {
			os.Mkdir(filepath.Join(base, "real"), 0o755)
			os.Symlink("real", filepath.Join(base, "link"))
			return filepath.Join(base, "link", "loc")
		}, ""},
		{"root's symlink into a user's directory", func(t *testing.T, base string) string {
			p := filepath.Join(base, "home")
			os.Mkdir(p, 0o755)
			os.Chown(p, user, user)
			os.Symlink("home", filepath.Join(base, "link"))
			return filepath.Join(base, "link", "loc")
		}, "belongs to uid 1000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			os.Chmod(base, 0o755)
			loc := tc.setup(t, base)
			real, created, err := prepareLocation(loc)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("prepareLocation(%s) = %v, want ErrInvalid mentioning %q", loc, err, tc.wantErr)
				}
				if _, err := os.Lstat(loc); err == nil && created {
					t.Errorf("refused location was created")
				}
				return
			}
			if err != nil {
				t.Fatalf("prepareLocation(%s) = %v, want it accepted", loc, err)
			}
			want, _ := filepath.EvalSymlinks(loc)
			if real != want {
				t.Errorf("prepareLocation(%s) = %s, want the resolved path %s", loc, real, want)
			}
			if m := mode(t, real); !m.IsDir() || m.Perm() != 0o700 {
				t.Errorf("location mode = %v, want a directory with mode 0700", m)
			}
		})
	}
}

// TestImportLocationPrivate: the host's users cannot reach into a distro
// imported into a location of the user's, nor into the data directory's
// distros: both are made with mode 0700. A location under a user's
// directory is refused with nothing left behind.
func TestImportLocationPrivate(t *testing.T) {
	requireRoot(t)
	m, _, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t)})
	ctx := context.Background()
	base := t.TempDir()
	os.Chmod(base, 0o755)
	tarball := tinyTar(t)
	importAt := func(name, loc string) (Distro, error) {
		op, err := m.Import(ctx, ImportRequest{Name: name, Location: loc, Body: bytes.NewReader(tarball)})
		if err != nil {
			return Distro{}, err
		}
		if info, _ := m.WaitOperation(ctx, op.ID(), time.Minute); info.Status != StatusSuccess {
			t.Fatalf("import %s: %+v", name, info)
		}
		return m.Get(ctx, name)
	}
	loc := filepath.Join(base, "parent", "custom")
	d, err := importAt("custom", loc)
	if err != nil {
		t.Fatal(err)
	}
	if d.Location != loc {
		t.Errorf("location = %s, want %s", d.Location, loc)
	}
	if md := mode(t, loc); md.Perm() != 0o700 {
		t.Errorf("custom location mode = %v, want 0700", md)
	}
	d, err = importAt("default", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(data, "distros"), d.Location} {
		if md := mode(t, p); md.Perm() != 0o700 {
			t.Errorf("%s mode = %v, want 0700", p, md)
		}
	}

	home := filepath.Join(base, "home")
	os.Mkdir(home, 0o755)
	os.Chown(home, 1000, 1000)
	_, err = importAt("swappable", filepath.Join(home, "distro"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), home) {
		t.Fatalf("import under a user's directory = %v, want ErrInvalid naming %s", err, home)
	}
	if _, err := m.Get(ctx, "swappable"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused import left a distro: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(home, "distro")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused import left its location: %v", err)
	}
}

// TestStartTightensDirectories: the distros and staging directories, and each
// distro's own, left open to other users (by an older server, or by hand)
// are made private when the manager opens.
func TestStartTightensDirectories(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(data, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	d := store.Distro{ID: "x", Name: "x", Version: 1, State: string(StateStopped), Location: filepath.Join(data, "distros", "x"), DefaultUser: "root"}
	if err := db.CreateDistro(ctx, d); err != nil {
		t.Fatal(err)
	}
	dirs := []string{filepath.Join(data, "distros"), filepath.Join(data, "tmp"), d.Location}
	os.MkdirAll(filepath.Join(d.Location, "rootfs"), 0o755)
	os.MkdirAll(filepath.Join(data, "tmp"), 0o755)
	for _, p := range dirs {
		os.Chmod(p, 0o755)
	}
	m, err := New(ctx, Config{Store: db, DataDir: data, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, p := range dirs {
		if md := mode(t, p); md.Perm() != 0o700 {
			t.Errorf("%s mode after start = %v, want 0700", p, md)
		}
	}
}

// TestRefuseForeignDataDir: a distros directory that belongs to another user
// (who could swap what is in it) stops the manager from opening.
func TestRefuseForeignDataDir(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	data := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(data, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	os.Mkdir(filepath.Join(data, "distros"), 0o700)
	os.Chown(filepath.Join(data, "distros"), 1000, 1000)
	if m, err := New(ctx, Config{Store: db, DataDir: data, Logger: slog.New(slog.DiscardHandler)}); err == nil || !strings.Contains(err.Error(), "uid 1000") {
		if m != nil {
			m.Close()
		}
		t.Fatalf("New with a distros directory of uid 1000 = %v, want a refusal naming the owner", err)
	}
}
