package vmm

import (
	"context"
	"errors"
	"fmt"

	"github.com/subsys-dev/subsys/vmm/catalog"
)

// KindInstall is an install from the catalog or a tarball's address
// (Install).
const KindInstall = "install"

// InstallRequest asks for a new distro from a source (see package catalog).
type InstallRequest struct {
	// Name of the new distro; empty means the source's (catalog.Source.DefaultName).
	Name string
	// Source is "debian:bookworm" (built here with mmdebstrap), an OCI
	// image reference (pulled, its layers flattened), an https:// URL or an
	// absolute server path of a tarball; empty is catalog.DefaultSource.
	// See catalog.Parse for how a release and an image are told apart.
	Source string
	// Version, Location and SizeBytes are as an import's.
	Version   int
	Location  string
	SizeBytes int64
	// Variant, Include and Mirror shape a build; SHA256 pins a tarball.
	Variant string
	Include []string
	Mirror  string
	SHA256  string
}

// Install makes a new distro from req's source, as `wsl --install` does,
// in an operation of kind KindInstall: a release the catalog knows is built
// with mmdebstrap from its own mirror, an image's layers are pulled and
// flattened, a tarball is downloaded or read, and each streams into the same extraction an import uses (the source is
// trusted no more than an upload), its bytes counted as progress. A build
// or download that fails, or a checksum that does not match, fails the
// operation with its reason and leaves nothing, the name free again.
func (m *Manager) Install(ctx context.Context, req InstallRequest) (*Operation, error) {
	src, err := catalog.Parse(req.Source)
	if err != nil {
		return nil, catalogErr(err)
	}
	opts := catalog.Options{Variant: req.Variant, Include: req.Include, Mirror: req.Mirror, SHA256: req.SHA256}
	if err := opts.Check(src); err != nil {
		return nil, catalogErr(err)
	}
	if src.Kind == catalog.KindDistribution && src.Distribution == "debian" && opts.Mirror == "" {
		// The install_mirror setting, else the host's own apt sources'.
		settings, err := m.Settings(ctx)
		if err != nil {
			return nil, err
		}
		if opts.Mirror = settings.InstallMirror; opts.Mirror == "" {
			opts.Mirror = catalog.HostDebianMirror()
		}
	}
	// Version 1 where it cannot run is refused before a build or download
	// starts (Import checks the rest; a version left out is the default,
	// which such a host never has as 1).
	if req.Version == 1 {
		if err := m.needBackend(1); err != nil {
			return nil, err
		}
	}
	name := req.Name
	if name == "" {
		name = src.DefaultName()
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	// Refused before a build starts: a taken name would waste minutes.
	if _, err := m.row(ctx, name); err == nil {
		return nil, fmt.Errorf("%w: a distro named %q already exists: give the new one another name", ErrExists, name)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	// The stream belongs to the Manager, not the request: it runs as long
	// as the operation, which closes it.
	stream, err := catalog.Open(m.ctx, src, opts)
	if err != nil {
		return nil, fmt.Errorf("install %s: %w", src, catalogErr(err))
	}
	return m.Import(ctx, ImportRequest{Name: name, Version: req.Version, Location: req.Location, SizeBytes: req.SizeBytes,
		Body: stream, Size: stream.Size, kind: KindInstall, closer: stream, finish: func() error { return catalogErr(stream.Finish()) },
		defaultUser: stream.DefaultUser,
		watch: func(op *Operation) bool {
			return stream.WatchProgress(func(done, total int64, message string) {
				op.done.Store(done)
				op.total.Store(total)
				op.setMessage(message)
			})
		}})
}

// Catalog lists the releases Install can build on this host.
func (m *Manager) Catalog() []catalog.Entry { return catalog.List() }

// catalogErr maps the catalog's sentinels to vmm's.
func catalogErr(err error) error {
	switch {
	case errors.Is(err, catalog.ErrInvalid):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case errors.Is(err, catalog.ErrUnavailable):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return err
}
