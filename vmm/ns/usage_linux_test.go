package ns

import "testing"

func TestParseStat(t *testing.T) {
	tests := []struct {
		in       string
		cpu, rss int64
		ok       bool
	}{
		{"1234 (sleep) S 1 1234 1234 0 -1 4194560 93 0 0 0 7 3 0 0 20 0 1 0 4411 2424832 130 18446744073709551615", 10, 130, true},
		{"42 (a b) c)) R 1 42 42 0 -1 0 0 0 0 0 100 50 0 0 20 0 1 0 1 1 77 0", 150, 77, true},
		{"garbage", 0, 0, false},
		{"1 (x) S 1 2 3", 0, 0, false},
	}
	for _, tc := range tests {
		cpu, rss, ok := parseStat(tc.in)
		if cpu != tc.cpu || rss != tc.rss || ok != tc.ok {
			t.Errorf("parseStat(%.30q) = %d, %d, %v; want %d, %d, %v", tc.in, cpu, rss, ok, tc.cpu, tc.rss, tc.ok)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add("1234 (sleep) S 1 1234 1234 0 -1 4194560 93 0 0 0 7 3 0 0 20 0 1 0 4411 2424832 130 1")
	f.Fuzz(func(t *testing.T, s string) {
		cpu, rss, ok := parseStat(s)
		if !ok && (cpu != 0 || rss != 0) {
			t.Errorf("parseStat(%q) failed but returned values", s)
		}
	})
}
