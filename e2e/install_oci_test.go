//go:build linux

package e2e

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/internal/ocitest"
)

// ociTestImage is the tiny busybox root file system as an image of three
// layers, the upper two deleting a file, making a directory opaque and
// hard-linking a file of the bottom layer: a distro installed from it
// shows whether the layers were applied with their whiteouts.
func ociTestImage(t *testing.T) v1.Image {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(tinyRootfs(t)))
	if err != nil {
		t.Fatal(err)
	}
	base, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	f := ocitest.File
	// Its config names uid 1000, alice in the busybox /etc/passwd: the
	// distro's default user.
	return ocitest.WithUser(t, ocitest.Image(t, runtime.GOARCH,
		ocitest.LayerOf(t, base),
		ocitest.Layer(t, f("etc/deleted", "x"), ocitest.Dir("opq/"), f("opq/lower", "l"), ocitest.Dir("opq/sub/"), f("opq/sub/deeper", "l")),
		ocitest.Layer(t, f("etc/.wh.deleted", ""), f("opq/.wh..wh..opq", ""), f("opq/upper", "u"), ocitest.Hardlink("bin/hl", "bin/busybox")),
	), "1000:1000")
}

// ociCheck is run in a distro installed from ociTestImage: what it prints
// shows whether the layers were applied right (ociVerify).
const ociCheck = `test -e /etc/deleted && echo deleted-is-there; ls -A /opq; cat /opq/upper; echo; ls -i /bin/busybox /bin/hl`

// ociVerify checks ociCheck's result: /etc/deleted gone, /opq holding only
// the upper layer's file, /bin/hl the same inode as /bin/busybox.
func ociVerify(t *testing.T, what string, res api.ExecResult) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if res.ExitCode != 0 || len(lines) != 4 || lines[0] != "upper" || lines[1] != "u" {
		t.Errorf("%s: %+v, want only /opq/upper (u), no /etc/deleted, and two inodes", what, res)
		return
	}
	a, b := strings.Fields(lines[2]), strings.Fields(lines[3])
	if len(a) != 2 || len(b) != 2 || a[0] != b[0] || a[1] != "/bin/busybox" || b[1] != "/bin/hl" {
		t.Errorf("%s: /bin/hl is not a hard link of /bin/busybox: %q", what, lines[2:])
	}
}

