package store

import (
	"context"
	"errors"
	"testing"
)

// TestDistroLimits: limits start at 0 (none), SetDistroLimits writes them,
// and UpdateDistro of a row read before leaves them alone.
func TestDistroLimits(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	if err := db.CreateDistro(ctx, Distro{ID: "id1", Name: "Debian", Version: 1, State: "Stopped", Location: "/d"}); err != nil {
		t.Fatal(err)
	}
	before, err := db.Distro(ctx, "Debian")
	if err != nil {
		t.Fatal(err)
	}
	if before.MemoryMax != 0 || before.CPUMax != 0 || before.PidsMax != 0 {
		t.Errorf("a new distro has limits %+v", before)
	}
	if err := db.SetDistroLimits(ctx, "id1", 64<<20, 0.5, 20); err != nil {
		t.Fatal(err)
	}
	before.DefaultUser = "me"
	if err := db.UpdateDistro(ctx, before); err != nil {
		t.Fatal(err)
	}
	got, err := db.Distro(ctx, "Debian")
	if err != nil {
		t.Fatal(err)
	}
	if got.MemoryMax != 64<<20 || got.CPUMax != 0.5 || got.PidsMax != 20 || got.DefaultUser != "me" {
		t.Errorf("after SetDistroLimits and UpdateDistro: %+v", got)
	}
	if err := db.SetDistroLimits(ctx, "nope", 0, 0, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetDistroLimits of an unknown id = %v, want ErrNotFound", err)
	}
}
