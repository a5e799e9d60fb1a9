package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/internal/testenv"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Source
		name    string
		wantErr string
	}{
		{in: "", want: Source{Kind: KindDistribution, Distribution: "debian", Suite: "bookworm"}, name: "debian"},
		{in: "debian:trixie", want: Source{Kind: KindDistribution, Distribution: "debian", Suite: "trixie"}, name: "debian"},
		{in: " ubuntu:noble ", want: Source{Kind: KindDistribution, Distribution: "ubuntu", Suite: "noble"}, name: "ubuntu"},
		{in: "https://example.org/x/alpine-minirootfs-3.20.tar.gz", want: Source{Kind: KindURL, URL: "https://example.org/x/alpine-minirootfs-3.20.tar.gz"}, name: "alpine-minirootfs-3.20"},
		{in: "http://example.org/r.tar", want: Source{Kind: KindURL, URL: "http://example.org/r.tar"}, name: "r"},
		{in: "/srv/images/rootfs.tar.zst", want: Source{Kind: KindPath, Path: "/srv/images/rootfs.tar.zst"}, name: "rootfs"},
		{in: "/srv/my rootfs!.tgz", want: Source{Kind: KindPath, Path: "/srv/my rootfs!.tgz"}, name: "my-rootfs-"},
		// Not a release the catalog lists: an image, as is anything with a
		// registry or a digest, and anything with oci: or docker://.
		{in: "debian:sid", want: Source{Kind: KindOCI, Image: "index.docker.io/library/debian:sid"}, name: "debian"},
		{in: "fedora:41", want: Source{Kind: KindOCI, Image: "index.docker.io/library/fedora:41"}, name: "fedora"},
		{in: "alpine", want: Source{Kind: KindOCI, Image: "index.docker.io/library/alpine:latest"}, name: "alpine"},
		{in: "oci:debian:bookworm", want: Source{Kind: KindOCI, Image: "index.docker.io/library/debian:bookworm"}, name: "debian"},
		{in: "docker://debian:bookworm", want: Source{Kind: KindOCI, Image: "index.docker.io/library/debian:bookworm"}, name: "debian"},
		{in: "docker.io/library/alpine:3.20", want: Source{Kind: KindOCI, Image: "index.docker.io/library/alpine:3.20"}, name: "alpine"},
		{in: "127.0.0.1:5000/test/img:tag", want: Source{Kind: KindOCI, Image: "127.0.0.1:5000/test/img:tag"}, name: "img"},
		{in: "localhost:5000/Img_x", wantErr: "OCI image reference"},
		{in: "ghcr.io/org/debian:bookworm", want: Source{Kind: KindOCI, Image: "ghcr.io/org/debian:bookworm"}, name: "debian"},
		{in: "alpine@sha256:" + strings.Repeat("ab", 32), want: Source{Kind: KindOCI, Image: "index.docker.io/library/alpine@sha256:" + strings.Repeat("ab", 32)}, name: "alpine"},
		{in: "alpine@sha256:abc", wantErr: "OCI image reference"},
		{in: "Debian:Bookworm", wantErr: "OCI image reference"},
		{in: "a b", wantErr: "OCI image reference"},
		{in: "oci:", wantErr: "OCI image reference"},
		{in: "ftp://example.org/rootfs.tar", wantErr: "https://"},
		{in: "oci:ftp://example.org/rootfs", wantErr: "OCI image reference"},
		{in: "/srv/../etc/shadow", wantErr: "not clean"},
		{in: "https://", wantErr: "not a URL"},
	} {
		got, err := Parse(tc.in)
		if tc.wantErr != "" {
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) = %+v, %v; want an ErrInvalid with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if n := got.DefaultName(); n != tc.name {
			t.Errorf("Parse(%q).DefaultName() = %q, want %q", tc.in, n, tc.name)
		}
	}
}

