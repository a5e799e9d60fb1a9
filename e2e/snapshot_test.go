//go:build linux

package e2e

import (
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/api"
)

// fileSum is the SHA-256 of a file's bytes.
func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// TestSnapshots: a version 1 distro's snapshot through the CLI, changes
// made after it, a restore that brings the old files back (and drops the
// new), a refused snapshot of a running distro, a taken name, a delete; a
// version 2 distro's image snapshotted and restored byte for byte; and
// unregister takes the snapshots along.
func TestSnapshots(t *testing.T) {
	s := startServer(t, "")
	s.importTar("snap1", tinyRootfs(t))
	s.sh("snap1", "echo before > /root/state")
	if _, errOut, code := s.cli(nil, "snapshot", "snap1"); code == 0 || !strings.Contains(errOut, "terminate") {
		t.Errorf("a snapshot of a running distro: %d %s", code, errOut)
	}
	s.cli(nil, "terminate", "snap1")
	if out, errOut, code := s.cli(nil, "snapshot", "snap1", "clean"); code != 0 {
		t.Fatalf("subsys snapshot snap1 clean: %d\n%s%s", code, out, errOut)
	}
	s.sh("snap1", "echo after > /root/state; echo junk > /root/new")
	s.cli(nil, "terminate", "snap1")
	var list []api.DistroSnapshot
	if st, raw := s.api("GET", "/distros/snap1/snapshots", nil, &list); st != 200 || len(list) != 1 || list[0].Name != "clean" || list[0].Version != 1 || list[0].Bytes <= 0 {
		t.Fatalf("GET snapshots: %d %s", st, raw)
	}
	var e api.ErrorBody
	if st, raw := s.api("POST", "/distros/snap1/snapshots", api.SnapshotRequest{Name: "clean"}, &e); st != http.StatusConflict {
		t.Errorf("a second snapshot named clean: %d %s", st, raw)
	}
	if st, raw := s.api("POST", "/distros/snap1/snapshots", api.SnapshotRequest{Name: "../x"}, &e); st != http.StatusBadRequest {
		t.Errorf("a snapshot named ../x: %d %s", st, raw)
	}
	if out, errOut, code := s.cli(nil, "snapshot", "restore", "snap1", "clean"); code != 0 {
		t.Fatalf("subsys snapshot restore: %d\n%s%s", code, out, errOut)
	}
	if res := s.sh("snap1", "cat /root/state; test -e /root/new && echo new-is-there"); res.Stdout != "before\n" {
		t.Errorf("after the restore: %+v", res)
	}
	out, _, _ := s.cli(nil, "snapshot", "list", "snap1")
	if !strings.Contains(out, "clean") {
		t.Errorf("subsys snapshot list: %q", out)
	}
	if st, raw := s.api("POST", "/distros/snap1/snapshots/nope/restore", nil, &e); st != http.StatusNotFound {
		t.Errorf("restore of a snapshot that does not exist: %d %s", st, raw)
	}
	s.cli(nil, "terminate", "snap1")
	if _, errOut, code := s.cli(nil, "snapshot", "delete", "snap1", "clean"); code != 0 {
		t.Fatalf("subsys snapshot delete: %s", errOut)
	}
	if st, _ := s.api("GET", "/distros/snap1/snapshots", nil, &list); st != 200 || len(list) != 0 {
		t.Errorf("after delete: %+v", list)
	}

	// Version 2: the image, byte for byte (no VM needed).
	// A small disk: the test hashes the whole image.
	var imp api.Operation
	if st, raw := s.api("POST", "/distros?name=snap2&version=2&size="+strconv.Itoa(64<<20), tinyRootfs(t), &imp); st != http.StatusAccepted {
		t.Fatalf("import snap2: %d %s", st, raw)
	}
	s.waitOp(imp.ID)
	img := filepath.Join(s.getDistro("snap2").Location, "disk.img")
	orig := fileSum(t, img)
	s.waitOp(s.postOp("/distros/snap2/snapshots", api.SnapshotRequest{Name: "v2"}).ID)
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("changed after the snapshot"), 1<<20)
	f.Close()
	if fileSum(t, img) == orig {
		t.Fatal("the probe: the image did not change")
	}
	s.waitOp(s.postOp("/distros/snap2/snapshots/v2/restore", nil).ID)
	if fileSum(t, img) != orig {
		t.Error("the restored image is not the snapshot's")
	}
	// A version 1 snapshot does not restore into a version 2 distro.
	s.waitOp(s.postOp("/distros/snap1/snapshots", api.SnapshotRequest{Name: "one"}).ID)

	// Unregister takes the snapshots along.
	dir := filepath.Join(s.data, "snapshots", s.getDistro("snap2").ID)
	if _, err := os.Stat(filepath.Join(dir, "v2")); err != nil {
		t.Fatalf("the snapshot's files: %v", err)
	}
	s.cli(nil, "unregister", "snap2")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("after unregister the snapshots are still there: %v", err)
	}
}
