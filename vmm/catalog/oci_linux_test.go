package catalog

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/subsys-dev/subsys/internal/ocitest"
	"github.com/subsys-dev/subsys/vmm/archive"
)

// install pulls ref as Install does (Open, the import's extraction, then
// Finish) into a fresh directory under a parent of its own, and returns
// both: a test can then check that nothing was written beside dest.
func install(t *testing.T, ref string) (dest, parent string, err error) {
	t.Helper()
	parent = t.TempDir()
	dest = filepath.Join(parent, "root")
	if err := os.Mkdir(dest, 0o700); err != nil {
		t.Fatal(err)
	}
	src, err := Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	if src.Kind != KindOCI {
		t.Fatalf("Parse(%q) = %+v, want an image", ref, src)
	}
	s, err := Open(context.Background(), src, Options{})
	if err != nil {
		return dest, parent, err
	}
	defer s.Close()
	if _, err := archive.Extract(context.Background(), s, dest, archive.Limits{}); err != nil {
		return dest, parent, err
	}
	return dest, parent, s.Finish()
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOCILayersApplyInOrder(t *testing.T) {
	reg := ocitest.Serve(t)
	f, d, hl := ocitest.File, ocitest.Dir, ocitest.Hardlink
	img := ocitest.Image(t, runtime.GOARCH,
		ocitest.Layer(t,
			d("etc/"), f("etc/keep", "1"), f("etc/gone", "x"),
			d("opq/"), f("opq/lower", "l"), d("opq/sub/"), f("opq/sub/deep", "l"),
			f("f2d", "a file"),
			d("d2f/"), f("d2f/inner", "x"),
			d("usr/"), d("usr/bin/"), f("usr/bin/tool", "tool-data"),
			d("dirgone/"), d("dirgone/a/"), f("dirgone/a/b", "x"),
			d("data/"), f("data/orig", "orig"), f("data/del", "del-data"), f("data/same", "same-layer"), ocitest.Hardlink("data/same-link", "data/same"),
			// Hard links within this layer to files a layer above deletes
			// or replaces: the links keep this layer's data.
			f("data/pair", "pair-data"), hl("data/pair-link", "data/pair"), hl("data/pair-link2", "data/pair"),
			f("data/swap", "old"), hl("data/swap-link", "data/swap"),
		),
		ocitest.Layer(t,
			f("etc/.wh.gone", ""), f("etc/keep", "2"),
			f("opq/.wh..wh..opq", ""), f("opq/upper", "u"),
			d("f2d/"), f("f2d/child", "c"),
			f("d2f", "now a file"),
			hl("usr/bin/tool-link", "usr/bin/tool"),
			f(".wh.dirgone", ""),
			hl("data/link", "data/orig"), hl("data/del-link", "data/del"),
		),
		ocitest.Layer(t,
			f("data/orig", "replaced"), f("data/.wh.del", ""), f("data/.wh.pair", ""), f("data/swap", "new"),
			// A directory back where one was deleted: only what this
			// layer puts in it shows.
			d("dirgone/"), f("dirgone/new", "n"),
		),
	)
	ref := reg.Push(t, "test/layers:1", img)

	var mu sync.Mutex
	var last struct {
		done, total int64
		msg         string
	}
	src, _ := Parse(ref)
	s, err := Open(context.Background(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.WatchProgress(func(done, total int64, msg string) {
		mu.Lock()
		last.done, last.total, last.msg = done, total, msg
		mu.Unlock()
	}) {
		t.Fatal("an image stream does not report its own progress")
	}
	dest := t.TempDir()
	if _, err := archive.Extract(context.Background(), s, dest, archive.Limits{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	var sum int64
	layers, _ := img.Layers()
	for _, l := range layers {
		n, _ := l.Size()
		sum += n
	}
	mu.Lock()
	if last.done != sum || last.total != sum || last.msg != "layer 3 of 3" || s.Size != sum {
		t.Errorf("progress at the end = %+v (stream size %d), want %d of %d, \"layer 3 of 3\"", last, s.Size, sum, sum)
	}
	mu.Unlock()

	for _, c := range []struct{ path, want string }{
		{"etc/keep", "2"},
		{"opq/upper", "u"},
		{"f2d/child", "c"},
		{"d2f", "now a file"},
		{"usr/bin/tool", "tool-data"},
		{"usr/bin/tool-link", "tool-data"},
		{"dirgone/new", "n"},
		// A link above to a file a layer further above replaced keeps
		// the data it linked; one to a file deleted above keeps it too.
		{"data/link", "orig"},
		{"data/orig", "replaced"},
		{"data/del-link", "del-data"},
		{"data/same-link", "same-layer"},
		{"data/pair-link", "pair-data"},
		{"data/pair-link2", "pair-data"},
		{"data/swap-link", "old"},
		{"data/swap", "new"},
	} {
		if got := readFile(t, filepath.Join(dest, c.path)); got != c.want {
			t.Errorf("%s = %q, want %q", c.path, got, c.want)
		}
	}
	for _, gone := range []string{"etc/gone", "opq/lower", "opq/sub", "d2f/inner", "dirgone/a", "data/del", "data/pair", "etc/.wh.gone", "opq/.wh..wh..opq", ".wh.dirgone"} {
		if _, err := os.Lstat(filepath.Join(dest, gone)); !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("%s: %v, want it gone", gone, err)
		}
	}
	var a, b syscall.Stat_t
	if syscall.Stat(filepath.Join(dest, "usr/bin/tool"), &a) != nil || syscall.Stat(filepath.Join(dest, "usr/bin/tool-link"), &b) != nil || a.Ino != b.Ino {
		t.Errorf("usr/bin/tool-link is not a hard link of usr/bin/tool (inodes %d, %d)", a.Ino, b.Ino)
	}
	if syscall.Stat(filepath.Join(dest, "data/pair-link"), &a) != nil || syscall.Stat(filepath.Join(dest, "data/pair-link2"), &b) != nil || a.Ino != b.Ino {
		t.Errorf("data/pair-link2 is not a hard link of data/pair-link (inodes %d, %d)", a.Ino, b.Ino)
	}
	if st, err := os.Stat(filepath.Join(dest, "f2d")); err != nil || !st.IsDir() {
		t.Errorf("f2d: %v, want a directory", err)
	}
}

func TestOCIIndexPicksHostPlatform(t *testing.T) {
	reg := ocitest.Serve(t)
	images := map[string]v1.Image{}
	for _, arch := range []string{"arm64", "amd64", "s390x", "riscv64"} {
		images[arch] = ocitest.Image(t, arch, ocitest.Layer(t, ocitest.File("arch", arch)))
	}
	ref := reg.PushIndex(t, "test/multi:1", ocitest.Index(t, images))
	dest, _, err := install(t, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dest, "arch")); got != runtime.GOARCH {
		t.Errorf("pulled the %s image, want this host's %s", got, runtime.GOARCH)
	}

	delete(images, runtime.GOARCH)
	other := reg.PushIndex(t, "test/foreign:1", ocitest.Index(t, images))
	if _, _, err := install(t, other); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no image for linux/"+runtime.GOARCH) {
		t.Errorf("an index without %s: %v, want ErrInvalid naming the platform", runtime.GOARCH, err)
	}
	// A lone image (no index) of another architecture.
	lone := reg.Push(t, "test/lone:1", images["s390x"])
	if _, _, err := install(t, lone); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "for linux/s390x") {
		t.Errorf("a lone s390x image: %v, want ErrInvalid naming its platform", err)
	}
}

func TestOCIDigestReference(t *testing.T) {
	reg := ocitest.Serve(t)
	img := ocitest.Image(t, runtime.GOARCH, ocitest.Layer(t, ocitest.File("hello", "by digest")))
	ref := reg.Push(t, "test/dig:1", img)
	dg, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	byDigest := strings.TrimSuffix(ref, ":1") + "@" + dg.String()
	dest, _, err := install(t, byDigest)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dest, "hello")); got != "by digest" {
		t.Errorf("hello = %q", got)
	}
	// Names the registry does not have are the caller's mistake, known
	// before anything is read.
	for _, missing := range []string{
		strings.TrimSuffix(ref, ":1") + "@sha256:" + strings.Repeat("0", 64),
		strings.TrimSuffix(ref, ":1") + ":nope",
		reg.Host + "/test/none:1",
	} {
		if _, _, err := install(t, missing); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", missing, err)
		}
	}
}

