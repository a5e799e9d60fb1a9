// Package catalog knows where new distros come from, for `subsys install`:
// the distributions subsys can build itself with mmdebstrap from their own
// mirrors (debian:bookworm, debian:trixie, ubuntu:noble), OCI (Docker)
// images pulled from a registry with their layers flattened, and plain
// tarballs by URL (with an optional SHA-256) or by server path. Parse reads
// a source as a user writes it; Open turns it into a stream of a root file
// system tarball, which vmm imports through the same hostile-archive-safe
// extraction as any upload: the catalog trusts nothing it hands over.
package catalog

import (
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ErrInvalid is wrapped by the errors of a source or option that cannot be
// used: an unknown distribution, a bad package name, a relative path.
var ErrInvalid = errors.New("invalid source")

// ErrUnavailable is wrapped when a source is valid but this host cannot
// build it (no mmdebstrap, no keyring for the distribution).
var ErrUnavailable = errors.New("source unavailable")

// Kinds of source.
const (
	// KindDistribution is built locally with mmdebstrap.
	KindDistribution = "distribution"
	// KindURL is a tarball downloaded over HTTP(S).
	KindURL = "url"
	// KindPath is a tarball on the server's file system.
	KindPath = "path"
)

// DefaultSource is what `subsys install` installs when no source is named.
const DefaultSource = "debian:bookworm"

// Source is a parsed install source.
type Source struct {
	// Kind is one of the Kind constants.
	Kind string
	// Distribution and Suite name a distribution release (KindDistribution):
	// "debian", "bookworm".
	Distribution, Suite string
	// URL is the tarball's address (KindURL).
	URL string
	// Path is the tarball's absolute path on the server (KindPath).
	Path string
	// Image is the image's full reference (KindOCI), with its registry:
	// "index.docker.io/library/alpine:3.20".
	Image string
}

// String is the source as a user writes it.
func (s Source) String() string {
	switch s.Kind {
	case KindDistribution:
		return s.Distribution + ":" + s.Suite
	case KindURL:
		return s.URL
	case KindOCI:
		return s.Image
	}
	return s.Path
}

// DefaultName is the distro name an install of s takes when none is given:
// the distribution's name, or the tarball's file name without extensions.
func (s Source) DefaultName() string {
	var base string
	switch s.Kind {
	case KindDistribution:
		return s.Distribution
	case KindOCI:
		// The repository's last part: "alpine", "img" of host/test/img:tag.
		ref, err := ociReference(s.Image)
		if err != nil {
			return ""
		}
		base = path.Base(ref.Context().RepositoryStr())
	case KindURL:
		u, err := url.Parse(s.URL)
		if err != nil {
			return ""
		}
		base = filepath.Base(u.Path)
	default:
		base = filepath.Base(s.Path)
	}
	for _, ext := range []string{".gz", ".xz", ".zst", ".bz2", ".tgz", ".tar"} {
		base = strings.TrimSuffix(base, ext)
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, base)
	name = strings.TrimLeft(name, "-._")
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// release is one distribution release the catalog can build.
type release struct {
	distribution, suite, title string
	// mirror is the distribution's own mirror, when mmdebstrap's default
	// (Debian's, or the host's apt sources) is not the right one.
	mirror string
	// keyring is the apt keyring the release is signed with, which the
	// host must have.
	keyring string
	// approxBytes is about what a minbase tarball of it is.
	approxBytes int64
}

var releases = []release{
	{"debian", "bookworm", "Debian 12 (bookworm)", "", "/usr/share/keyrings/debian-archive-keyring.gpg", 190 << 20},
	{"debian", "trixie", "Debian 13 (trixie)", "", "/usr/share/keyrings/debian-archive-keyring.gpg", 200 << 20},
	{"ubuntu", "noble", "Ubuntu 24.04 LTS (noble)", "http://archive.ubuntu.com/ubuntu", "/usr/share/keyrings/ubuntu-archive-keyring.gpg", 210 << 20},
	{"ubuntu", "jammy", "Ubuntu 22.04 LTS (jammy)", "http://archive.ubuntu.com/ubuntu", "/usr/share/keyrings/ubuntu-archive-keyring.gpg", 200 << 20},
}

func findRelease(distribution, suite string) (release, bool) {
	i := slices.IndexFunc(releases, func(r release) bool { return r.distribution == distribution && r.suite == suite })
	if i < 0 {
		return release{}, false
	}
	return releases[i], true
}

// Parse reads a source as a user writes it: "debian:bookworm" (a release
// the catalog knows), "https://…/rootfs.tar.gz" (http is refused: a tarball
// fetched without TLS could be anyone's, unless a checksum pins it — see
// Options.SHA256), an absolute path on the server, or else an OCI image
// reference ("alpine:3.20", "HOST[:PORT]/org/image:tag", "…@sha256:…").
// The catalog's own releases win for the names it lists: "debian:bookworm"
// is built here; "oci:debian:bookworm" or "docker://debian:bookworm" is
// Docker Hub's image.
func Parse(s string) (Source, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return Parse(DefaultSource)
	case strings.HasPrefix(s, ociPrefix):
		return parseOCI(strings.TrimPrefix(s, ociPrefix))
	case strings.HasPrefix(s, dockerPrefix):
		return parseOCI(strings.TrimPrefix(s, dockerPrefix))
	case strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return Source{}, fmt.Errorf("%w: %q is not a URL", ErrInvalid, s)
		}
		return Source{Kind: KindURL, URL: u.String()}, nil
	case strings.Contains(s, "://"):
		// go-containerregistry would read "ftp://host/x" as an image
		// on a registry named "ftp".
		return Source{}, fmt.Errorf("%w: %q: a tarball's URL is https:// (or http:// with its sha256), an image's reference has no scheme (or docker://)", ErrInvalid, s)
	case strings.HasPrefix(s, "/"):
		if filepath.Clean(s) != s {
			return Source{}, fmt.Errorf("%w: path %q is not clean", ErrInvalid, s)
		}
		return Source{Kind: KindPath, Path: s}, nil
	}
	if dist, suite, ok := strings.Cut(s, ":"); ok {
		if _, ok := findRelease(dist, suite); ok {
			return Source{Kind: KindDistribution, Distribution: dist, Suite: suite}, nil
		}
	}
	return parseOCI(s)
}

