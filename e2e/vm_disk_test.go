//go:build linux

package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// dfSize is the size of the distro's root file system as df inside it
// says, in bytes.
func dfSize(t *testing.T, s *server, name string) int64 {
	t.Helper()
	res := s.sh(name, "busybox df -B1 / | tail -n 1")
	f := strings.Fields(res.Stdout)
	if res.ExitCode != 0 || len(f) < 4 {
		t.Fatalf("df in %s: %+v", name, res)
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatalf("df in %s: %q: %v", name, res.Stdout, err)
	}
	return n
}

// imageUsage is the distro's image's apparent and allocated size, from the
// host's stat.
func imageUsage(t *testing.T, s *server, name string) (size, allocated int64) {
	t.Helper()
	d := s.getDistro(name)
	size, allocated, err := disk.Usage(filepath.Join(d.Location, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	return size, allocated
}

func (s *server) getDistro(name string) api.Distro {
	s.t.Helper()
	var d api.Distro
	if st, raw := s.api("GET", "/distros/"+name, nil, &d); st != 200 {
		s.t.Fatalf("GET /distros/%s: %d %s", name, st, raw)
	}
	return d
}

// postOp POSTs body to a distro's path and returns the operation it
// started, failing unless the answer is 202.
func (s *server) postOp(path string, body any) api.Operation {
	s.t.Helper()
	var op api.Operation
	if st, raw := s.api("POST", path, body, &op); st != http.StatusAccepted {
		s.t.Fatalf("POST %s: %d %s", path, st, raw)
	}
	return op
}

// waitOpEnd waits for operation id to end, whatever its status.
func (s *server) waitOpEnd(id string) api.Operation {
	s.t.Helper()
	var op api.Operation
	waitFor(s.t, 5*time.Minute, "operation "+id+" to end", func() bool {
		if st, raw := s.api("GET", "/operations/"+id+"?wait=5", nil, &op); st != 200 {
			s.t.Fatalf("operation %s: %d %s", id, st, raw)
		}
		return op.Status != api.StatusRunning
	})
	return op
}

// TestVersion2Disks is a version 2 distro's disk through its life, in one
// VM boot: an online grow that df sees at once, a GiB written and deleted
// then given back by compact, an offline shrink that fits and one that
// does not (refused, nothing changed), an offline grow, a compact of a
// stopped distro, and a move to another file system (a tmpfs) and back.
func TestVersion2Disks(t *testing.T) {
	s := startV2Server(t)
	const name = "disks"
	var op api.Operation
	if st, raw := s.api("POST", "/distros?name="+name+"&version=2&size="+strconv.Itoa(1<<30), tinyRootfs(t), &op); st != http.StatusAccepted {
		t.Fatalf("import: %d %s", st, raw)
	}
	s.waitOp(op.ID)
	if d := s.getDistro(name); d.DiskMaxBytes != 1<<30 || d.DiskBytes <= 0 || d.DiskBytes > 200<<20 {
		t.Errorf("a fresh 1 GiB disk: disk_max_bytes %d, disk_bytes %d", d.DiskMaxBytes, d.DiskBytes)
	}
	s.sh(name, "echo keep > /root/marker")

	// Online grow: the running guest's df shows it when the operation ends.
	before := dfSize(t, s, name)
	out, errOut, code := s.cli(nil, "resize", name, "2G")
	if code != 0 {
		t.Fatalf("subsys resize %s 2G: %d\n%s%s", name, code, out, errOut)
	}
	after := dfSize(t, s, name)
	if after < before+900<<20 {
		t.Errorf("df after an online grow from 1 to 2 GiB: %d bytes, before %d", after, before)
	}
	if size, _ := imageUsage(t, s, name); size != 2<<30 {
		t.Errorf("image size after the grow: %d, want %d", size, 2<<30)
	}
	waitFor(t, time.Minute, "GET /distros to show the new size and free space", func() bool {
		d := s.getDistro(name)
		return d.DiskMaxBytes == 2<<30 && d.DiskFreeBytes > 900<<20
	})
	// A running distro's disk does not shrink.
	var e api.ErrorBody
	if st, raw := s.api("POST", "/distros/"+name+"/resize", api.ResizeRequest{Size: 1 << 30}, &e); st != http.StatusConflict || !strings.Contains(e.Error.Message, "terminate") {
		t.Errorf("shrinking a running distro: %d %s", st, raw)
	}

	// A GiB written then deleted, and compacted.
	_, alloc0 := imageUsage(t, s, name)
	if res := s.sh(name, "dd if=/dev/urandom of=/root/big bs=1M count=1024 2>&1 && sync"); res.ExitCode != 0 {
		t.Fatalf("write 1 GiB: %+v", res)
	}
	_, alloc1 := imageUsage(t, s, name)
	if alloc1 < alloc0+900<<20 {
		t.Errorf("a GiB written: the image allocates %d bytes, %d before", alloc1, alloc0)
	}
	s.sh(name, "rm /root/big && sync")
	cop := s.waitOp(s.postOp("/distros/"+name+"/compact", nil).ID)
	_, alloc2 := imageUsage(t, s, name)
	t.Logf("allocated: %d MiB before the write, %d after it, %d after delete and compact (%.3f×); compact reports %d MiB",
		alloc0>>20, alloc1>>20, alloc2>>20, float64(alloc2)/float64(alloc0), cop.Result.Bytes>>20)
	if alloc1-alloc2 < 900<<20 {
		t.Errorf("after delete and compact the image allocates %d bytes, %d before: less than 900 MiB given back", alloc2, alloc1)
	}

	// Offline: a shrink that does not fit is refused and changes nothing.
	if _, errOut, code := s.cli(nil, "terminate", name); code != 0 {
		t.Fatalf("terminate: %s", errOut)
	}
	tooSmall := s.waitOpEnd(s.postOp("/distros/"+name+"/resize", api.ResizeRequest{Size: 64 << 20}).ID)
	if tooSmall.Status != api.StatusFailure || !strings.Contains(tooSmall.Error, "at least") {
		t.Errorf("a shrink to 64 MiB: %s %q, want a failure naming the minimum", tooSmall.Status, tooSmall.Error)
	}
	if size, _ := imageUsage(t, s, name); size != 2<<30 {
		t.Errorf("image size after a refused shrink: %d, want %d", size, 2<<30)
	}
	// One that fits.
	s.waitOp(s.postOp("/distros/"+name+"/resize", api.ResizeRequest{Size: 512 << 20}).ID)
	if size, _ := imageUsage(t, s, name); size != 512<<20 {
		t.Errorf("image size after a shrink to 512 MiB: %d", size)
	}
	if n := dfSize(t, s, name); n > 512<<20 || n < 350<<20 {
		t.Errorf("df after the shrink to 512 MiB: %d", n)
	}
	if res := s.sh(name, "cat /root/marker"); res.Stdout != "keep\n" {
		t.Errorf("the marker after the shrink: %+v", res)
	}
	// Offline grow, and a compact of a stopped distro.
	s.cli(nil, "terminate", name)
	s.waitOp(s.postOp("/distros/"+name+"/resize", api.ResizeRequest{Size: 768 << 20}).ID)
	s.waitOp(s.postOp("/distros/"+name+"/compact", nil).ID)
	if n := dfSize(t, s, name); n > 768<<20 || n < 550<<20 {
		t.Errorf("df after an offline grow to 768 MiB: %d", n)
	}

	if os.Getenv("SKIP_MOVE") != "" {
		return
	}
	// Move to another file system and back.
	s.cli(nil, "terminate", name)
	home := s.getDistro(name).Location
	tmpfs := t.TempDir()
	if err := syscall.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=1g,mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(tmpfs, syscall.MNT_DETACH) })
	_, allocBefore := imageUsage(t, s, name)
	away := filepath.Join(tmpfs, "away")
	if out, errOut, code := s.cli(nil, "move", name, away); code != 0 {
		t.Fatalf("subsys move %s %s: %d\n%s%s", name, away, code, out, errOut)
	}
	if d := s.getDistro(name); d.Location != away {
		t.Errorf("location after the move: %q, want %q", d.Location, away)
	}
	if _, alloc := imageUsage(t, s, name); alloc > allocBefore+(1<<20) {
		t.Errorf("moved image allocates %d bytes, %d before: not sparse", alloc, allocBefore)
	}
	if _, err := os.Stat(filepath.Join(home, "disk.img")); !os.IsNotExist(err) {
		t.Errorf("the old image is still there: %v", err)
	}
	if res := s.sh(name, "cat /root/marker"); res.Stdout != "keep\n" {
		t.Errorf("the marker after the move: %+v", res)
	}
	s.cli(nil, "terminate", name)
	back := filepath.Join(t.TempDir(), "back")
	s.waitOp(s.postOp("/distros/"+name+"/move", api.MoveRequest{Location: back}).ID)
	if d := s.getDistro(name); d.Location != back {
		t.Errorf("location after moving back: %q, want %q", d.Location, back)
	}
	if res := s.sh(name, "cat /root/marker"); res.Stdout != "keep\n" {
		t.Errorf("the marker after moving back: %+v", res)
	}
}
