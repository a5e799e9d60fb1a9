package vmm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/store"
)

func TestLimitsUpdate(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	f64 := func(v float64) *float64 { return &v }
	cur := store.Distro{MemoryMax: 64 << 20, CPUMax: 1, PidsMax: 100}
	for _, tc := range []struct {
		name    string
		u       Update
		want    Limits
		changed bool
		invalid bool
	}{
		{"none given", Update{}, Limits{MemoryMax: 64 << 20, CPUMax: 1, PidsMax: 100}, false, false},
		{"same values", Update{MemoryMax: i64(64 << 20)}, Limits{MemoryMax: 64 << 20, CPUMax: 1, PidsMax: 100}, false, false},
		{"one changes, others stay", Update{CPUMax: f64(0.5)}, Limits{MemoryMax: 64 << 20, CPUMax: 0.5, PidsMax: 100}, true, false},
		{"0 removes", Update{MemoryMax: i64(0), CPUMax: f64(0), PidsMax: i64(0)}, Limits{}, true, false},
		{"memory below 32 MiB", Update{MemoryMax: i64(1 << 20)}, Limits{}, false, true},
		{"negative memory", Update{MemoryMax: i64(-1)}, Limits{}, false, true},
		{"cpu too small", Update{CPUMax: f64(0.001)}, Limits{}, false, true},
		{"cpu too large", Update{CPUMax: f64(1025)}, Limits{}, false, true},
		{"pids below 16", Update{PidsMax: i64(15)}, Limits{}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed, err := limitsUpdate(cur, tc.u)
			if tc.invalid {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil || got != tc.want || changed != tc.changed {
				t.Errorf("limitsUpdate = %+v, %v, %v; want %+v, %v", got, changed, err, tc.want, tc.changed)
			}
		})
	}
}

// limitsBackend is fakeBackend with the limits and usage of a cgroup that
// the test sets: what SetLimits got, and the OOM kill count Usage reports.
type limitsBackend struct {
	*fakeBackend
	mu       sync.Mutex
	set      []Limits
	oomKills int64
	setErr   error
}

func (b *limitsBackend) SetLimits(ctx context.Context, s Spec) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.setErr != nil {
		return b.setErr
	}
	b.set = append(b.set, s.Limits)
	return nil
}

func (b *limitsBackend) Usage(ctx context.Context, s Spec) (Usage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Usage{Processes: 3, MemoryBytes: 1 << 20, OOMKills: b.oomKills}, nil
}

// TestLimitsLifecycle: limits set on a stopped distro are stored and given
// to the next start; set on a running one they reach the backend at once;
// a backend that cannot apply them fails the PATCH (unsupported) with the
// limits kept for the next start; a rise of the OOM kill count is one
// distro-oom event and shows on the distro until it stops.
func TestLimitsLifecycle(t *testing.T) {
	ctx := context.Background()
	b := &limitsBackend{fakeBackend: newFakeBackend(t)}
	m, db, data := newTestManager(t, map[int]Backend{1: b})
	d := store.Distro{ID: "l1", Name: "lim", Version: 1, State: string(StateStopped), Location: filepath.Join(data, "distros", "l1"), DefaultUser: "root"}
	if err := db.CreateDistro(ctx, d); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(d.Location, "rootfs"), 0o755)
	i64 := func(v int64) *int64 { return &v }
	f64 := func(v float64) *float64 { return &v }

	got, err := m.Update(ctx, "lim", Update{MemoryMax: i64(64 << 20), PidsMax: i64(20)})
	if err != nil || got.MemoryMax != 64<<20 || got.PidsMax != 20 {
		t.Fatalf("Update of a stopped distro = %+v, %v", got, err)
	}
	if len(b.set) != 0 {
		t.Errorf("SetLimits called for a stopped distro: %+v", b.set)
	}
	if _, err := m.Start(ctx, "lim"); err != nil {
		t.Fatal(err)
	}
	if want := (Limits{MemoryMax: 64 << 20, PidsMax: 20}); b.lastSpec.Limits != want {
		t.Errorf("Start got limits %+v, want %+v", b.lastSpec.Limits, want)
	}
	if _, err := m.Update(ctx, "lim", Update{CPUMax: f64(0.5)}); err != nil {
		t.Fatal(err)
	}
	if want := []Limits{{MemoryMax: 64 << 20, CPUMax: 0.5, PidsMax: 20}}; len(b.set) != 1 || b.set[0] != want[0] {
		t.Errorf("SetLimits got %+v, want %+v", b.set, want)
	}

	b.mu.Lock()
	b.setErr = errors.New("no memory controller")
	b.mu.Unlock()
	if _, err := m.Update(ctx, "lim", Update{PidsMax: i64(30)}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no memory controller") {
		t.Errorf("Update with a backend that cannot apply = %v, want ErrUnsupported with its reason", err)
	}
	if row, _ := db.Distro(ctx, "lim"); row.PidsMax != 30 {
		t.Errorf("limits not kept for the next start: %+v", row)
	}
	b.mu.Lock()
	b.setErr = nil
	b.mu.Unlock()

	_, events, cancel, err := m.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	m.sampleOnce(ctx)
	b.mu.Lock()
	b.oomKills = 2
	b.mu.Unlock()
	m.sampleOnce(ctx)
	var oom *OOMEvent
	for oom == nil {
		select {
		case e := <-events:
			if e.Type == "distro-oom" {
				oom = e.OOM
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no distro-oom event")
		}
	}
	if oom.Distro != "lim" || oom.OOMKills != 2 || oom.At.IsZero() {
		t.Errorf("oom event %+v", oom)
	}
	v, _ := m.Get(ctx, "lim")
	if v.OOMKills != 2 || v.LastOOMAt.IsZero() || v.Pids != 3 {
		t.Errorf("distro after an OOM kill: %+v", v)
	}
	// The same count again is no news.
	m.sampleOnce(ctx)
	for {
		select {
		case e := <-events:
			if e.Type == "distro-oom" {
				t.Fatalf("a second event for the same count: %+v", e.OOM)
			}
			continue
		default:
		}
		break
	}
	if err := m.Terminate(ctx, "lim"); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Get(ctx, "lim"); v.OOMKills != 0 || !v.LastOOMAt.IsZero() {
		t.Errorf("stopped distro still shows OOM kills: %+v", v)
	}
}
