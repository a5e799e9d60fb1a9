//go:build linux

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/internal/testenv"
)

// TestInstallTarball: `subsys install` of a tarball by URL, pinned by its
// SHA-256, as version 1 and 2, and by server path; a wrong checksum fails
// the install and leaves nothing, the name free; a taken name and an
// unknown release are refused before anything starts.
func TestInstallTarball(t *testing.T) {
	s := startServer(t, "")
	tarball := tinyRootfs(t)
	sum := sha256.Sum256(tarball)
	good := hex.EncodeToString(sum[:])
	var served int
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		w.Write(tarball)
	}))
	defer web.Close()
	src := web.URL + "/tiny-rootfs.tar.gz"

	if out, errOut, code := s.cli(nil, "install", "--from", src, "--sha256", good); code != 0 {
		t.Fatalf("subsys install --from %s: %d\n%s%s", src, code, out, errOut)
	}
	if res := s.sh("tiny-rootfs", "cat /etc/passwd | head -n 1"); res.ExitCode != 0 || !strings.HasPrefix(res.Stdout, "root:") {
		t.Errorf("the installed distro (named from the URL): %+v", res)
	}
	if out, errOut, code := s.cli(nil, "install", "tiny2", "--from", src, "--sha256", good, "--version", "2"); code != 0 {
		t.Fatalf("subsys install --version 2: %d\n%s%s", code, out, errOut)
	}
	if d := s.getDistro("tiny2"); d.Version != 2 || d.DiskMaxBytes == 0 {
		t.Errorf("a version 2 install: %+v", d)
	}
	var op api.Operation

	// A wrong checksum: the operation fails, and nothing of it stays.
	before := served
	bad := strings.Repeat("0", 64)
	if st, raw := s.api("POST", "/distros/install", api.InstallRequest{Name: "bad", Source: src, SHA256: bad}, &op); st != http.StatusAccepted {
		t.Fatalf("POST /distros/install with a wrong checksum: %d %s", st, raw)
	}
	op = s.waitOpEnd(op.ID)
	if op.Status != api.StatusFailure || !strings.Contains(op.Error, "sha256") || op.Kind != api.KindInstall {
		t.Errorf("an install with a wrong checksum: %+v", op)
	}
	if served == before {
		t.Error("the wrong-checksum install never fetched the tarball: the probe saw nothing")
	}
	if st, _ := s.api("GET", "/distros/bad", nil, nil); st != http.StatusNotFound {
		t.Errorf("after a failed install the distro is there: %d", st)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.data, "distros")); len(ents) != 2 {
		t.Errorf("after a failed install the data directory holds %d distros' files, want 2", len(ents))
	}

	// From a path on the server.
	p := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	if err := os.WriteFile(p, tarball, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, raw := s.api("POST", "/distros/install", api.InstallRequest{Source: p}, &op); st != http.StatusAccepted {
		t.Fatalf("install from a path: %d %s", st, raw)
	}
	s.waitOp(op.ID)
	if d := s.getDistro("rootfs"); d.Name != "rootfs" {
		t.Errorf("install from a path: %+v", d)
	}

	// The Debian mirror is a setting: a URL, or empty for the host's.
	if st, raw := s.api("PUT", "/settings", map[string]any{"install_mirror": "ftp://mirror.example/debian"}, nil); st != http.StatusBadRequest {
		t.Errorf("install_mirror ftp://: %d %s, want 400", st, raw)
	}
	var st api.Settings
	if code, raw := s.api("PUT", "/settings", map[string]any{"install_mirror": "http://deb.debian.org/debian"}, &st); code != 200 || st.InstallMirror != "http://deb.debian.org/debian" {
		t.Errorf("install_mirror: %d %s", code, raw)
	}

	// Refusals, before anything starts.
	var e api.ErrorBody
	for _, tc := range []struct {
		req    api.InstallRequest
		status int
		want   string
	}{
		{api.InstallRequest{Name: "tiny2", Source: src, SHA256: good}, http.StatusConflict, "already exists"},
		{api.InstallRequest{Name: "x", Source: "Debian:Sid"}, http.StatusBadRequest, "OCI image reference"},
		{api.InstallRequest{Name: "x", Source: "http://example.org/r.tar"}, http.StatusBadRequest, "plain http"},
		{api.InstallRequest{Name: "x", Include: []string{"--root=/"}}, http.StatusBadRequest, "not a package name"},
		{api.InstallRequest{Name: "../x"}, http.StatusBadRequest, "name"},
	} {
		if st, raw := s.api("POST", "/distros/install", tc.req, &e); st != tc.status || !strings.Contains(e.Error.Message, tc.want) {
			t.Errorf("install %+v: %d %s, want %d with %q", tc.req, st, raw, tc.status, tc.want)
		}
	}
}

// TestInstallDebian: `subsys install` with no arguments builds Debian
// bookworm on the server with mmdebstrap from Debian's mirror, for real,
// and the distro runs: the catalog lists it available first.
func TestInstallDebian(t *testing.T) {
	testenv.RequireCommand(t, "mmdebstrap", "Debian package mmdebstrap")
	s := startServer(t, "")
	var entries []api.CatalogEntry
	if st, raw := s.api("GET", "/catalog", nil, &entries); st != 200 {
		t.Fatalf("GET /catalog: %d %s", st, raw)
	}
	var found bool
	for _, e := range entries {
		if e.Source == "debian:bookworm" {
			found = e.Available
		}
	}
	if !found {
		t.Fatalf("the catalog does not offer debian:bookworm as available: %+v", entries)
	}
	began := time.Now()
	if out, errOut, code := s.cli(nil, "install"); code != 0 {
		t.Fatalf("subsys install: %d\n%s%s", code, out, errOut)
	}
	t.Logf("subsys install (debian:bookworm minbase) took %v", time.Since(began).Round(time.Second))
	res := s.sh("debian", ". /etc/os-release && echo $VERSION_CODENAME && dpkg -s apt | grep -c '^Status: install ok installed'")
	if res.ExitCode != 0 || res.Stdout != "bookworm\n1\n" {
		t.Errorf("the installed Debian: %+v", res)
	}
}
