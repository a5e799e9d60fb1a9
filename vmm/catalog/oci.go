package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// KindOCI is an OCI (Docker) image pulled from a registry, its layers
// flattened into one root file system tarball.
const KindOCI = "oci"

// Prefixes that make a source an OCI image reference whatever else it
// looks like: "oci:debian:bookworm" is Docker Hub's debian image, not the
// release the catalog builds.
const (
	ociPrefix    = "oci:"
	dockerPrefix = "docker://"
)

// suggestion is an OCI image GET /catalog suggests.
type suggestion struct {
	ref, distribution, tag, title string
}

// suggestions are well-known images from Docker Hub; any other reference
// works as well.
var suggestions = []suggestion{
	{"alpine:3.20", "alpine", "3.20", "Alpine Linux 3.20 (OCI image)"},
	{"ubuntu:24.04", "ubuntu", "24.04", "Ubuntu 24.04 LTS (OCI image)"},
	{"fedora:41", "fedora", "41", "Fedora 41 (OCI image)"},
}

// parseOCI reads an image reference: "alpine:3.20",
// "docker.io/library/alpine:3.20", "HOST[:PORT]/org/image:tag",
// "…@sha256:…". A registry on the loopback interface is reached over plain
// http (a test registry, or a local mirror); any other only over https.
func parseOCI(s string) (Source, error) {
	ref, err := ociReference(s)
	if err != nil {
		return Source{}, err
	}
	return Source{Kind: KindOCI, Image: ref.Name()}, nil
}

// ociReference parses s, insecure (plain http) only for a loopback
// registry.
func ociReference(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err == nil && strings.Contains(s, "://") {
		// go-containerregistry reads "ftp://host/x" as an image on a
		// registry named "ftp".
		err = errors.New("a reference has no scheme")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %q: want a release (%s), an OCI image reference (alpine:3.20, HOST/org/image:tag), an https:// URL or an absolute path: %v",
			ErrInvalid, s, strings.Join(Names(), ", "), err)
	}
	if loopback(ref.Context().RegistryStr()) {
		return name.ParseReference(s, name.Insecure)
	}
	return ref, nil
}

// loopback reports whether host (with or without a port) is this machine:
// localhost, 127.0.0.0/8 or ::1.
func loopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpsOnly refuses every plain http request but to the loopback
// interface: go-containerregistry would also fall back to http for private
// (RFC 1918) addresses and .local names, where anyone on the network could
// answer in the registry's place.
type httpsOnly struct{ next http.RoundTripper }

func (t httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !loopback(req.URL.Host) {
		return nil, fmt.Errorf("%w: refusing plain %s to %s: only a registry on localhost is reached without TLS", ErrInvalid, req.URL.Scheme, req.URL.Host)
	}
	return t.next.RoundTrip(req)
}

// hostPlatform is the platform an image index is resolved for: this
// host's architecture (Go's names are OCI's).
func hostPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = "v7"
	}
	return p
}

// transportForPull is the HTTP transport of a pull: go-containerregistry's
// default (proxies from the environment, timeouts on dial and TLS), with
// a bound on the wait for response headers, https only but to localhost.
func transportForPull() http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = downloadTimeout
	return httpsOnly{t}
}

// pullOCI resolves src's image (an index to this host's platform) and
// returns a stream of its layers flattened into one tarball. Credentials
// come from the Docker configuration the server sees ($DOCKER_CONFIG, or
// ~/.docker/config.json, with its credential helpers), anonymous without
// one. Everything the pull does stops when ctx ends or the stream is closed.
func pullOCI(ctx context.Context, src Source) (*Stream, error) {
	ref, err := ociReference(src.Image)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(hostPlatform()), remote.WithTransport(transportForPull()))
	if err != nil {
		cancel()
		err = pullErr(ref, err)
		if errors.Is(err, ErrInvalid) {
			return nil, err
		}
		// A registry that cannot be reached now is no mistake of the
		// request: the install starts and fails with the reason, as a
		// download that breaks off does.
		return &Stream{r: failedReader{err}, stop: func() error { return nil }}, nil
	}
	// An index was resolved to this platform; a lone image says its own
	// in its config, which must not be another's (an arm64 root file
	// system does not run here).
	cf, err := img.ConfigFile()
	if err != nil {
		cancel()
		return nil, pullErr(ref, err)
	}
	if p := hostPlatform(); (cf.OS != "" && cf.OS != p.OS) || (cf.Architecture != "" && cf.Architecture != p.Architecture) {
		cancel()
		return nil, fmt.Errorf("%w: pull %s: the image is for %s/%s, not this host's %s/%s", ErrInvalid, ref.Name(), cf.OS, cf.Architecture, p.OS, p.Architecture)
	}
	layers, err := img.Layers()
	if err != nil {
		cancel()
		return nil, pullErr(ref, err)
	}
	var total int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			cancel()
			return nil, pullErr(ref, err)
		}
		total += n
	}
	p := &ociPull{ctx: ctx, cancel: cancel, layers: layers, total: total, done: make(chan struct{}), configUser: cf.Config.User}
	return &Stream{Size: total, r: p, stop: p.Close, watch: p.setWatch, user: p.user}, nil
}

