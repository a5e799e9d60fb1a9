package cgroup

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		l     Limits
		field string // "" valid; else the field the error names
	}{
		{Limits{}, ""},
		{Limits{MemoryMax: 32 << 20, CPUMax: 0.01, PidsMax: 16}, ""},
		{Limits{MemoryMax: 2 << 30, CPUMax: 1024, PidsMax: 100000}, ""},
		{Limits{MemoryMax: 32<<20 - 1}, "memory_max"},
		{Limits{MemoryMax: -1}, "memory_max"},
		{Limits{MemoryMax: math.MaxInt64}, "memory_max"},
		{Limits{CPUMax: 0.009}, "cpu_max"},
		{Limits{CPUMax: -1}, "cpu_max"},
		{Limits{CPUMax: 1024.5}, "cpu_max"},
		{Limits{CPUMax: math.NaN()}, "cpu_max"},
		{Limits{CPUMax: math.Inf(1)}, "cpu_max"},
		{Limits{PidsMax: 15}, "pids_max"},
		{Limits{PidsMax: -16}, "pids_max"},
	} {
		err := tc.l.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tc.l, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.l, err, tc.field)
		}
	}
}

func TestParseCPUMax(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"max 100000\n", 0, true},
		{"50000 100000\n", 0.5, true},
		{"200000 100000", 2, true},
		{"1000 100000", 0.01, true},
		{"99999999999 1", MaxCPUMax, true},
		{"max", 0, false},
		{"50000 0", 0, false},
		{"-5 100000", 0, false},
		{"0 100000", 0, false},
		{"x 100000", 0, false},
		{"1 2 3", 0, false},
		{"", 0, false},
	} {
		got, err := ParseCPUMax(tc.in)
		if (err == nil) != tc.ok || (tc.ok && math.Abs(got-tc.want) > 1e-9) {
			t.Errorf("ParseCPUMax(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestFormatCPUMax(t *testing.T) {
	for _, tc := range []struct {
		cores float64
		want  string
	}{
		{0, "max 100000"},
		{0.5, "50000 100000"},
		{0.01, "1000 100000"},
		{2, "200000 100000"},
		{1.234567, "123457 100000"},
	} {
		if got := FormatCPUMax(tc.cores); got != tc.want {
			t.Errorf("FormatCPUMax(%v) = %q, want %q", tc.cores, got, tc.want)
		}
		if tc.cores > 0 {
			back, err := ParseCPUMax(FormatCPUMax(tc.cores))
			if err != nil || math.Abs(back-tc.cores) > 1e-5 {
				t.Errorf("ParseCPUMax(FormatCPUMax(%v)) = %v, %v", tc.cores, back, err)
			}
		}
	}
}

func TestParseMax(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"max\n", 0, true},
		{"67108864\n", 67108864, true},
		{"0", 0, true},
		{"99999999999999999", maxFigure, true},
		{"-1", 0, false},
		{"12x", 0, false},
		{"", 0, false},
		{"99999999999999999999999", 0, false},
	} {
		got, err := ParseMax(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMax(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseKeyed(t *testing.T) {
	cpuStat := "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 10\nnr_throttled 3\nthrottled_usec 5000\n"
	if got := ParseKeyed(cpuStat)["usage_usec"]; got != 1234567 {
		t.Errorf("usage_usec = %d", got)
	}
	events := "low 0\nhigh 0\nmax 12\noom 2\noom_kill 3\noom_group_kill 0\n"
	if got := ParseKeyed(events)["oom_kill"]; got != 3 {
		t.Errorf("oom_kill = %d", got)
	}
	for _, bad := range []string{"oom_kill -3\n", "oom_kill x\n", "oom_kill 1 2\n", "oom_kill\n", ""} {
		if v, ok := ParseKeyed(bad)["oom_kill"]; ok {
			t.Errorf("ParseKeyed(%q) gave oom_kill %d", bad, v)
		}
	}
	if got := ParseKeyed("oom_kill 99999999999999999\n")["oom_kill"]; got != maxFigure {
		t.Errorf("a huge figure gave %d, want it bounded to %d", got, int64(maxFigure))
	}
}

func TestBound(t *testing.T) {
	s := Stats{MemoryCurrent: -5, CPUUsageUsec: math.MaxInt64, PidsCurrent: 3, OOMKills: -1,
		Limits: Limits{MemoryMax: math.MaxInt64, CPUMax: math.NaN(), PidsMax: -2}}.Bound()
	want := Stats{MemoryCurrent: 0, CPUUsageUsec: maxFigure, PidsCurrent: 3, OOMKills: 0,
		Limits: Limits{MemoryMax: maxFigure, CPUMax: 0, PidsMax: 0}}
	if s != want {
		t.Errorf("Bound = %+v, want %+v", s, want)
	}
	if got := (Stats{Limits: Limits{CPUMax: 1e9}}).Bound().Limits.CPUMax; got != MaxCPUMax {
		t.Errorf("Bound kept cpu_max %v", got)
	}
}

// TestApplyRead runs Apply and Read on a directory shaped like a cgroup
// (the files exist, as the kernel's do): what Apply writes is what Read
// gives back, and a missing controller's file fails only a limit that is set.
func TestApplyRead(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"cpu.stat": "usage_usec 500\n", "memory.current": "4096\n", "pids.current": "3\n",
		"memory.events": "oom 1\noom_kill 2\n", "memory.max": "max\n", "cpu.max": "max 100000\n", "pids.max": "max\n",
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l := Limits{MemoryMax: 64 << 20, CPUMax: 0.5, PidsMax: 20}
	if err := Apply(dir, l); err != nil {
		t.Fatal(err)
	}
	s, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{MemoryCurrent: 4096, CPUUsageUsec: 500, PidsCurrent: 3, OOMKills: 2, Limits: l}
	if s != want {
		t.Errorf("Read = %+v, want %+v", s, want)
	}
	if err := Apply(dir, Limits{}); err != nil {
		t.Fatal(err)
	}
	if s, _ := Read(dir); s.Limits != (Limits{}) {
		t.Errorf("limits after removing them: %+v", s.Limits)
	}
	os.Remove(filepath.Join(dir, "pids.max"))
	if err := Apply(dir, Limits{PidsMax: 20}); err == nil || !strings.Contains(err.Error(), "pids.max") {
		t.Errorf("Apply without pids.max = %v, want ErrNoController naming it", err)
	}
	if err := Apply(dir, Limits{MemoryMax: 64 << 20}); err != nil {
		t.Errorf("Apply of memory alone without pids.max = %v", err)
	}
	if err := Apply(dir, Limits{PidsMax: 3}); err == nil {
		t.Error("Apply of an invalid limit succeeded")
	}
	if _, err := Read(filepath.Join(dir, "gone")); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("Read of a missing cgroup = %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func FuzzParseCPUMax(f *testing.F) {
	for _, s := range []string{"max 100000", "50000 100000", "1 1", "", "x y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseCPUMax(s)
		if err == nil && (math.IsNaN(v) || v < 0 || v > MaxCPUMax) {
			t.Fatalf("ParseCPUMax(%q) = %v", s, v)
		}
	})
}

func FuzzParseKeyed(f *testing.F) {
	f.Add("usage_usec 5\nuser_usec 3\n")
	f.Add("oom_kill 1\noom_kill 2")
	f.Fuzz(func(t *testing.T, s string) {
		for k, v := range ParseKeyed(s) {
			if v < 0 || v > maxFigure || k == "" {
				t.Fatalf("ParseKeyed(%q): %q = %d", s, k, v)
			}
		}
	})
}

func FuzzParseMax(f *testing.F) {
	f.Add("max")
	f.Add("123")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseMax(s)
		if err == nil && (v < 0 || v > maxFigure) {
			t.Fatalf("ParseMax(%q) = %d", s, v)
		}
	})
}
