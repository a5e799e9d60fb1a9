package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
)

func TestParseLimitFlags(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2G", 2 << 30, true}, {"512M", 512 << 20, true}, {"0", 0, true}, {"none", 0, true}, {"NONE", 0, true},
		{"-1G", 0, false}, {"lots", 0, false},
	} {
		got, err := parseLimit(tc.in, parseSize)
		if (err == nil) != tc.ok || (tc.ok && *got != tc.want) {
			t.Errorf("parseLimit(%q, parseSize) = %v, %v; want %d ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{{"20", 20, true}, {"none", 0, true}, {"2.5", 0, false}, {"-3", 0, false}, {"x", 0, false}} {
		got, err := parseLimit(tc.in, parseCount)
		if (err == nil) != tc.ok || (tc.ok && *got != tc.want) {
			t.Errorf("parseLimit(%q, parseCount) = %v, %v; want %d ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{{"0.5", 0.5, true}, {"2", 2, true}, {"0", 0, true}, {"none", 0, true}, {"-1", 0, false}, {"NaN", 0, false}, {"inf", 0, false}, {"half", 0, false}} {
		got, err := parseCores(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseCores(%q) = %v, %v; want %v ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestPrintLimits: the figures are shown beside their limits, and what the
// server supplies (a name, a state) reaches the terminal escaped.
func TestPrintLimits(t *testing.T) {
	var b bytes.Buffer
	printLimits(&b, api.Distro{Name: "evil\x1b]0;pwned\x07", State: api.StateRunning, MemoryMax: 64 << 20, MemoryBytes: 10 << 20,
		CPUMax: 0.5, CPUPercent: 12.5, Pids: 7, OOMKills: 2, LastOOMAt: time.Now()})
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("control characters reached the terminal: %q", out)
	}
	for _, want := range []string{"64.0 MiB", "10.0 MiB", "0.5 cores", "12.5% of a core", "pids     none", "7", "Out of memory: 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printLimits(&b, api.Distro{Name: "d", State: api.StateStopped, PidsMax: 20})
	if !strings.Contains(b.String(), "pids     20           -") {
		t.Errorf("a stopped distro's use should be -:\n%s", b.String())
	}
}