func TestOptionsCheck(t *testing.T) {
	deb := Source{Kind: KindDistribution, Distribution: "debian", Suite: "bookworm"}
	tar := Source{Kind: KindURL, URL: "https://example.org/r.tar"}
	plain := Source{Kind: KindURL, URL: "http://example.org/r.tar"}
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name    string
		src     Source
		opts    Options
		wantErr string
	}{
		{"defaults", deb, Options{}, ""},
		{"variant and packages", deb, Options{Variant: "standard", Include: []string{"systemd", "openssh-server", "g++"}}, ""},
		{"mirror", deb, Options{Mirror: "http://mirror.example/debian"}, ""},
		{"unknown variant", deb, Options{Variant: "huge"}, "variant"},
		{"package as an option", deb, Options{Include: []string{"--root=/"}}, "not a package name"},
		{"package with a comma", deb, Options{Include: []string{"a,b"}}, "not a package name"},
		{"mirror not a URL", deb, Options{Mirror: "/srv/mirror"}, "mirror"},
		{"mirror with a space", deb, Options{Mirror: "http://a b"}, "mirror"},
		{"checksum of a build", deb, Options{SHA256: sum}, "checksum applies to a tarball"},
		{"variant of a tarball", tar, Options{Variant: "minbase"}, "not to a tarball"},
		{"tarball with a checksum", tar, Options{SHA256: sum}, ""},
		{"bad checksum", tar, Options{SHA256: "abc"}, "64 lowercase"},
		{"plain http without a checksum", plain, Options{}, "plain http"},
		{"plain http with a checksum", plain, Options{SHA256: sum}, ""},
	} {
		err := tc.opts.Check(tc.src)
		if (err == nil) != (tc.wantErr == "") || (err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr))) {
			t.Errorf("%s: Check = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestBuildArgs(t *testing.T) {
	deb, _ := findRelease("debian", "bookworm")
	got := buildArgs(deb, Options{Include: []string{"systemd", "less"}})
	want := []string{"--quiet", "--format=tar", "--variant=minbase", "--keyring=/usr/share/keyrings/debian-archive-keyring.gpg", "--include=systemd,less", "--", "bookworm", "-"}
	if !slices.Equal(got, want) {
		t.Errorf("buildArgs = %q\nwant %q", got, want)
	}
	ub, _ := findRelease("ubuntu", "noble")
	got = buildArgs(ub, Options{Variant: "standard", Mirror: "http://mirror.example/ubuntu"})
	if got[len(got)-1] != "http://mirror.example/ubuntu" || got[len(got)-2] != "-" || !slices.Contains(got, "--variant=standard") {
		t.Errorf("buildArgs with a mirror = %q", got)
	}
}

// TestOpenPathChecksum: a file's tarball reads through, and with a checksum
// the last read fails when the bytes are not the ones pinned.
func TestOpenPathChecksum(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.tar")
	body := []byte(strings.Repeat("rootfs", 1000))
	if err := os.WriteFile(p, body, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	good := hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		sum     string
		wantErr bool
	}{{"", false}, {good, false}, {strings.Repeat("0", 64), true}} {
		s, err := Open(context.Background(), Source{Kind: KindPath, Path: p}, Options{SHA256: tc.sum})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(s)
		s.Close()
		if tc.wantErr != (err != nil) || (err != nil && !errors.Is(err, ErrChecksum)) || (err == nil && string(got) != string(body)) || s.Size != int64(len(body)) {
			t.Errorf("sha256 %q: read %d bytes, %v (size %d)", tc.sum, len(got), err, s.Size)
		}
	}
	if _, err := Open(context.Background(), Source{Kind: KindPath, Path: filepath.Dir(p)}, Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a directory as the tarball: %v", err)
	}
}

// TestDownload: a download reads through with its size; a 404 and a
// redirect from https to http are errors.
func TestDownload(t *testing.T) {
	body := "a tarball"
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/r.tar" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, body)
	}))
	defer plain.Close()
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/r.tar", http.StatusFound)
	}))
	defer tls.Close()
	sum := sha256.Sum256([]byte(body))
	s, err := Open(context.Background(), Source{Kind: KindURL, URL: plain.URL + "/r.tar"}, Options{SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	s.Close()
	if err != nil || string(got) != body || s.Size != int64(len(body)) {
		t.Errorf("download: %q, %v, size %d", got, err, s.Size)
	}
	if _, err := download(context.Background(), plain.URL+"/missing.tar", ""); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a 404: %v", err)
	}
	// The TLS test server's certificate is not trusted by the default
	// client either way; what matters is that no body is read from http.
	if _, err := download(context.Background(), tls.URL+"/r.tar", ""); err == nil {
		t.Error("a redirect from https to http (or an untrusted certificate) was followed")
	}
}

