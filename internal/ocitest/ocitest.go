// Package ocitest builds OCI images from lists of tar entries and serves
// them from an in-process registry on 127.0.0.1, for the tests of installs
// from images (vmm/catalog, e2e): real layers, real manifests and a real
// registry protocol, nothing from the network.
package ocitest

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Entry is one tar entry of a layer. Type is a tar type flag
// (tar.TypeReg when zero); Body is a file's data, Link a link's target.
type Entry struct {
	Name string
	Type byte
	Body string
	Link string
	Mode int64
}

// File, Dir, Symlink and Hardlink are entries.
func File(name, body string) Entry { return Entry{Name: name, Type: tar.TypeReg, Body: body} }

// Dir is a directory entry.
func Dir(name string) Entry { return Entry{Name: name, Type: tar.TypeDir} }

// Symlink is a symbolic link entry.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Link: target}
}

// Hardlink is a hard link entry.
func Hardlink(name, target string) Entry { return Entry{Name: name, Type: tar.TypeLink, Link: target} }

// Tar writes entries as an uncompressed tar.
func Tar(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Linkname: e.Link, Mode: e.Mode, ModTime: time.Unix(1700000000, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.Body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layer is a gzip-compressed layer of entries.
func Layer(t testing.TB, entries ...Entry) v1.Layer {
	t.Helper()
	return LayerOf(t, Tar(t, entries...))
}

// LayerOf is a gzip-compressed layer of a tar.
func LayerOf(t testing.TB, tarBytes []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarBytes)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// PlainLayer is an uncompressed layer of entries: its blob is the tar
// itself, so a changed byte is caught by nothing but the digest.
func PlainLayer(t testing.TB, entries ...Entry) v1.Layer {
	return static.NewLayer(Tar(t, entries...), types.OCIUncompressedLayer)
}

// Image is an image of layers (bottom first) for linux/arch.
func Image(t testing.TB, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// WithUser is img with its config's User set ("app", "1000:1000").
func WithUser(t testing.TB, img v1.Image, user string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.User = user
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Index is an image index of images, one per platform.
func Index(t testing.TB, images map[string]v1.Image) v1.ImageIndex {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	for arch, img := range images {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return idx
}

// Registry is an in-process registry on 127.0.0.1, over plain http.
type Registry struct {
	// Host is "127.0.0.1:PORT", the start of a reference to its images.
	Host string
	srv  *httptest.Server
	// Intercept, when set, may answer a request instead of the registry
	// (to serve a tampered blob, or stall); it returns false to pass.
	Intercept func(w http.ResponseWriter, r *http.Request) bool
}

// Serve starts a registry, stopped at the test's end.
func Serve(t testing.TB) *Registry {
	t.Helper()
	reg := &Registry{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	reg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := reg.Intercept; f != nil && f(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(reg.srv.Close)
	reg.Host = strings.TrimPrefix(reg.srv.URL, "http://")
	return reg
}

// Close stops the registry before the test's end.
func (reg *Registry) Close() { reg.srv.Close() }

// Push stores img as repo:tag ("test/img:1") and returns its reference.
func (reg *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref := reg.Host + "/" + repoTag
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// PushIndex stores idx as repo:tag and returns its reference.
func (reg *Registry) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref := reg.Host + "/" + repoTag
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	return ref
}