// TestOCIHostileLayers: a layer is as untrusted as an upload; what the
// extraction refuses in a tarball it refuses in a flattened image, and
// nothing lands outside the distro's directory.
func TestOCIHostileLayers(t *testing.T) {
	reg := ocitest.Serve(t)
	f := ocitest.File
	for i, tc := range []struct {
		name    string
		entries []ocitest.Entry
		// outside is where the attack would write, relative to the
		// parent of the distro's directory, or absolute.
		outside string
	}{
		{"dot-dot", []ocitest.Entry{f("../../evil", "x")}, "evil"},
		{"dot-dot deep", []ocitest.Entry{f("a/../../evil", "x")}, "evil"},
		{"absolute symlink then a write through it", []ocitest.Entry{ocitest.Symlink("etc", "/tmp/subsys-oci-evil"), f("etc/passwd", "x")}, "/tmp/subsys-oci-evil/passwd"},
		{"relative symlink out then a write through it", []ocitest.Entry{ocitest.Symlink("up", ".."), f("up/evil", "x")}, "evil"},
		{"hardlink to the host's shadow", []ocitest.Entry{ocitest.Hardlink("shadow", "/etc/shadow")}, ""},
		{"hardlink out", []ocitest.Entry{ocitest.Hardlink("shadow", "../../../../etc/shadow")}, ""},
		{"whiteout of the parent", []ocitest.Entry{f(".wh...", ""), f("ok", "x")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.RemoveAll("/tmp/subsys-oci-evil")
			os.MkdirAll("/tmp/subsys-oci-evil", 0o755)
			t.Cleanup(func() { os.RemoveAll("/tmp/subsys-oci-evil") })
			img := ocitest.Image(t, runtime.GOARCH,
				ocitest.Layer(t, f("base", "b")),
				ocitest.Layer(t, tc.entries...))
			ref := reg.Push(t, fmt.Sprintf("test/hostile:%d", i), img)
			dest, parent, err := install(t, ref)
			t.Logf("install: %v", err)
			if tc.outside != "" {
				p := tc.outside
				if !filepath.IsAbs(p) {
					p = filepath.Join(parent, p)
				}
				if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s written outside the distro: %v", p, err)
				}
			}
			names, _ := os.ReadDir(parent)
			if len(names) != 1 || names[0].Name() != "root" {
				t.Errorf("beside the distro's directory: %v", names)
			}
			if err == nil {
				// Neutralised rather than refused: what is inside is no
				// link to the host's files.
				var st, shadow syscall.Stat_t
				if syscall.Stat(filepath.Join(dest, "shadow"), &st) == nil && syscall.Stat("/etc/shadow", &shadow) == nil && st.Ino == shadow.Ino && st.Dev == shadow.Dev {
					t.Error("shadow is the host's /etc/shadow")
				}
			}
		})
	}
}

