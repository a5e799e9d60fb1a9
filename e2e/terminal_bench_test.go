//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/subsys-dev/subsys/api"
)

const benchFileSize = 128 << 20

// BenchmarkTerminalThroughput: bytes/s of `cat` of a 128 MiB text file through the
// terminal websocket to a Go client, vs the same cat through a local pty
// (`script -qfc "cat FILE" /dev/null`), same run (goal: ≥ 0.8 of it), for both
// kinds of client: a plain one that sends no acknowledgements (paced by TCP) and
// one that opts in and acknowledges every 32 KiB as the dashboard does. Both
// read as the pty side does, discarding what they read (see drainTerminal), and
// both sides are timed from the first output byte to the last, so the session's
// start is not counted. It also prints the CPU time
// each part spent per run, to show where the time goes.
func BenchmarkTerminalThroughput(b *testing.B) {
	s := startServer(b, "")
	s.importTar("tiny", tinyRootfs(b))
	// The same text in the distro (its /tmp) and on the host.
	line := strings.Repeat("subsys terminal throughput ", 3) + "\n"
	if res := s.sh("tiny", fmt.Sprintf("yes '%s' | head -c %d > /tmp/big; wc -c < /tmp/big", strings.TrimSuffix(line, "\n"), benchFileSize)); strings.TrimSpace(res.Stdout) != strconv.Itoa(benchFileSize) {
		b.Fatalf("making the file: %+v", res)
	}
	hostFile := filepath.Join(b.TempDir(), "big")
	if out, err := exec.Command("sh", "-c", fmt.Sprintf("yes '%s' | head -c %d > %s", strings.TrimSuffix(line, "\n"), benchFileSize, hostFile)).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	agentPID := childNamed(s.cmd.Process.Pid, "subsys-agent")
	if agentPID == 0 {
		b.Fatal("no subsys-agent process under the server")
	}

	// CPU seconds per run of each part of the path; cat is the agent's reaped
	// children (cat itself, with its writes into the pty).
	type series struct {
		name, unit                        string
		ack                               bool
		rates, server, agent, cat, client []float64
	}
	modes := []*series{{name: "plain client (no acks)", unit: "plain"}, {name: "acking client (32 KiB acks)", unit: "ack", ack: true}}
	var ptyRates, ptyCPU []float64
	for i := 0; i < 5; i++ {
		for _, m := range modes {
			srv0, ag0, cat0, self0 := cpuSeconds(s.cmd.Process.Pid), cpuSeconds(agentPID), childrenCPUSeconds(agentPID), cpuSeconds(os.Getpid())
			n, exit, start := drainTerminal(b, s, "cols=200&rows=50&command="+url.QueryEscape("cat /tmp/big"), m.ack)
			wsT := time.Since(start)
			if n < benchFileSize || exit != 0 {
				b.Fatalf("%s: websocket delivered %d bytes and exit %d, want ≥ %d bytes and exit 0", m.name, n, exit, benchFileSize)
			}
			m.rates = append(m.rates, float64(n)/wsT.Seconds())
			m.server = append(m.server, cpuSeconds(s.cmd.Process.Pid)-srv0)
			m.agent = append(m.agent, cpuSeconds(agentPID)-ag0)
			m.cat = append(m.cat, childrenCPUSeconds(agentPID)-cat0)
			m.client = append(m.client, cpuSeconds(os.Getpid())-self0)
		}

		cmd := exec.Command("script", "-qfc", "cat "+hostFile, "/dev/null")
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		// Timed from the first byte, as the websocket side is.
		var first [1]byte
		if _, err := io.ReadFull(out, first[:]); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		m, _ := io.Copy(io.Discard, out)
		cmd.Wait()
		ptyRates = append(ptyRates, float64(m+1)/time.Since(start).Seconds())
		ptyCPU = append(ptyCPU, (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds())
	}
	pty := medianF(ptyRates)
	b.ReportMetric(pty/1e6, "pty_MB/s")
	fmt.Printf("local pty (script): %.1f MB/s; CPU per 128 MiB: script with cat %.2f s (runs, MB/s: %s)\n", pty/1e6, medianF(ptyCPU), fmtRates(ptyRates))
	for _, m := range modes {
		ws := medianF(m.rates)
		b.ReportMetric(ws/1e6, m.unit+"_MB/s")
		b.ReportMetric(ws/pty, m.unit+"_ratio")
		fmt.Printf("terminal throughput, %s: websocket %.1f MB/s, ratio %.2f to the local pty (goal >= 0.8); CPU per 128 MiB: server %.2f s, agent %.2f s, cat %.2f s, client %.2f s (runs, MB/s: %s)\n",
			m.name, ws/1e6, ws/pty, medianF(m.server), medianF(m.agent), medianF(m.cat), medianF(m.client), fmtRates(m.rates))
	}
	fmt.Printf("load average %s\n", loadAverage())
}

// drainTerminal opens a terminal and reads it to the end of the program as a
// plain Go websocket client does, like the pty side's io.Copy to io.Discard: each
// message read into one reused buffer and dropped. With ack it opts in and
// acknowledges every 32 KiB, as the dashboard does. It returns the output bytes,
// the exit code and when the first output byte came.
func drainTerminal(b *testing.B, s *server, query string, ack bool) (total int64, exit int, first time.Time) {
	c, _, err := s.dialTerminal("tiny", query)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if ack {
		c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ack","bytes":0}`))
	}
	buf := make([]byte, 64<<10)
	var pending int64
	for {
		kind, r, err := c.NextReader()
		if err != nil {
			return total, -1, first
		}
		if kind == websocket.TextMessage {
			msg, _ := io.ReadAll(r)
			var ctl api.Control
			if json.Unmarshal(msg, &ctl) == nil && ctl.Type == api.ControlExit && ctl.Code != nil {
				return total, *ctl.Code, first
			}
			continue
		}
		if first.IsZero() {
			first = time.Now()
		}
		for err == nil {
			var n int
			n, err = r.Read(buf)
			total += int64(n)
			pending += int64(n)
		}
		if ack && pending >= 32<<10 {
			c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"ack","bytes":%d}`, pending)))
			pending = 0
		}
	}
}

func loadAverage() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}

func fmtRates(v []float64) string {
	parts := make([]string, len(v))
	for i, r := range v {
		parts[i] = fmt.Sprintf("%.0f", r/1e6)
	}
	return strings.Join(parts, " ")
}

// childNamed returns the pid of a child of parent whose command name is name, or 0.
func childNamed(parent int, name string) int {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
		st := string(raw)
		i := strings.LastIndexByte(st, ')')
		if i < 0 || st[strings.IndexByte(st, '(')+1:i] != name {
			continue
		}
		if f := strings.Fields(st[i+1:]); len(f) > 1 && f[1] == strconv.Itoa(parent) {
			return pid
		}
	}
	return 0
}

// cpuSeconds is a process's user and system CPU time so far, in seconds.
func cpuSeconds(pid int) float64 { return statCPU(pid, 11) }

// childrenCPUSeconds is the CPU time of a process's reaped children, in seconds.
func childrenCPUSeconds(pid int) float64 { return statCPU(pid, 13) }

// statCPU adds two consecutive clock-tick fields of /proc/PID/stat, counted
// from the field after the command name (utime and stime at 11, cutime and
// cstime at 13), in seconds (USER_HZ is 100).
func statCPU(pid, field int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	st := string(raw)
	f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
	if len(f) < field+2 {
		return 0
	}
	a, _ := strconv.ParseFloat(f[field], 64)
	b, _ := strconv.ParseFloat(f[field+1], 64)
	return (a + b) / 100
}

func medianF(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkTerminalEcho: keystroke echo latency through the websocket, 1000
// keystrokes into `cat` on a pty (the line discipline echoes each one): p50, p99
// (goal: p99 ≤ 1 ms on loopback).
func BenchmarkTerminalEcho(b *testing.B) {
	s := startServer(b, "")
	s.importTar("tiny", tinyRootfs(b))
	// A raw-mode cat: each key goes to the program and comes back from it, the
	// path of a shell's own echo.
	c, _, err := s.dialTerminal("tiny", "command=stty+raw+-echo%3B+exec+cat")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.ReadMessage() // session frame
	time.Sleep(300 * time.Millisecond)
	lat := make([]time.Duration, 0, 1000)
	for i := 0; i < 1000; i++ {
		key := byte('a' + i%26)
		start := time.Now()
		if err := c.WriteMessage(2, []byte{key}); err != nil {
			b.Fatal(err)
		}
		for got := false; !got; {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				b.Fatal(err)
			}
			got = kind == 2 && len(msg) > 0 && msg[len(msg)-1] == key
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	b.ReportMetric(float64(p50.Microseconds()), "p50_us")
	b.ReportMetric(float64(p99.Microseconds()), "p99_us")
	fmt.Printf("keystroke echo over 1000 keys: p50 %v, p99 %v (goal p99 <= 1ms)\n", p50, p99)
}

// BenchmarkTerminalFloodMemory: server RSS during a 60 s `yes` flood into a
// client that reads slowly (goal: ≤ 100 MiB).
func BenchmarkTerminalFloodMemory(b *testing.B) {
	s := startServer(b, "")
	s.importTar("tiny", tinyRootfs(b))
	dur := 60 * time.Second
	if v := os.Getenv("SUBSYS_FLOOD_SECONDS"); v != "" {
		n, _ := strconv.Atoi(v)
		dur = time.Duration(n) * time.Second
	}
	tc := s.openTerminal("tiny", "command=yes", optInOnly)
	var peak int64
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		// A slow reader: acknowledge 64 KiB ten times a second (it opted in).
		time.Sleep(100 * time.Millisecond)
		tc.control(map[string]any{"type": "ack", "bytes": 64 << 10})
		if rss := vmRSS(s.cmd.Process.Pid); rss > peak {
			peak = rss
		}
	}
	tc.mu.Lock()
	got := tc.received
	tc.mu.Unlock()
	b.ReportMetric(float64(peak)/(1<<20), "peak_rss_MiB")
	fmt.Printf("flood into a slow reader for %v: server peak RSS %.1f MiB, client received %.1f MiB (goal <= 100 MiB)\n", dur, float64(peak)/(1<<20), float64(got)/(1<<20))
}

// vmRSS returns a process's resident set size in bytes.
func vmRSS(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
