package agent

import "testing"

func TestParseMeminfo(t *testing.T) {
	good := "MemTotal:        2000000 kB\nMemFree:          500000 kB\nMemAvailable:    1500000 kB\nBuffers:           10000 kB\nCached:           900000 kB\nSwapCached:            0 kB\n"
	tests := []struct {
		name string
		in   string
		want MemoryInfo
		ok   bool
	}{
		{"kernel's", good, MemoryInfo{TotalBytes: 2000000 << 10, AvailableBytes: 1500000 << 10, CachedBytes: 910000 << 10, UsedBytes: 590000 << 10}, true},
		{"missing MemAvailable", "MemTotal: 1 kB\nMemFree: 1 kB\nCached: 0 kB\nBuffers: 0 kB\n", MemoryInfo{}, false},
		{"garbage", "MemTotal: x kB\n\x00\n", MemoryInfo{}, false},
		{"used never negative", "MemTotal: 100 kB\nMemFree: 90 kB\nMemAvailable: 95 kB\nCached: 50 kB\nBuffers: 0 kB\n",
			MemoryInfo{TotalBytes: 100 << 10, AvailableBytes: 95 << 10, CachedBytes: 50 << 10}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMeminfo([]byte(tt.in))
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("parseMeminfo = %+v, %v; want %+v (ok %v)", got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestBusyShare(t *testing.T) {
	a, err := parseCPUTimes([]byte("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n"))
	if err != nil || a.busy != 200 || a.total != 1000 {
		t.Fatalf("parseCPUTimes = %+v, %v", a, err)
	}
	b, _ := parseCPUTimes([]byte("cpu  110 0 110 880 100 0 0 0 0 0\n"))
	if got := busyShare(a, b); got != 0.1 {
		t.Errorf("busyShare = %v, want 0.1 (20 busy of 200)", got)
	}
	if got := busyShare(b, a); got != 0 {
		t.Errorf("busyShare backwards = %v, want 0", got)
	}
	if _, err := parseCPUTimes([]byte("intr 1 2 3\n")); err == nil {
		t.Error("a /proc/stat without its cpu line parsed")
	}
}

func TestReclaimStep(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name   string
		mode   string
		cached int64
		want   int64
	}{
		{"gradual takes half", ReclaimGradual, 1 * gib, gib / 2},
		{"gradual takes at least 256 MiB", ReclaimGradual, 200 << 20, 256 << 20},
		{"little cache: nothing", ReclaimGradual, 60 << 20, 0},
		{"dropcache drops all", ReclaimDropCache, 1 * gib, -1},
		{"disabled: nothing", ReclaimDisabled, 1 * gib, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reclaimStep(tt.mode, MemoryInfo{TotalBytes: 8 * gib, CachedBytes: tt.cached}); got != tt.want {
				t.Fatalf("reclaimStep = %d, want %d", got, tt.want)
			}
		})
	}
}