// pullErr says what failed; a registry's "no such image" or "not allowed"
// (also what Docker Hub answers an anonymous pull of an image that does
// not exist) and an index without this host's platform are the caller's
// mistake (ErrInvalid), a network failure is not.
func pullErr(ref name.Reference, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode >= 400 && terr.StatusCode < 500 {
		return fmt.Errorf("%w: pull %s: %v", ErrInvalid, ref.Name(), err)
	}
	if strings.Contains(err.Error(), "no child with platform") {
		return fmt.Errorf("%w: pull %s: no image for %s/%s in its index", ErrInvalid, ref.Name(), hostPlatform().OS, hostPlatform().Architecture)
	}
	return fmt.Errorf("pull %s: %w", ref.Name(), err)
}

// failedReader fails every Read with err.
type failedReader struct{ err error }

func (f failedReader) Read([]byte) (int, error) { return 0, f.err }

// errPullClosed is what a read of a closed pull returns.
var errPullClosed = errors.New("image pull stopped")

// ociPull is an image's flattened tarball. The pull starts at the first
// Read, in a goroutine that writes into a pipe; Close stops it and waits.
type ociPull struct {
	ctx    context.Context
	cancel context.CancelFunc
	layers []v1.Layer
	total  int64
	done   chan struct{}

	// configUser is the image config's User ("app", "1000:1000").
	configUser string

	mu     sync.Mutex
	pr     *io.PipeReader
	closed bool
	watch  func(done, total int64, message string)
	// passwd is the image's /etc/passwd, once flattened.
	passwd []byte
}

// user is the image config's user as a name the image's /etc/passwd has,
// once the pull has ended; "" when it names none.
func (p *ociPull) user() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return passwdUser(p.configUser, p.passwd)
}

// passwdUser resolves a config's User ("name", "uid", "name:group",
// "uid:gid") to a name in passwd, or "" when passwd has no such user.
func passwdUser(user string, passwd []byte) string {
	user, _, _ = strings.Cut(user, ":")
	if user == "" {
		return ""
	}
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 || f[0] == "" {
			continue
		}
		if f[0] == user || f[2] == user {
			return f[0]
		}
	}
	return ""
}

func (p *ociPull) setWatch(fn func(done, total int64, message string)) {
	p.mu.Lock()
	p.watch = fn
	p.mu.Unlock()
}

func (p *ociPull) report(done int64, message string) {
	p.mu.Lock()
	fn := p.watch
	p.mu.Unlock()
	if fn != nil {
		fn(done, p.total, message)
	}
}

func (p *ociPull) Read(b []byte) (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, errPullClosed
	}
	if p.pr == nil {
		pr, pw := io.Pipe()
		p.pr = pr
		go func() {
			defer close(p.done)
			var read int64
			passwd, err := flattenImage(p.ctx, p.layers, pw, func(i int, n int64) {
				read += n
				p.report(read, fmt.Sprintf("layer %d of %d", i+1, len(p.layers)))
			})
			if err == nil {
				p.mu.Lock()
				p.passwd = passwd
				p.mu.Unlock()
			}
			pw.CloseWithError(err)
		}()
	}
	pr := p.pr
	p.mu.Unlock()
	return pr.Read(b)
}

// Close stops the pull and waits for its goroutine.
func (p *ociPull) Close() error {
	p.mu.Lock()
	p.closed = true
	pr := p.pr
	p.mu.Unlock()
	p.cancel()
	if pr != nil {
		pr.CloseWithError(errPullClosed)
		<-p.done
	}
	return nil
}
