//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/vmm/qemu"
)

// benchMAC is the MAC of the comparison NIC BenchmarkVersion2Forwarding adds
// to the utility VM (QEMU's slirp with hostfwd rules), benchNet that slirp's
// network and benchNetAddr the address the distro gives the NIC.
const (
	benchMAC     = "52:54:00:5b:55:09"
	benchNet     = "10.0.3.0/24"
	benchNetAddr = "10.0.3.15"
)

// BenchmarkVersion2Forwarding compares subsys's port forwarding of a version
// 2 distro (the agent reports the listener, the host's proxy on 127.0.0.1
// dials in through the agent) with QEMU's own slirp hostfwd to the same
// guest and the same server, on a second NIC added with SUBSYS_QEMU_ARGS:
//   - throughput, host 127.0.0.1 → iperf3 server in the distro, Gbit/s (goal:
//     subsys/hostfwd ≥ 1);
//   - new TCP connections per second, each opened, one small message echoed,
//     closed, one after the other (goal: subsys/hostfwd ≥ 1).
//
// Rounds take turns between the two paths; medians are compared.
func BenchmarkVersion2Forwarding(b *testing.B) {
	tarball := debianTarball(b)
	kdir := kernelDir(b)
	const iperfBin = "/usr/bin/iperf3"
	if _, err := os.Stat(iperfBin); err != nil {
		testenv.SkipOrFailf(b, "needs iperf3 on the host (make deps): %v", err)
	}
	ps := freePorts(b, 4)
	iperfPort, echoPort, iperfFwd, echoFwd := ps[0], ps[1], ps[2], ps[3]
	qemuArgs := fmt.Sprintf("-netdev user,id=bench,ipv6=off,net=%s,hostfwd=tcp:127.0.0.1:%d-%s:%d,hostfwd=tcp:127.0.0.1:%d-%s:%d -device virtio-net-pci,netdev=bench,mac=%s",
		benchNet, iperfFwd, benchNetAddr, iperfPort, echoFwd, benchNetAddr, echoPort, benchMAC)
	s := startV2ServerEnv(b, kdir, "SUBSYS_QEMU_ARGS="+qemuArgs)
	importV2Path(b, s, "deb", tarball)

	// The host's iperf3 with the libraries it links that the distro lacks
	// (the host and the root file system are the same Debian), and the
	// static echo server, copied in over /mnt/host.
	files := []string{iperfBin}
	out, err := exec.Command("ldd", iperfBin).Output()
	if err != nil {
		b.Fatalf("ldd %s: %v", iperfBin, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		for i, w := range f {
			if strings.HasPrefix(w, "/") && (i == 0 || f[i-1] == "=>") {
				files = append(files, w)
			}
		}
	}
	echod := filepath.Join(b.TempDir(), "echod")
	if err := os.WriteFile(echod, buildStatic(b, "./testdata/echod"), 0o755); err != nil {
		b.Fatal(err)
	}
	setup := fmt.Sprintf(`set -e
iface=
for f in /sys/class/net/*/address; do
	if [ "$(cat "$f")" = %[1]s ]; then d=${f%%/address}; iface=${d##*/}; fi
done
[ -n "$iface" ] || { echo "no interface has the MAC %[1]s" >&2; exit 1; }
ip addr add %[2]s/24 dev "$iface"
ip link set "$iface" up
for f in %[3]s; do [ -e "$f" ] || cp -L "/mnt/host$f" "$f"; done
ldconfig
cp /mnt/host%[4]s /usr/local/bin/echod
iperf3 -s -p %[5]d </dev/null >/tmp/iperf3.log 2>&1 &
echod -tcp 0.0.0.0:%[6]d </dev/null >/tmp/echod.log 2>&1 &
echo "$iface"`, benchMAC, benchNetAddr, strings.Join(files, " "), echod, iperfPort, echoPort)
	res := s.exec("deb", api.ExecRequest{Argv: []string{"/bin/sh", "-c", setup}, TimeoutS: 120})
	if res.ExitCode != 0 {
		b.Fatalf("setting up the distro: %+v", res)
	}
	iface := strings.TrimSpace(res.Stdout)
	network := vmNetwork(b, s)

	// Both servers forwarded by subsys (the ports API says so), and the
	// echo server answering through both paths: condition waits.
	for _, p := range []uint16{iperfPort, echoPort} {
		waitFor(b, time.Minute, fmt.Sprintf("subsys to forward the guest's port %d", p), func() bool {
			pt, ok := s.port("deb", "tcp", p)
			return ok && pt.State == api.PortLocal
		})
	}
	subsysIperf := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(iperfPort)))
	fwdIperf := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(iperfFwd)))
	subsysEcho := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(echoPort)))
	fwdEcho := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(echoFwd)))
	for _, a := range []string{subsysEcho, fwdEcho} {
		waitFor(b, time.Minute, "an echo through "+a, func() bool { return echoOnce(a) == nil })
	}
	const rounds = 3
	paths := func(round int) []string {
		if round%2 == 1 {
			return []string{"hostfwd", "subsys"}
		}
		return []string{"subsys", "hostfwd"}
	}

	// New connections per second, one after the other.
	const connWindow = 3 * time.Second
	conns := map[string][]float64{}
	connErrs := map[string]int{}
	echoAddr := map[string]string{"subsys": subsysEcho, "hostfwd": fwdEcho}
	connLoop(subsysEcho, time.Second) // warm-up, unmeasured
	connLoop(fwdEcho, time.Second)
	rtts := map[string][]float64{}
	for i := 0; i < rounds; i++ {
		for _, p := range paths(i) {
			n, errs, elapsed := connLoop(echoAddr[p], connWindow)
			if n == 0 {
				b.Fatalf("no connection through %s (%s) completed in %v (%d failed)", p, echoAddr[p], connWindow, errs)
			}
			connErrs[p] += errs
			conns[p] = append(conns[p], float64(n)/elapsed.Seconds())
			// What a message costs on a connection already open: the rest
			// of a connection's cost is setting it up.
			rtt, err := echoRoundTrips(echoAddr[p], 200)
			if err != nil {
				b.Fatalf("echo round trips through %s: %v", p, err)
			}
			rtts[p] = append(rtts[p], float64(rtt.Microseconds())/1000)
		}
	}

	// Throughput. iperf3's server closes its listening socket after each
	// test and opens a new one, which subsys may see as the port closing
	// and opening again: a run that does not get through (refused, or cut
	// while subsys follows) is tried again until it does, for a minute at
	// most, a condition wait. The tries are counted.
	const iperfSeconds = 5
	iperfAddr := map[string]string{"subsys": subsysIperf, "hostfwd": fwdIperf}
	tries := map[string]int{}
	runIperf := func(p string, seconds int) (float64, error) {
		deadline := time.Now().Add(time.Minute)
		for {
			tries[p]++
			bps, err := iperf3Client(iperfBin, iperfAddr[p], seconds)
			if err == nil || time.Now().After(deadline) {
				return bps / 1e9, err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	tput := map[string][]float64{}
	var tputErr error
	for _, p := range paths(0) { // warm-up, unmeasured
		if _, err := runIperf(p, 1); err != nil && tputErr == nil {
			tputErr = fmt.Errorf("iperf3 through %s (%s) did not complete in a minute of tries: %v", p, iperfAddr[p], err)
		}
	}
	for i := 0; i < rounds && tputErr == nil; i++ {
		for _, p := range paths(i) {
			g, err := runIperf(p, iperfSeconds)
			if err != nil {
				tputErr = fmt.Errorf("iperf3 through %s (%s) did not complete in a minute of tries: %v", p, iperfAddr[p], err)
				break
			}
			tput[p] = append(tput[p], g)
		}
	}

	cs, cf := medianF(conns["subsys"]), medianF(conns["hostfwd"])
	vm := s.vm()
	b.Logf("version 2 port forwarding, host 127.0.0.1 → a Debian distro (%s, %d CPUs, %d MiB; VM network %s; comparison NIC %s on QEMU slirp), median of %d rounds taking turns:",
		vm.Accel, vm.CPUs, vm.MemoryMiB, network, iface, rounds)
	b.Logf("  %-38s %12s %12s %10s", "", "subsys", "hostfwd", "ratio")
	tputRow := fmt.Sprintf("iperf3 host→guest, %d s, Gbit/s", iperfSeconds)
	if tputErr == nil {
		ts, tf := medianF(tput["subsys"]), medianF(tput["hostfwd"])
		b.Logf("  %-38s %12.3f %12.3f %9.2fx  (goal >= 1)", tputRow, ts, tf, ts/tf)
		b.ReportMetric(ts, "subsys_Gbit/s")
		b.ReportMetric(tf, "hostfwd_Gbit/s")
		b.ReportMetric(ts/tf, "tput_subsys/hostfwd")
	} else {
		b.Logf("  %-38s %12s %12s %10s", tputRow, "failed", "", "")
	}
	b.Logf("  %-38s %12.0f %12.0f %9.2fx  (goal >= 1)", fmt.Sprintf("connect+echo+close, %v each, conn/s", connWindow), cs, cf, cs/cf)
	rs, rf := medianF(rtts["subsys"]), medianF(rtts["hostfwd"])
	b.Logf("  %-38s %12.2f %12.2f %9.2fx  (per connection beyond it: subsys %.1f ms, hostfwd %.1f ms)", "echo on an open connection, ms", rs, rf, rs/rf, 1000/cs-rs, 1000/cf-rf)
	b.Logf("  rounds: iperf3 Gbit/s subsys %s, hostfwd %s (runs started: subsys %d, hostfwd %d, warm-up included); conn/s subsys %s, hostfwd %s; failed connections subsys %d, hostfwd %d",
		fmtFloats(tput["subsys"], 3), fmtFloats(tput["hostfwd"], 3), tries["subsys"], tries["hostfwd"],
		fmtFloats(conns["subsys"], 0), fmtFloats(conns["hostfwd"], 0), connErrs["subsys"], connErrs["hostfwd"])
	b.ReportMetric(cs, "subsys_conn/s")
	b.ReportMetric(cf, "hostfwd_conn/s")
	b.ReportMetric(cs/cf, "conn_subsys/hostfwd")
	if tputErr != nil {
		b.Error(tputErr)
	}
}

// BenchmarkVersion2HostFiles compares the transports of a version 2
// distro's /mnt/host over a tree of 10,000 small files (100 directories of
// 100 files of 3,300 bytes, 33 MB) made on the host: virtio-fs (what
// /mnt/host is, where virtiofsd is installed) with 9p as QEMU serves it (a
// device of the benchmark's own, added with SUBSYS_QEMU_ARGS), mounted with
// its default cache and with cache=loose. `find | wc -l` and `tar -cf - |
// wc -c` run cold (the VM's caches dropped, 9p freshly mounted) and then warm
// (at once again), each timed inside the guest. Goals: virtio-fs ≥ 5× 9p's
// default for a cold find, ≥ 2× for a cold tar.
func BenchmarkVersion2HostFiles(b *testing.B) {
	tarball := debianTarball(b)
	kdir := kernelDir(b)
	if qemu.LookupVirtiofsd() == "" {
		testenv.SkipOrFailf(b, "needs virtiofsd (Debian's qemu-system-common: make deps)")
	}
	const dirs, perDir, size = 100, 100, 3300
	tree := filepath.Join(b.TempDir(), "tree")
	rng := rand.New(rand.NewSource(1))
	body := make([]byte, size)
	for d := 0; d < dirs; d++ {
		dir := filepath.Join(tree, fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < perDir; f++ {
			rng.Read(body)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), body, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	os.Chmod(filepath.Dir(tree), 0o755)
	qemuArgs := "-fsdev local,id=bench9p,path=" + tree + ",security_model=passthrough -device virtio-9p-pci,fsdev=bench9p,mount_tag=bench9p"
	s := startV2ServerEnv(b, kdir, "SUBSYS_QEMU_ARGS="+qemuArgs)
	importV2Path(b, s, "deb", tarball)

	// The top mount at /mnt/host (a small tmpfs lies under it).
	res := s.sh("deb", "grep ' /mnt/host ' /proc/mounts | tail -1; stat -f -c %T /mnt/host; mkdir -p /mnt/9p")
	if res.ExitCode != 0 || len(strings.Fields(res.Stdout)) < 3 || strings.Fields(res.Stdout)[2] != "virtiofs" {
		b.Fatalf("/mnt/host is not virtio-fs in the distro: %+v", res)
	}
	// The mount's type and options, and the type statfs reports.
	f := strings.Fields(res.Stdout)
	hostMount := f[2] + " " + f[3] + ", statfs " + f[len(f)-1]

	type transport struct {
		name  string
		dir   string
		mount string // the fresh mount a cold run starts with, if any
	}
	mount9p := "umount /mnt/9p 2>/dev/null; mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000%s bench9p /mnt/9p"
	transports := []transport{
		{"virtio-fs", "/mnt/host" + tree, ""},
		{"9p", "/mnt/9p", fmt.Sprintf(mount9p, "")},
		{"9p cache=loose", "/mnt/9p", fmt.Sprintf(mount9p, ",cache=loose")},
	}
	type result struct {
		findCold, findWarm, tarCold, tarWarm time.Duration
		entries, tarBytes                    int64
		mount                                string
	}
	results := make([]result, len(transports))
	for i, tr := range transports {
		r := &results[i]
		cold := tr.mount + "\nsync; echo 3 > /proc/sys/vm/drop_caches"
		var n1, n2, c1, c2 int64
		n1, r.findCold = guestTimed(b, s, "deb", cold, "cd "+tr.dir+" && find . | wc -l")
		n2, r.findWarm = guestTimed(b, s, "deb", "", "cd "+tr.dir+" && find . | wc -l")
		c1, r.tarCold = guestTimed(b, s, "deb", cold, "cd "+tr.dir+" && tar -cf - . | wc -c")
		c2, r.tarWarm = guestTimed(b, s, "deb", "", "cd "+tr.dir+" && tar -cf - . | wc -c")
		if n1 != n2 || c1 != c2 {
			b.Fatalf("%s: find counted %d then %d entries, tar wrote %d then %d bytes", tr.name, n1, n2, c1, c2)
		}
		r.entries, r.tarBytes = n1, c1
		if tr.mount != "" {
			if f := strings.Fields(s.sh("deb", "grep ' /mnt/9p ' /proc/mounts").Stdout); len(f) > 3 {
				r.mount = f[2] + " " + f[3]
			}
		}
	}
	if want := int64(1 + dirs + dirs*perDir); results[0].entries != want {
		b.Fatalf("virtio-fs: find counted %d entries, want %d", results[0].entries, want)
	}
	for i, r := range results[1:] {
		if r.entries != results[0].entries || r.tarBytes != results[0].tarBytes {
			b.Fatalf("%s sees %d entries (tar %d bytes), virtio-fs %d (%d bytes)", transports[i+1].name, r.entries, r.tarBytes, results[0].entries, results[0].tarBytes)
		}
	}
	vm := s.vm()
	b.Logf("/mnt/host transports in a version 2 distro (%s, %d CPUs, %d MiB), %d files in %d directories, %d MB; each timed in the guest, cold = VM caches dropped (9p: fresh mount), warm = repeated at once:",
		vm.Accel, vm.CPUs, vm.MemoryMiB, dirs*perDir, dirs, dirs*perDir*size/1000000)
	b.Logf("  mounts: /mnt/host %s; 9p %s; 9p loose %s", hostMount, results[1].mount, results[2].mount)
	b.Logf("  %-16s %12s %12s %12s %12s %9s %12s", "transport", "find cold", "find warm", "tar cold", "tar warm", "entries", "tar bytes")
	for i, r := range results {
		b.Logf("  %-16s %12v %12v %12v %12v %9d %12d", transports[i].name, r.findCold.Round(time.Millisecond), r.findWarm.Round(time.Millisecond),
			r.tarCold.Round(time.Millisecond), r.tarWarm.Round(time.Millisecond), r.entries, r.tarBytes)
	}
	vfs, p9, loose := results[0], results[1], results[2]
	b.Logf("  virtio-fs vs 9p: cold find %.2fx faster (goal >= 5), cold tar %.2fx (goal >= 2); warm find %.2fx, warm tar %.2fx",
		ratio(p9.findCold, vfs.findCold), ratio(p9.tarCold, vfs.tarCold), ratio(p9.findWarm, vfs.findWarm), ratio(p9.tarWarm, vfs.tarWarm))
	b.Logf("  virtio-fs vs 9p cache=loose: cold find %.2fx, cold tar %.2fx; warm find %.2fx, warm tar %.2fx",
		ratio(loose.findCold, vfs.findCold), ratio(loose.tarCold, vfs.tarCold), ratio(loose.findWarm, vfs.findWarm), ratio(loose.tarWarm, vfs.tarWarm))
	b.ReportMetric(vfs.findCold.Seconds(), "virtiofs_find_cold_s")
	b.ReportMetric(p9.findCold.Seconds(), "9p_find_cold_s")
	b.ReportMetric(vfs.tarCold.Seconds(), "virtiofs_tar_cold_s")
	b.ReportMetric(p9.tarCold.Seconds(), "9p_tar_cold_s")
	b.ReportMetric(ratio(p9.findCold, vfs.findCold), "find_cold_9p/virtiofs")
	b.ReportMetric(ratio(p9.tarCold, vfs.tarCold), "tar_cold_9p/virtiofs")
}

// startV2ServerEnv starts a server for version 2 benchmarks (logging at
// info) with env added to its environment; at the end it shuts the VM down
// (so the server stops passt and virtiofsd) and kills a QEMU that is left.
func startV2ServerEnv(b *testing.B, kdir string, env ...string) *server {
	data := b.TempDir()
	os.MkdirAll(filepath.Join(data, "vm"), 0o700)
	if err := os.Symlink(kdir, filepath.Join(data, "vm", "kernel")); err != nil {
		b.Fatal(err)
	}
	s := startServerEnv(b, data, "info", env...)
	b.Cleanup(func() {
		s.api("POST", "/shutdown", nil, nil)
		for deadline := time.Now().Add(30 * time.Second); qemuPID(data) > 0 && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
		}
		if pid := qemuPID(data); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return s
}

// importV2Path imports the server-side tarball as version 2 distro name.
func importV2Path(b *testing.B, s *server, name, tarball string) {
	var op api.Operation
	if st, raw := s.api("POST", "/distros", map[string]any{"name": name, "version": 2, "source": map[string]string{"path": tarball}}, &op); st != 202 {
		b.Fatalf("import %s: %d %s", name, st, raw)
	}
	s.waitOp(op.ID)
}

// vmNetwork says which user-mode network the running VM has, from QEMU's
// command line: "passt" (a stream netdev) or "slirp".
func vmNetwork(b *testing.B, s *server) string {
	pid := qemuPID(s.data)
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		b.Fatalf("QEMU's command line: %v", err)
	}
	args := strings.Split(string(raw), "\x00")
	for i, a := range args {
		if a == "-netdev" && i+1 < len(args) && strings.Contains(args[i+1], "id=net0") {
			if strings.HasPrefix(args[i+1], "stream,") {
				return "passt"
			}
			return "slirp"
		}
	}
	return "none"
}

// guestTimed runs prep and then cmd in the distro in one shell, timing cmd
// alone with the guest's clock, and returns the number cmd printed.
func guestTimed(b *testing.B, s *server, distro, prep, cmd string) (int64, time.Duration) {
	b.Helper()
	script := prep + "\nt0=$(date +%s%N)\nout=$(" + cmd + ")\nt1=$(date +%s%N)\necho \"$out $((t1-t0))\""
	res := s.exec(distro, api.ExecRequest{Argv: []string{"/bin/sh", "-c", script}, TimeoutS: 300})
	f := strings.Fields(res.Stdout)
	if res.ExitCode != 0 || len(f) != 2 {
		b.Fatalf("%s: %+v", cmd, res)
	}
	n, err1 := strconv.ParseInt(f[0], 10, 64)
	ns, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("%s: output %q", cmd, res.Stdout)
	}
	return n, time.Duration(ns)
}

// iperf3Client runs the host's iperf3 against addr for seconds and returns
// the bits per second the server received.
func iperf3Client(bin, addr string, seconds int) (float64, error) {
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+30)*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-c", host, "-p", port, "-t", strconv.Itoa(seconds), "-J", "--connect-timeout", "5000")
	cmd.Stdout, cmd.Stderr = &out, &errb
	runErr := cmd.Run()
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || runErr != nil || r.Error != "" || r.End.SumReceived.BitsPerSecond == 0 {
		var why []string
		for _, w := range []string{fmt.Sprint(runErr), r.Error, strings.TrimSpace(errb.String())} {
			if w != "" && w != "<nil>" {
				why = append(why, w)
			}
		}
		if len(why) == 0 {
			why = append(why, "no result")
		}
		return 0, errors.New(strings.Join(why, ": "))
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

// echoOnce opens a connection to an echo server at addr, exchanges one
// small message and closes it.
func echoOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
}

// echoRoundTrips opens one connection to the echo server at addr and returns
// the mean time of n round trips of a small message on it.
func echoRoundTrips(addr string, n int) (time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 4)
	t0 := time.Now()
	for range n {
		if _, err := c.Write([]byte("ping")); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return 0, err
		}
	}
	return time.Since(t0) / time.Duration(n), nil
}

// connLoop runs echoOnce against addr one connection after the other for
// window, and returns the completed and failed ones and the time taken.
func connLoop(addr string, window time.Duration) (ok, failed int, elapsed time.Duration) {
	t0 := time.Now()
	for time.Since(t0) < window {
		if echoOnce(addr) == nil {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed, time.Since(t0)
}

func fmtFloats(v []float64, prec int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', prec, 64)
	}
	return "[" + strings.Join(s, " ") + "]"
}
