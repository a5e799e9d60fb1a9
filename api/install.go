package api

// KindInstall is an install from the catalog or a tarball's address
// (POST /distros/install).
const KindInstall = "install"

// InstallRequest is the body of POST /distros/install, as `subsys install`
// (and `wsl --install`) sends it.
type InstallRequest struct {
	// Name of the new distro; empty: the source's ("debian" for
	// debian:bookworm, a tarball's file name).
	Name string `json:"name,omitempty"`
	// Source is a release of GET /catalog ("debian:bookworm", built on the
	// server with mmdebstrap), an OCI image reference ("alpine:3.20",
	// "HOST[:PORT]/org/image:tag", "…@sha256:…"; "oci:" or "docker://"
	// forces an image where a catalog release has the same name), an
	// https:// URL of a root file system tarball, or a tarball's absolute
	// path on the server; empty is debian:bookworm.
	Source string `json:"source,omitempty"`
	// Version (1 or 2; 0: the server's default_version), Location and
	// SizeBytes are as an import's.
	Version   int    `json:"version,omitempty"`
	Location  string `json:"location,omitempty"`
	SizeBytes int64  `json:"size_bytes,omitempty"`
	// Variant (mmdebstrap's: minbase, the default, buildd, important,
	// standard), Include (more packages) and Mirror apply to a release.
	Variant string   `json:"variant,omitempty"`
	Include []string `json:"include,omitempty"`
	Mirror  string   `json:"mirror,omitempty"`
	// SHA256 pins a tarball to its SHA-256 (hex); a plain http:// URL needs it.
	SHA256 string `json:"sha256,omitempty"`
}

// CatalogEntry is one release GET /catalog lists.
type CatalogEntry struct {
	// Source is what to install: "debian:bookworm".
	Source string `json:"source"`
	// Kind is "distribution" (built on the server) or "oci" (a suggested
	// image, pulled from its registry).
	Kind         string `json:"kind"`
	Distribution string `json:"distribution"`
	Suite        string `json:"suite"`
	// Title is for people: "Debian 12 (bookworm)".
	Title string `json:"title"`
	// ApproxBytes is about how large its minimal root file system is; 0
	// when unknown (an image).
	ApproxBytes int64 `json:"approx_bytes"`
	// Available says this server can build it; Why says why not
	// (mmdebstrap or the release's keyring missing).
	Available bool   `json:"available"`
	Why       string `json:"why,omitempty"`
}
