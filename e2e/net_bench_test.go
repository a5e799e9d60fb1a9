//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// BenchmarkPortProxyIperf3: iperf3 through a portproxy rule of a running subsys
// server, vs iperf3 direct on loopback, vs through `socat TCP-LISTEN:P,fork
// TCP:127.0.0.1:Q`, in the same run (goals: ≥ 0.75× direct, ≥ 2× socat).
// The three take turns, several rounds, so that a change in the machine's load
// hits them alike; the median of each is compared.
func BenchmarkPortProxyIperf3(b *testing.B) {
	for _, tool := range []string{"iperf3", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.SkipOrFailf(b, "needs %s: %v", tool, err)
		}
	}
	s := startServerLevel(b, "", "info")
	ps := freePorts(b, 3)
	sport, rulePort, socatPort := ps[0], ps[1], ps[2]
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, "iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(int(sport)))
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); srv.Wait() }()
	socat := exec.CommandContext(ctx, "socat", fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr,bind=127.0.0.1", socatPort), fmt.Sprintf("TCP:127.0.0.1:%d", sport))
	if err := socat.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); socat.Wait() }()
	if st, raw := s.api("POST", "/portproxy", map[string]any{"listen_address": "127.0.0.1", "listen_port": rulePort, "connect_port": sport}, nil); st != 201 {
		b.Fatalf("POST /portproxy: %d %s", st, raw)
	}
	waitTCP(b, sport)
	waitTCP(b, socatPort)

	const rounds, seconds = 5, 2
	runs := []struct {
		name string
		port uint16
	}{{"direct", sport}, {"rule", rulePort}, {"socat", socatPort}}
	gbps := map[string][]float64{}
	busy := map[string]float64{}  // CPU seconds of the whole machine
	moved := map[string]float64{} // gigabits
	for range rounds {
		for _, r := range runs {
			cpu0 := cpuBusySeconds(b)
			out, err := exec.Command("iperf3", "-c", "127.0.0.1", "-p", strconv.Itoa(int(r.port)), "-t", strconv.Itoa(seconds), "-J").Output()
			if err != nil {
				b.Fatalf("iperf3 %s: %v\n%s", r.name, err, out)
			}
			var res struct {
				End struct {
					SumReceived struct {
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				b.Fatalf("iperf3 %s output: %v", r.name, err)
			}
			busy[r.name] += cpuBusySeconds(b) - cpu0
			moved[r.name] += res.End.SumReceived.BitsPerSecond / 1e9 * seconds
			gbps[r.name] = append(gbps[r.name], res.End.SumReceived.BitsPerSecond/1e9)
		}
	}
	for _, r := range runs {
		// What a gigabit costs the machine: with every core busy, throughput
		// is the cores divided by it.
		b.Logf("%s: %.3f CPU-seconds per gigabit (machine busy %.0f%% of %d cores)", r.name, busy[r.name]/moved[r.name],
			100*busy[r.name]/float64(rounds*seconds*runtime.NumCPU()), runtime.NumCPU())
	}
	d, r, so := medianF(gbps["direct"]), medianF(gbps["rule"]), medianF(gbps["socat"])
	b.ReportMetric(d, "direct_Gbit/s")
	b.ReportMetric(r, "rule_Gbit/s")
	b.ReportMetric(so, "socat_Gbit/s")
	b.ReportMetric(r/d, "rule/direct")
	b.ReportMetric(r/so, "rule/socat")
	b.Logf("iperf3 %d×%ds each, medians: direct %.2f Gbit/s, portproxy rule %.2f Gbit/s, socat %.2f Gbit/s; rule/direct %.2f (goal ≥ 0.75), rule/socat %.2f (goal ≥ 2); all runs %v",
		rounds, seconds, d, r, so, r/d, r/so, gbps)
}

// BenchmarkPortProxyConnect: new connections per second (connect, one byte
// each way, close) through a portproxy rule vs directly to the same echo server,
// same run (goal: ≥ 0.5× direct).
func BenchmarkPortProxyConnect(b *testing.B) {
	s := startServerLevel(b, "", "info")
	ps := freePorts(b, 2)
	echoPort, rulePort := ps[0], ps[1]
	startTCPEcho(b, fmt.Sprintf("127.0.0.1:%d", echoPort))
	if st, raw := s.api("POST", "/portproxy", map[string]any{"listen_address": "127.0.0.1", "listen_port": rulePort, "connect_port": echoPort}, nil); st != 201 {
		b.Fatalf("POST /portproxy: %d %s", st, raw)
	}
	const rounds, window = 5, time.Second
	clients := 1
	if v, err := strconv.Atoi(os.Getenv("SUBSYS_BENCH_CLIENTS")); err == nil && v > 0 {
		clients = v
	}
	rate := map[string][]float64{}
	cpu, conns := map[string]float64{}, map[string]float64{}
	for range rounds {
		for _, r := range []struct {
			name string
			port uint16
		}{{"direct", echoPort}, {"rule", rulePort}} {
			addr := fmt.Sprintf("127.0.0.1:%d", r.port)
			var n atomic.Int64
			cpu0 := cpuBusySeconds(b)
			start := time.Now()
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					one := make([]byte, 1)
					for time.Since(start) < window {
						c, err := net.Dial("tcp", addr)
						if err != nil {
							b.Errorf("%s: %v", r.name, err)
							return
						}
						c.Write(one)
						if _, err := io.ReadFull(c, one); err != nil {
							b.Errorf("%s echo: %v", r.name, err)
						}
						c.Close()
						n.Add(1)
					}
				})
			}
			wg.Wait()
			rate[r.name] = append(rate[r.name], float64(n.Load())/time.Since(start).Seconds())
			cpu[r.name] += cpuBusySeconds(b) - cpu0
			conns[r.name] += float64(n.Load())
		}
	}
	for _, name := range []string{"direct", "rule"} {
		b.Logf("%s: %.0f µs of CPU per connection (machine busy %.0f%% of %d cores, %d clients)", name, 1e6*cpu[name]/conns[name],
			100*cpu[name]/(rounds*window.Seconds()*float64(runtime.NumCPU())), runtime.NumCPU(), clients)
	}
	d, r := medianF(rate["direct"]), medianF(rate["rule"])
	b.ReportMetric(d, "direct_conns/s")
	b.ReportMetric(r, "rule_conns/s")
	b.ReportMetric(r/d, "rule/direct")
	b.Logf("new connections per second, medians of %d×%v: direct %.0f, portproxy rule %.0f; rule/direct %.2f (goal ≥ 0.5)", rounds, window, d, r, r/d)
}

// cpuBusySeconds is the CPU time the whole machine has spent not idle, from
// /proc/stat.
func cpuBusySeconds(b *testing.B) float64 {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(raw), "\n", 2)[0])[1:]
	var busy float64
	for i, v := range f {
		n, _ := strconv.ParseFloat(v, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is in user already
			busy += n
		}
	}
	return busy / 100 // USER_HZ
}

func waitTCP(b *testing.B, port uint16) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		// A socket listening is enough; iperf3 treats a bare probe as a client,
		// so look at the kernel's list instead of connecting.
		out, _ := exec.Command("ss", "-Hltn", "sport = :"+strconv.Itoa(int(port))).Output()
		if len(out) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("nothing listens on port %d", port)
}