// TestOCITamperedBlob: a registry that serves other bytes than the
// manifest's digest fails the pull.
func TestOCITamperedBlob(t *testing.T) {
	reg := ocitest.Serve(t)
	// Uncompressed, so that only the digest can tell: a changed byte of
	// a file's data is still a well-formed tar.
	layer := ocitest.PlainLayer(t, ocitest.File("motd", "hello, world"))
	img := ocitest.Image(t, runtime.GOARCH, layer)
	ref := reg.Push(t, "test/tampered:1", img)
	dg, _ := layer.Digest()
	blob, _ := layer.Compressed()
	good, _ := io.ReadAll(blob)
	bad := []byte(strings.Replace(string(good), "hello, world", "HELLO, WORLD", 1))
	var served bool
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+dg.String()) {
			served = true
			w.Write(bad)
			return true
		}
		return false
	}
	_, _, err := install(t, ref)
	if !served {
		t.Fatal("the tampered blob was never asked for")
	}
	if err == nil || !strings.Contains(err.Error(), "error verifying sha256 checksum") {
		t.Errorf("install of a tampered layer: %v, want a digest mismatch", err)
	}
}

// TestOCICloseStopsPull: closing the stream (the operation's cancel)
// stops a pull stuck on a registry that does not answer.
func TestOCICloseStopsPull(t *testing.T) {
	reg := ocitest.Serve(t)
	layer := ocitest.Layer(t, ocitest.File("a", "b"))
	ref := reg.Push(t, "test/stall:1", ocitest.Image(t, runtime.GOARCH, layer))
	dg, _ := layer.Digest()
	asked := make(chan struct{}, 1)
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/blobs/"+dg.String()) {
			asked <- struct{}{}
			<-r.Context().Done()
			return true
		}
		return false
	}
	src, _ := Parse(ref)
	s, err := Open(context.Background(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, s)
		read <- err
	}()
	select {
	case <-asked:
	case <-time.After(30 * time.Second):
		t.Fatal("the pull never asked for its layer")
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	for _, c := range []chan struct{}{closed} {
		select {
		case <-c:
		case <-time.After(30 * time.Second):
			t.Fatal("Close did not stop the pull")
		}
	}
	if err := <-read; err == nil {
		t.Error("a read of a stopped pull succeeded")
	}
}