// Names lists the releases the catalog knows, as sources.
func Names() []string {
	out := make([]string, len(releases))
	for i, r := range releases {
		out[i] = r.distribution + ":" + r.suite
	}
	return out
}

// Entry is one installable release, as GET /catalog lists it.
type Entry struct {
	// Source is what to pass to install: "debian:bookworm".
	Source string `json:"source"`
	// Kind is KindDistribution (built here) or KindOCI (a suggested image;
	// any other reference installs too).
	Kind string `json:"kind"`
	// Distribution and Suite, and Title for people.
	Distribution string `json:"distribution"`
	Suite        string `json:"suite"`
	Title        string `json:"title"`
	// ApproxBytes is about how large its minbase root file system is; 0
	// when not known (an image).
	ApproxBytes int64 `json:"approx_bytes"`
	// Available says this host can build it; Why says why not.
	Available bool   `json:"available"`
	Why       string `json:"why,omitempty"`
}

// List returns the catalog, each release marked available or not on this
// host (mmdebstrap installed, the release's keyring present), then the
// suggested images (always available: whether their registry answers is
// known only when pulling).
func List() []Entry {
	_, mmErr := exec.LookPath(mmdebstrap)
	out := make([]Entry, 0, len(releases)+len(suggestions))
	for _, r := range releases {
		e := Entry{Source: r.distribution + ":" + r.suite, Kind: KindDistribution, Distribution: r.distribution, Suite: r.suite, Title: r.title, ApproxBytes: r.approxBytes, Available: true}
		if err := r.check(mmErr); err != nil {
			e.Available, e.Why = false, strings.TrimPrefix(err.Error(), ErrUnavailable.Error()+": ")
		}
		out = append(out, e)
	}
	for _, s := range suggestions {
		out = append(out, Entry{Source: s.ref, Kind: KindOCI, Distribution: s.distribution, Suite: s.tag, Title: s.title, Available: true})
	}
	return out
}
