package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenPragmas(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	for _, tc := range []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "5000"},
	} {
		var got string
		if err := db.sql.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %q, want %q", tc.pragma, got, tc.want)
		}
	}
	if res, err := db.IntegrityCheck(ctx); err != nil || res != "ok" {
		t.Errorf("IntegrityCheck() = %q, %v; want ok", res, err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "subsys.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateDistro(ctx, Distro{ID: "a", Name: "Alpha", Version: 1, State: "Stopped", Location: "/x"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(ctx, path) // migrations must be idempotent
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Distro(ctx, "alpha"); err != nil {
		t.Errorf("Distro(alpha) after reopen: %v", err)
	}
}

func TestDistros(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	d := Distro{ID: "id1", Name: "Debian", Version: 1, State: "Installing", Location: "/d", DefaultUser: "root"}
	if err := db.CreateDistro(ctx, d); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		op      func() error
		wantErr error
	}{
		{"duplicate name", func() error { return db.CreateDistro(ctx, Distro{ID: "id2", Name: "Debian", Version: 1}) }, ErrNameTaken},
		{"duplicate name other case", func() error { return db.CreateDistro(ctx, Distro{ID: "id3", Name: "debian", Version: 1}) }, ErrNameTaken},
		{"bad version", func() error { return db.CreateDistro(ctx, Distro{ID: "id4", Name: "x", Version: 3}) }, nil},
		{"unknown state update", func() error { return db.SetDistroState(ctx, "nope", "Stopped") }, ErrNotFound},
		{"unknown get", func() error { _, err := db.Distro(ctx, "nope"); return err }, ErrNotFound},
		{"unknown delete", func() error { return db.DeleteDistro(ctx, "nope") }, ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op()
			if tc.wantErr == nil {
				if err == nil {
					t.Fatalf("got no error, want one")
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if err := db.SetDistroState(ctx, "id1", "Stopped"); err != nil {
		t.Fatal(err)
	}
	got, err := db.Distro(ctx, "DEBIAN")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "Stopped" || got.ID != "id1" || got.CreatedAt.IsZero() {
		t.Errorf("Distro(DEBIAN) = %+v, want state Stopped id id1 with a creation time", got)
	}
	got.Name = "Renamed"
	if err := db.UpdateDistro(ctx, got); err != nil {
		t.Fatal(err)
	}
	list, err := db.Distros(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "Renamed" {
		t.Errorf("Distros() = %+v, %v; want one named Renamed", list, err)
	}
	if err := db.DeleteDistro(ctx, "id1"); err != nil {
		t.Fatal(err)
	}
	if list, _ := db.Distros(ctx); len(list) != 0 {
		t.Errorf("Distros() after delete = %+v, want none", list)
	}
}

func TestSettingsOperationsAudit(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	if _, err := db.Setting(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Setting(k) err = %v, want ErrNotFound", err)
	}
	for _, v := range []string{"1", "2"} {
		if err := db.SetSetting(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.Setting(ctx, "k"); got != v {
			t.Errorf("Setting(k) = %q, want %q", got, v)
		}
	}
	op := Operation{ID: "op1", Kind: "import", Distro: "d", Status: "running", Total: 10}
	if err := db.SaveOperation(ctx, op); err != nil {
		t.Fatal(err)
	}
	if err := db.FailUnfinishedOperations(ctx, "running", "failure", "server restarted"); err != nil {
		t.Fatal(err)
	}
	got, err := db.Operation(ctx, "op1")
	if err != nil || got.Status != "failure" || got.Error != "server restarted" || got.Total != 10 {
		t.Errorf("Operation(op1) = %+v, %v; want failed with message", got, err)
	}
	if err := db.Audit(ctx, AuditEntry{Actor: "api", Action: "import", Target: "d"}); err != nil {
		t.Fatal(err)
	}
	log, err := db.AuditLog(ctx, 10)
	if err != nil || len(log) != 1 || log[0].Action != "import" || log[0].At.IsZero() {
		t.Errorf("AuditLog() = %+v, %v", log, err)
	}
}

func TestSnapshots(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	if err := db.CreateDistro(ctx, Distro{ID: "d1", Name: "one", Version: 1, State: "Stopped", Location: "/x", DefaultUser: "root"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i, n := range []string{"before-upgrade", "clean"} {
		if err := db.AddSnapshot(ctx, Snapshot{DistroID: "d1", Name: n, Version: 1, Bytes: int64(100 * (i + 1)), CreatedAt: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AddSnapshot(ctx, Snapshot{DistroID: "d1", Name: "clean", Version: 1, CreatedAt: t0}); !errors.Is(err, ErrNameTaken) {
		t.Errorf("a second snapshot named clean: %v, want ErrNameTaken", err)
	}
	got, err := db.Snapshots(ctx, "d1")
	if err != nil || len(got) != 2 || got[0].Name != "before-upgrade" || got[1].Bytes != 200 || !got[1].CreatedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Snapshots = %+v, %v", got, err)
	}
	if err := db.DeleteSnapshot(ctx, "d1", "clean"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteSnapshot(ctx, "d1", "clean"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting it twice: %v, want ErrNotFound", err)
	}
	// A distro's snapshots go with it.
	if err := db.DeleteDistro(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Snapshots(ctx, "d1"); len(got) != 0 {
		t.Errorf("after the distro is deleted: %+v", got)
	}
}
