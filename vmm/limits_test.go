package vmm

import (
	"errors"
	"testing"

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