// TestOCIUnreachableRegistry: a registry that does not answer is no
// mistake of the request: the stream starts and its first Read fails with
// the reason (the install's operation fails, and says why).
func TestOCIUnreachableRegistry(t *testing.T) {
	reg := ocitest.Serve(t)
	host := reg.Host
	reg.Close()
	src, err := Parse(host + "/test/gone:1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), src, Options{})
	if err != nil {
		t.Fatalf("Open of an image on a registry that is down: %v, want a stream that fails", err)
	}
	defer s.Close()
	if _, err := io.ReadAll(s); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("read of a pull from a registry that is down: %v, want connection refused", err)
	}
}

func TestOCIPlainHTTPOnlyToLoopback(t *testing.T) {
	for _, c := range []struct {
		host string
		want bool
	}{
		{"localhost", true}, {"localhost:5000", true}, {"127.0.0.1:5000", true}, {"127.1.2.3", true}, {"[::1]:5000", true},
		{"10.0.0.1:5000", false}, {"192.168.1.1", false}, {"registry.local", false}, {"example.org", false}, {"127.0.0.1.nip.io", false}, {"localhost.example.org:5000", false},
	} {
		if got := loopback(c.host); got != c.want {
			t.Errorf("loopback(%q) = %v, want %v", c.host, got, c.want)
		}
	}
	// go-containerregistry itself would try http on a private address;
	// the transport refuses before anything is sent.
	var sent bool
	rt := httpsOnly{roundTripFunc(func(*http.Request) (*http.Response, error) { sent = true; return nil, errors.New("sent") })}
	for _, u := range []string{"http://10.0.0.1:5000/v2/", "http://registry.local/v2/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if _, err := rt.RoundTrip(req); !errors.Is(err, ErrInvalid) || sent {
			t.Errorf("plain http to %s: %v (sent %v), want ErrInvalid, nothing sent", u, err, sent)
		}
	}
	// The positive: the same transport passes https and loopback http on.
	for _, u := range []string{"https://10.0.0.1:5000/v2/", "http://127.0.0.1:5000/v2/"} {
		sent = false
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if rt.RoundTrip(req); !sent {
			t.Errorf("%s was not sent", u)
		}
	}
	src, err := Parse("10.0.0.1:5000/test/img:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), src, Options{}); err == nil || !strings.Contains(err.Error(), "refusing plain http") {
		// go-containerregistry tries https first; on a host where
		// 10.0.0.1:5000 does not answer at all that fails first.
		t.Logf("pull from a private address: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzFlatten feeds two arbitrary layers to the flattener: it may refuse
// them, but must not panic, and what it writes must be a tar.
func FuzzFlatten(f *testing.F) {
	f.Add(ocitest.Tar(f, ocitest.File("a/b", "x"), ocitest.Hardlink("c", "a/b")), ocitest.Tar(f, ocitest.File("a/.wh..wh..opq", ""), ocitest.Hardlink("d", "a/b"), ocitest.File(".wh.c", "")))
	f.Add([]byte("not a tar"), []byte{})
	f.Fuzz(func(t *testing.T, lower, upper []byte) {
		layers := []v1.Layer{static.NewLayer(lower, types.OCIUncompressedLayer), static.NewLayer(upper, types.OCIUncompressedLayer)}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(flatten(context.Background(), layers, pw, func(int, int64) {})) }()
		tr := tar.NewReader(pr)
		for {
			if _, err := tr.Next(); err != nil {
				pr.CloseWithError(err)
				break
			}
		}
	})
}

// TestOCIAuthFromDockerConfig: the pull answers a registry's challenge
// with the credentials of the Docker configuration the server sees
// ($DOCKER_CONFIG here, ~/.docker otherwise), and without them the
// registry's 401 is the caller's mistake.
func TestOCIAuthFromDockerConfig(t *testing.T) {
	reg := ocitest.Serve(t)
	ref := reg.Push(t, "private/img:1", ocitest.Image(t, runtime.GOARCH, ocitest.Layer(t, ocitest.File("secret", "s"))))
	const user, pass = "alice", "s3cret"
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	var authorized int
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}`, http.StatusUnauthorized)
			return true
		}
		authorized++
		return false
	}

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, _, err := install(t, ref); !errors.Is(err, ErrInvalid) || authorized != 0 {
		t.Fatalf("a pull without credentials: %v (%d requests authorized), want ErrInvalid", err, authorized)
	}

	dir := t.TempDir()
	config := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	dest, _, err := install(t, ref)
	if err != nil {
		t.Fatalf("a pull with the credentials of $DOCKER_CONFIG: %v", err)
	}
	if got := readFile(t, filepath.Join(dest, "secret")); got != "s" || authorized == 0 {
		t.Errorf("secret = %q after %d authorized requests", got, authorized)
	}
}

func TestPasswdUser(t *testing.T) {
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n\n:x:7:7::/:/bin/sh\nbroken\n")
	for _, c := range []struct{ user, want string }{
		{"alice", "alice"}, {"1000", "alice"}, {"alice:staff", "alice"}, {"1000:1000", "alice"}, {"0", "root"},
		{"", ""}, {":1000", ""}, {"bob", ""}, {"7", ""}, {"broken", ""}, {"1001", ""},
	} {
		if got := passwdUser(c.user, passwd); got != c.want {
			t.Errorf("passwdUser(%q) = %q, want %q", c.user, got, c.want)
		}
	}
}

// TestOCIImageUser: an image config's User that the image's (top-most)
// /etc/passwd has is the stream's DefaultUser, by name; one it does not
// have is none.
func TestOCIImageUser(t *testing.T) {
	reg := ocitest.Serve(t)
	base := ocitest.Layer(t, ocitest.Dir("etc/"), ocitest.File("etc/passwd", "root:x:0:0::/root:/bin/sh\nold:x:1001:1001::/:/bin/sh\n"))
	top := ocitest.Layer(t, ocitest.File("etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1001:1001::/:/bin/sh\n"))
	for _, c := range []struct{ user, want string }{{"1001:1001", "app"}, {"app", "app"}, {"old", ""}, {"", ""}} {
		ref := reg.Push(t, "test/user:"+strings.NewReplacer(":", "-").Replace(c.user)+"x", ocitest.WithUser(t, ocitest.Image(t, runtime.GOARCH, base, top), c.user))
		src, _ := Parse(ref)
		s, err := Open(context.Background(), src, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := archive.Extract(context.Background(), s, t.TempDir(), archive.Limits{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(); err != nil {
			t.Fatal(err)
		}
		if got := s.DefaultUser(); got != c.want {
			t.Errorf("config User %q: DefaultUser = %q, want %q", c.user, got, c.want)
		}
		s.Close()
	}
}