// TestBuildFailure: a build that fails says why, with what mmdebstrap
// printed, as the stream's last error; a build that succeeds streams its
// output. A stand-in mmdebstrap on PATH plays both.
func TestBuildFailure(t *testing.T) {
	if _, err := os.Stat("/usr/share/keyrings/debian-archive-keyring.gpg"); err != nil {
		testenv.SkipOrFailf(t, "needs the Debian keyring (Debian package debian-archive-keyring): %v", err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\nfor a; do case $a in bookworm) printf 'TARBALL'; exit 0;; esac; done\necho 'E: cannot reach the mirror' >&2\nexit 25\n"
	if err := os.WriteFile(filepath.Join(dir, "mmdebstrap"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	s, err := Open(context.Background(), Source{Kind: KindDistribution, Distribution: "debian", Suite: "bookworm"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	s.Close()
	if err != nil || string(got) != "TARBALL" {
		t.Errorf("a build that works: %q, %v", got, err)
	}
	s, err = Open(context.Background(), Source{Kind: KindDistribution, Distribution: "debian", Suite: "trixie"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(s)
	s.Close()
	if err == nil || !strings.Contains(err.Error(), "cannot reach the mirror") || !strings.Contains(err.Error(), "25") {
		t.Errorf("a build that fails: %v, want its exit status and message", err)
	}
}

func TestList(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var images int
	for _, e := range List() {
		switch e.Kind {
		case KindDistribution:
			if e.Available || !strings.Contains(e.Why, "mmdebstrap is not installed") {
				t.Errorf("without mmdebstrap: %+v", e)
			}
		case KindOCI:
			// Pulled, not built: mmdebstrap does not matter, and each
			// suggestion installs as an image (not as a catalog release).
			images++
			if src, err := Parse(e.Source); !e.Available || err != nil || src.Kind != KindOCI {
				t.Errorf("suggested image %+v: Parse = %+v, %v", e, src, err)
			}
		default:
			t.Errorf("entry of kind %q: %+v", e.Kind, e)
		}
	}
	if got := len(List()); got != len(releases)+len(suggestions) || images != len(suggestions) {
		t.Errorf("List has %d entries (%d images), want %d releases and %d images", got, images, len(releases), len(suggestions))
	}
}

// FuzzParse: any string parses or fails with ErrInvalid; what parses has a
// kind, and a default name of at most 64 characters.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "debian:bookworm", "https://a/b.tar.gz", "/srv/r.tar", "a:b", "http://[::1]:80/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q): %v is not ErrInvalid", s, err)
			}
			return
		}
		if src.Kind == "" || len(src.DefaultName()) > 64 {
			t.Fatalf("Parse(%q) = %+v (name %q)", s, src, src.DefaultName())
		}
	})
}

// TestFinish: a reader that stopped early (as tar readers do at the end
// marker) still learns the checksum's verdict from Finish, and too much
// left over is an error.
func TestFinish(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	big := filepath.Join(dir, "big")
	os.WriteFile(small, []byte(strings.Repeat("x", 4096)), 0o600)
	os.WriteFile(big, make([]byte, 3<<20), 0o600)
	s, err := Open(context.Background(), Source{Kind: KindPath, Path: small}, Options{SHA256: strings.Repeat("0", 64)})
	if err != nil {
		t.Fatal(err)
	}
	s.Read(make([]byte, 100))
	if err := s.Finish(); !errors.Is(err, ErrChecksum) {
		t.Errorf("Finish after a partial read of a file with the wrong checksum: %v", err)
	}
	s.Close()
	s, err = Open(context.Background(), Source{Kind: KindPath, Path: big}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Read(make([]byte, 100))
	if err := s.Finish(); !errors.Is(err, ErrInvalid) {
		t.Errorf("Finish with 3 MiB left: %v", err)
	}
	s.Close()
}