// TestInstallOCI: `subsys install --from 127.0.0.1:PORT/test/img:tag` pulls
// an image from a registry (in this test's process) and the version 1
// distro shows its layers applied; the operation counts the layers'
// compressed bytes and names the layer; a tampered layer fails the
// install and leaves nothing.
func TestInstallOCI(t *testing.T) {
	s := startServer(t, "")
	reg := ocitest.Serve(t)
	img := ociTestImage(t)
	ref := reg.Push(t, "test/img:tag", img)

	if out, errOut, code := s.cli(nil, "install", "--from", ref, "oci1"); code != 0 {
		t.Fatalf("subsys install --from %s: %d\n%s%s", ref, code, out, errOut)
	}
	ociVerify(t, "the distro from "+ref, s.sh("oci1", ociCheck))
	if d := s.getDistro("oci1"); d.Version != 1 || d.DefaultUser != "alice" {
		t.Errorf("oci1 = %+v, want version 1, default user alice (the image config's uid 1000)", d)
	}
	if res := s.sh("oci1", "id -un"); res.Stdout != "alice\n" {
		t.Errorf("id -un in oci1: %+v, want alice", res)
	}

	// Through the API, named after the repository: the operation's
	// progress is the layers' compressed bytes, its message the layer.
	var op api.Operation
	if st, raw := s.api("POST", "/distros/install", api.InstallRequest{Source: ref}, &op); st != http.StatusAccepted {
		t.Fatalf("POST /distros/install %s: %d %s", ref, st, raw)
	}
	op = s.waitOpEnd(op.ID)
	layers, _ := img.Layers()
	var sum int64
	for _, l := range layers {
		n, _ := l.Size()
		sum += n
	}
	if op.Status != api.StatusSuccess || op.Distro != "img" || op.Progress.Total != sum || op.Message != "layer 3 of 3" {
		t.Errorf("install of %s = %+v; want success of distro img, total %d, message \"layer 3 of 3\"", ref, op, sum)
	}

	// A registry that serves other bytes for a layer than its digest.
	var served bool
	dg, _ := layers[2].Digest()
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+dg.String()) {
			served = true
			rc, _ := layers[1].Compressed()
			defer rc.Close()
			io.Copy(w, rc)
			return true
		}
		return false
	}
	if st, raw := s.api("POST", "/distros/install", api.InstallRequest{Name: "tampered", Source: ref}, &op); st != http.StatusAccepted {
		t.Fatalf("POST /distros/install (tampered): %d %s", st, raw)
	}
	op = s.waitOpEnd(op.ID)
	if !served {
		t.Fatal("the tampered layer was never asked for")
	}
	if op.Status != api.StatusFailure || !strings.Contains(op.Error, "sha256") {
		t.Errorf("install from a tampered layer: %+v", op)
	}
	if st, _ := s.api("GET", "/distros/tampered", nil, nil); st != http.StatusNotFound {
		t.Errorf("after a failed install the distro is there: %d", st)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.data, "distros")); len(ents) != 2 {
		t.Errorf("after a failed install the data directory holds %d distros' files, want 2", len(ents))
	}
	reg.Intercept = nil

	// Refused before anything starts: a tag the registry does not have;
	// a sha256 or mirror, which do not apply to an image.
	var e api.ErrorBody
	for _, tc := range []struct {
		req  api.InstallRequest
		want string
	}{
		{api.InstallRequest{Name: "x", Source: reg.Host + "/test/img:nope"}, "pull"},
		{api.InstallRequest{Name: "x", Source: ref, SHA256: strings.Repeat("0", 64)}, "digest"},
		{api.InstallRequest{Name: "x", Source: ref, Mirror: "http://deb.debian.org/debian"}, "not to an image"},
		{api.InstallRequest{Name: "x", Source: "oci:Not/Valid"}, "OCI image reference"},
	} {
		if st, raw := s.api("POST", "/distros/install", tc.req, &e); st != http.StatusBadRequest || !strings.Contains(e.Error.Message, tc.want) {
			t.Errorf("install %+v: %d %s, want 400 with %q", tc.req, st, raw, tc.want)
		}
	}

	// The catalog suggests images besides the releases it builds.
	var entries []api.CatalogEntry
	if st, raw := s.api("GET", "/catalog", nil, &entries); st != 200 {
		t.Fatalf("GET /catalog: %d %s", st, raw)
	}
	var images int
	for _, e := range entries {
		if e.Kind == "oci" {
			images++
		}
	}
	if images == 0 {
		t.Errorf("GET /catalog suggests no image: %+v", entries)
	}
}

// TestInstallOCIVersion2: the same image as a version 2 distro, in the VM
// (one boot).
func TestInstallOCIVersion2(t *testing.T) {
	s := startV2Server(t)
	reg := ocitest.Serve(t)
	ref := reg.Push(t, "test/img:v2", ociTestImage(t))
	if out, errOut, code := s.cli(nil, "install", "--from", ref, "--version", "2", "oci2"); code != 0 {
		t.Fatalf("subsys install --from %s --version 2: %d\n%s%s", ref, code, out, errOut)
	}
	if d := s.getDistro("oci2"); d.Version != 2 || d.DiskMaxBytes == 0 || d.DefaultUser != "alice" {
		t.Errorf("oci2 = %+v, want a version 2 distro, default user alice", d)
	}
	ociVerify(t, "the version 2 distro from "+ref, s.sh("oci2", ociCheck))
}
