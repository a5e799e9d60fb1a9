package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// mmdebstrap is the program that builds a release's root file system.
const mmdebstrap = "mmdebstrap"

// Variants are mmdebstrap's variants an install may ask for; "" is minbase.
var Variants = []string{"minbase", "buildd", "important", "standard"}

// packageName is Debian's rule for package names (Policy 5.6.1), also
// what keeps an --include from being read as an option.
var packageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{1,99}$`)

// sha256Hex is a SHA-256 in hex.
var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ErrChecksum is wrapped when a tarball's SHA-256 is not the one asked for.
var ErrChecksum = errors.New("checksum mismatch")

// Options are the choices of an install besides its source.
type Options struct {
	// Variant is mmdebstrap's variant for a release; "" means minbase.
	Variant string
	// Include are more packages for a release.
	Include []string
	// Mirror is the release's mirror, overriding the catalog's (and
	// mmdebstrap's default, which is Debian's); "" for the default.
	Mirror string
	// SHA256 pins a tarball (URL or path) to its hex SHA-256.
	SHA256 string
}

// Check says what is wrong with opts for src, if anything.
func (o Options) Check(src Source) error {
	if src.Kind == KindDistribution {
		if o.SHA256 != "" {
			return fmt.Errorf("%w: a checksum applies to a tarball; %s is built here", ErrInvalid, src)
		}
	} else if o.Variant != "" || len(o.Include) > 0 || o.Mirror != "" {
		if src.Kind == KindOCI {
			return fmt.Errorf("%w: variant, include and mirror apply to a release built here (%s), not to an image", ErrInvalid, strings.Join(Names(), ", "))
		}
		return fmt.Errorf("%w: variant, include and mirror apply to a release built here (%s), not to a tarball", ErrInvalid, strings.Join(Names(), ", "))
	}
	if o.Variant != "" && !slices.Contains(Variants, o.Variant) {
		return fmt.Errorf("%w: variant %q: use one of %s", ErrInvalid, o.Variant, strings.Join(Variants, ", "))
	}
	for _, p := range o.Include {
		if !packageName.MatchString(p) {
			return fmt.Errorf("%w: %q is not a package name", ErrInvalid, p)
		}
	}
	if o.Mirror != "" {
		if !(strings.HasPrefix(o.Mirror, "http://") || strings.HasPrefix(o.Mirror, "https://") || strings.HasPrefix(o.Mirror, "file:///")) || strings.ContainsAny(o.Mirror, " \t\n") {
			return fmt.Errorf("%w: mirror %q: want an http(s):// or file:/// URL", ErrInvalid, o.Mirror)
		}
	}
	if src.Kind == KindOCI && o.SHA256 != "" {
		return fmt.Errorf("%w: an image is pinned by its digest (IMAGE@sha256:…), not by a sha256 option", ErrInvalid)
	}
	if o.SHA256 != "" && !sha256Hex.MatchString(o.SHA256) {
		return fmt.Errorf("%w: sha256 %q: want 64 lowercase hex digits", ErrInvalid, o.SHA256)
	}
	if src.Kind == KindURL && strings.HasPrefix(src.URL, "http://") && o.SHA256 == "" {
		return fmt.Errorf("%w: %s is plain http, which anyone on the way can change: use https, or pin it with its sha256", ErrInvalid, src.URL)
	}
	return nil
}

// check says why the host cannot build r, or nil.
func (r release) check(mmErr error) error {
	if mmErr != nil {
		return fmt.Errorf("%w: mmdebstrap is not installed (Debian package mmdebstrap)", ErrUnavailable)
	}
	if _, err := os.Stat(r.keyring); err != nil {
		pkg := r.distribution + "-archive-keyring"
		if r.distribution == "ubuntu" {
			pkg = "ubuntu-keyring"
		}
		return fmt.Errorf("%w: %s's keyring %s is missing (Debian package %s)", ErrUnavailable, r.title, r.keyring, pkg)
	}
	return nil
}

// Stream is a root file system tarball being produced or fetched. Read it
// to the end: only then are a build's exit status and a download's
// checksum known, and a failure of either is the last Read's error. Close
// stops what has not finished.
type Stream struct {
	// Size is the tarball's length when known (a download's
	// Content-Length, a file's size), else 0.
	Size int64
	r    io.Reader
	stop func() error
	// watch, when set, registers the stream's own measure of progress.
	watch func(func(done, total int64, message string))
	// user, when set, is the user the source names (DefaultUser).
	user func() string
}

// DefaultUser is the user the source names for its distro, once it has
// been read to its end: an image config's User that the image's
// /etc/passwd has (as a name; a uid is looked up). "" when there is none,
// and for every source but an image. Untrusted: a name from the image.
func (s *Stream) DefaultUser() string {
	if s.user == nil {
		return ""
	}
	return s.user()
}

// WatchProgress registers fn to hear the stream's own progress, for a
// stream that measures it better than by the tarball's bytes (an image
// pull counts its layers' compressed bytes against their sum and says
// which layer it reads), and reports whether it does; a false means the
// reader should count what it reads. Call it before the first Read.
func (s *Stream) WatchProgress(fn func(done, total int64, message string)) bool {
	if s.watch == nil {
		return false
	}
	s.watch(fn)
	return true
}

// Read reads the tarball.
func (s *Stream) Read(p []byte) (int, error) { return s.r.Read(p) }

// Close stops the build or download and releases it.
func (s *Stream) Close() error { return s.stop() }

// maxTrailing bounds what Finish reads past the tarball's end: a tar
// writer pads to a record (10 KiB); more than this is no tarball's.
const maxTrailing = 1 << 20

// Finish reads what is left after the archive's end (a reader of the tar
// stops at its end marker) and returns the stream's final error: a build's
// exit status, a download's checksum. It fails when more than a little is
// left.
func (s *Stream) Finish() error {
	n, err := io.Copy(io.Discard, io.LimitReader(s.r, maxTrailing+1))
	if err != nil {
		return err
	}
	if n > maxTrailing {
		return fmt.Errorf("%w: more than %d bytes after the archive's end", ErrInvalid, maxTrailing)
	}
	return nil
}

// Open starts producing src's tarball: an mmdebstrap build (to standard
// output, its stderr kept for the error), an image pull (its manifest
// fetched now, its layers at the first Read), a download, or a file.
func Open(ctx context.Context, src Source, opts Options) (*Stream, error) {
	if err := opts.Check(src); err != nil {
		return nil, err
	}
	switch src.Kind {
	case KindDistribution:
		return build(ctx, src, opts)
	case KindURL:
		return download(ctx, src.URL, opts.SHA256)
	case KindOCI:
		return pullOCI(ctx, src)
	case KindPath:
		f, err := os.Open(src.Path)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalid, src.Path)
		}
		return &Stream{Size: st.Size(), r: verified(f, opts.SHA256, src.Path), stop: f.Close}, nil
	}
	return nil, fmt.Errorf("%w: source kind %q", ErrInvalid, src.Kind)
}

// build runs mmdebstrap for a release, its tarball on standard output.
func build(ctx context.Context, src Source, opts Options) (*Stream, error) {
	r, _ := findRelease(src.Distribution, src.Suite)
	path, err := exec.LookPath(mmdebstrap)
	if err := r.check(err); err != nil {
		return nil, err
	}
	args := buildArgs(r, opts)
	cmd := exec.Command(path, args...)
	// Its own process group, so that a stop ends apt and dpkg under it too.
	ownProcessGroup(cmd)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "TMPDIR=" + os.TempDir()}
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mmdebstrap: %w", err)
	}
	p := &process{cmd: cmd, out: out, stderr: stderr, exited: make(chan struct{})}
	go func() {
		select {
		case <-ctx.Done():
			p.kill()
		case <-p.exited:
		}
	}()
	return &Stream{r: p, stop: p.Close}, nil
}

// buildArgs are mmdebstrap's arguments for r: quiet, the variant, the
// packages, the keyring, the suite, "-" (the tarball to standard output)
// and the mirror.
func buildArgs(r release, opts Options) []string {
	variant := opts.Variant
	if variant == "" {
		variant = "minbase"
	}
	args := []string{"--quiet", "--format=tar", "--variant=" + variant, "--keyring=" + r.keyring}
	if len(opts.Include) > 0 {
		args = append(args, "--include="+strings.Join(opts.Include, ","))
	}
	if r.distribution == "ubuntu" {
		args = append(args, "--components=main,universe")
	}
	args = append(args, "--", r.suite, "-")
	mirror := opts.Mirror
	if mirror == "" {
		mirror = r.mirror
	}
	if mirror != "" {
		args = append(args, mirror)
	}
	return args
}

// process is a running mmdebstrap's standard output; at its end, its exit.
type process struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr *tailBuffer
	once   sync.Once
	exited chan struct{}
	err    error
}

func (p *process) Read(b []byte) (int, error) {
	n, err := p.out.Read(b)
	if err == io.EOF {
		if werr := p.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// wait waits for the process once and keeps its error, with the end of
// what it printed.
func (p *process) wait() error {
	p.once.Do(func() {
		if err := p.cmd.Wait(); err != nil {
			p.err = fmt.Errorf("mmdebstrap: %v: %s", err, strings.TrimSpace(p.stderr.String()))
		}
		close(p.exited)
	})
	return p.err
}

func (p *process) kill() {
	killProcessGroup(p.cmd)
}

// Close stops the build if it still runs and waits for it.
func (p *process) Close() error {
	select {
	case <-p.exited:
	default:
		p.kill()
	}
	p.wait()
	return nil
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.b, []byte("?")))
}

// downloadTimeout bounds the wait for a download's response headers; the
// body takes as long as it takes, bounded by the operation's context.
const downloadTimeout = 30 * time.Second

// download fetches a tarball. Redirects may not leave https for http.
func download(ctx context.Context, u, sum string) (*Stream, error) {
	client := &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: downloadTimeout, TLSHandshakeTimeout: downloadTimeout},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" && via[0].URL.Scheme == "https" {
				return fmt.Errorf("a redirect from https to %s", req.URL.Scheme)
			}
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: %s", u, resp.Status)
	}
	return &Stream{Size: max(resp.ContentLength, 0), r: verified(resp.Body, sum, u), stop: resp.Body.Close}, nil
}

// verified returns r, checking at its end that its SHA-256 is sum (when
// sum is not empty): a mismatch is the last Read's error.
func verified(r io.Reader, sum, what string) io.Reader {
	if sum == "" {
		return r
	}
	return &checksumReader{r: r, h: sha256.New(), want: sum, what: what}
}

type checksumReader struct {
	r    io.Reader
	h    hash.Hash
	want string
	what string
}

func (c *checksumReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
			return n, fmt.Errorf("%w: %s has sha256 %s, not %s", ErrChecksum, c.what, got, c.want)
		}
	}
	return n, err
}
