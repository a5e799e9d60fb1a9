package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/subsys-dev/subsys/api"
)

// List returns every distro, by name.
func (c *Client) List(ctx context.Context) ([]api.Distro, error) {
	return get[[]api.Distro](ctx, c, "/distros", nil)
}

// Get returns one distro.
func (c *Client) Get(ctx context.Context, name string) (api.Distro, error) {
	return get[api.Distro](ctx, c, distroPath(name), nil)
}

// ImportOptions are the optional parts of an import.
type ImportOptions struct {
	// Version is 1 (shared kernel) or 2 (utility VM); 0 means the server's
	// default_version setting.
	Version int
	// Location is an absolute directory on the server for the distro's
	// files; empty means the server's data directory.
	Location string
	// Size is the tarball's (or image's) length in bytes, sent as
	// Content-Length; 0 or less means unknown (the upload is sent chunked).
	Size int64
	// DiskSize is the largest a version 2 distro's virtual disk may grow to,
	// in bytes (sent as the `size` parameter); 0 means the server's default.
	// Version 1 distros have no disk of their own: the server refuses it.
	DiskSize int64
	// RawImage says the upload is not a tarball but a raw ext4 disk image (a
	// version 2 distro's, as `export --format img` writes it), sent as
	// Content-Type application/x-raw-disk-image; the distro is version 2.
	RawImage bool
	// OnUpload, when set, is called with the bytes of the tarball sent so far.
	OnUpload func(sent int64)
	// OnProgress, when set, is called with the operation each time the server
	// reports it, until it has ended.
	OnProgress func(api.Operation)
}

// Import uploads a tarball (tar, tar.gz, tar.bz2, tar.xz or tar.zst), or with
// opt.RawImage a raw ext4 disk image, as the new distro name and waits for
// the import to end. A failed import returns
// the operation and an *api.OperationError, a refused one an *api.Error.
// Cancelling ctx during the upload ends the import; once the upload is done,
// it stops only the waiting (CancelOperation cancels the operation).
func (c *Client) Import(ctx context.Context, name string, tarball io.Reader, opt ImportOptions) (api.Operation, error) {
	q := url.Values{"name": {name}}
	if opt.Version != 0 {
		q.Set("version", strconv.Itoa(opt.Version))
	}
	if opt.Location != "" {
		q.Set("location", opt.Location)
	}
	if opt.DiskSize > 0 {
		q.Set("size", strconv.FormatInt(opt.DiskSize, 10))
	}
	if opt.OnUpload != nil {
		tarball = &countingReader{r: tarball, f: opt.OnUpload}
	}
	req, err := c.request(ctx, http.MethodPost, "/distros", q, io.NopCloser(tarball))
	if err != nil {
		return api.Operation{}, err
	}
	req.ContentLength = -1 // unknown: sent chunked
	if opt.Size > 0 {
		req.ContentLength = opt.Size
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if opt.RawImage {
		req.Header.Set("Content-Type", api.ContentTypeRawDiskImage)
	}
	resp, err := c.send(req)
	if err != nil {
		return api.Operation{}, fmt.Errorf("import %s: %w", name, err)
	}
	defer resp.Body.Close()
	var op api.Operation
	if err := json.NewDecoder(resp.Body).Decode(&op); err != nil {
		return api.Operation{}, fmt.Errorf("import %s: decode the reply: %w", name, err)
	}
	return c.finish(ctx, op, opt.OnProgress)
}

// ImportPath imports a tarball that is already on the server, at
// req.Source.Path, and waits for the import to end as Import does.
func (c *Client) ImportPath(ctx context.Context, req api.ImportRequest, onProgress func(api.Operation)) (api.Operation, error) {
	var op api.Operation
	if err := c.call(ctx, http.MethodPost, "/distros", nil, req, &op); err != nil {
		return api.Operation{}, fmt.Errorf("import %s: %w", req.Name, err)
	}
	return c.finish(ctx, op, onProgress)
}

// finish waits for an operation a request started, unless it has ended already.
func (c *Client) finish(ctx context.Context, op api.Operation, onProgress func(api.Operation)) (api.Operation, error) {
	if op.Done() {
		if onProgress != nil {
			onProgress(op)
		}
		return op, op.Err()
	}
	return c.WaitOperation(ctx, op.ID, onProgress)
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
	f func(int64)
}

// Read reads from r.r and reports the running total.
func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.n += int64(n)
		r.f(r.n)
	}
	return n, err
}

// Export streams a distro's root file system as a tarball of format (tar,
// tar.gz, tar.zst or tar.xz; "" is tar), or, with format "img", a version 2
// distro's raw ext4 disk image. The caller reads and closes it. A
// failure before the first byte is an *api.Error; a failure after it breaks
// the transfer (Read returns an error), so a short archive never passes for
// a whole one.
func (c *Client) Export(ctx context.Context, name, format string) (io.ReadCloser, error) {
	var q url.Values
	if format != "" {
		q = url.Values{"format": {format}}
	}
	// POST: an export does work (and a GET that does work is what a
	// cross-site page could trigger); the body stays empty.
	req, err := c.request(ctx, http.MethodPost, distroPath(name)+"/export", q, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", name, err)
	}
	return resp.Body, nil
}

// Start starts a distro (a running one stays as it is) and returns it.
func (c *Client) Start(ctx context.Context, name string) (api.Distro, error) {
	var d api.Distro
	err := c.call(ctx, http.MethodPost, distroPath(name)+"/start", nil, nil, &d)
	return d, err
}

// Terminate stops every process of a distro and returns it.
func (c *Client) Terminate(ctx context.Context, name string) (api.Distro, error) {
	var d api.Distro
	err := c.call(ctx, http.MethodPost, distroPath(name)+"/terminate", nil, nil, &d)
	return d, err
}

// Shutdown terminates every running distro.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/shutdown", nil, nil, nil)
}

// Unregister terminates a distro and deletes it with all its files.
func (c *Client) Unregister(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, distroPath(name), nil, nil, nil)
}

// Update changes a distro's name, default mark or default user and returns
// the distro as it is now.
func (c *Client) Update(ctx context.Context, name string, u api.DistroUpdate) (api.Distro, error) {
	var d api.Distro
	err := c.call(ctx, http.MethodPatch, distroPath(name), nil, u, &d)
	return d, err
}

// Rename renames a distro.
func (c *Client) Rename(ctx context.Context, name, newName string) (api.Distro, error) {
	return c.Update(ctx, name, api.DistroUpdate{Name: &newName})
}

// SetDefault makes a distro the default one.
func (c *Client) SetDefault(ctx context.Context, name string) (api.Distro, error) {
	yes := true
	return c.Update(ctx, name, api.DistroUpdate{Default: &yes})
}

// SetDefaultUser sets the user commands in a distro run as by default.
func (c *Client) SetDefaultUser(ctx context.Context, name, user string) (api.Distro, error) {
	return c.Update(ctx, name, api.DistroUpdate{DefaultUser: &user})
}

// SetSystemd turns systemd as the distro's PID 1 on or off; it applies from
// the distro's next start.
func (c *Client) SetSystemd(ctx context.Context, name string, on bool) (api.Distro, error) {
	return c.Update(ctx, name, api.DistroUpdate{Systemd: &on})
}

// Clone copies a distro into the new distro newName and waits for the copy
// to end, calling onProgress (when not nil) as it goes. As with Import,
// cancelling ctx stops the waiting, not the clone.
func (c *Client) Clone(ctx context.Context, name, newName string, onProgress func(api.Operation)) (api.Operation, error) {
	var op api.Operation
	if err := c.call(ctx, http.MethodPost, distroPath(name)+"/clone", nil, api.CloneRequest{Name: newName}, &op); err != nil {
		return api.Operation{}, err
	}
	return c.finish(ctx, op, onProgress)
}

// SetVersion converts a distro to version (1 or 2) and waits for the
// conversion to end, calling onProgress (when not nil) as it goes. As with
// Import, cancelling ctx stops the waiting, not the conversion.
func (c *Client) SetVersion(ctx context.Context, name string, version int, onProgress func(api.Operation)) (api.Operation, error) {
	var op api.Operation
	if err := c.call(ctx, http.MethodPost, distroPath(name)+"/set-version", nil, api.SetVersionRequest{Version: version}, &op); err != nil {
		return api.Operation{}, fmt.Errorf("set-version %s: %w", name, err)
	}
	return c.finish(ctx, op, onProgress)
}

// Metrics returns a distro's CPU and memory use over the last 10 minutes.
func (c *Client) Metrics(ctx context.Context, name string) (api.Metrics, error) {
	return get[api.Metrics](ctx, c, distroPath(name)+"/metrics", nil)
}

// Version returns the server's version.
func (c *Client) Version(ctx context.Context) (string, error) {
	v, err := get[api.Version](ctx, c, "/version", nil)
	return v.Version, err
}

// Status returns the server's version, distro counts and default distro.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	return get[api.Status](ctx, c, "/status", nil)
}

// Settings returns the server-wide settings.
func (c *Client) Settings(ctx context.Context) (api.Settings, error) {
	return get[api.Settings](ctx, c, "/settings", nil)
}

// UpdateSettings changes the settings u sets and returns them all.
func (c *Client) UpdateSettings(ctx context.Context, u api.SettingsUpdate) (api.Settings, error) {
	var st api.Settings
	err := c.call(ctx, http.MethodPut, "/settings", nil, u, &st)
	return st, err
}

// Resize sets a version 2 distro's disk size to size bytes and waits for
// the operation to end, calling onProgress (when not nil) as it goes. A
// running distro's disk grows online; a stopped one's may also shrink.
func (c *Client) Resize(ctx context.Context, name string, size int64, onProgress func(api.Operation)) (api.Operation, error) {
	var op api.Operation
	if err := c.call(ctx, http.MethodPost, distroPath(name)+"/resize", nil, api.ResizeRequest{Size: size}, &op); err != nil {
		return api.Operation{}, fmt.Errorf("resize %s: %w", name, err)
	}
	return c.finish(ctx, op, onProgress)
}

// Compact gives a version 2 distro's free disk blocks back to the host and
// waits for the operation to end; its Result.Bytes is how much smaller the
// image's allocation became.
func (c *Client) Compact(ctx context.Context, name string, onProgress func(api.Operation)) (api.Operation, error) {
	var op api.Operation
	if err := c.call(ctx, http.MethodPost, distroPath(name)+"/compact", nil, struct{}{}, &op); err != nil {
		return api.Operation{}, fmt.Errorf("compact %s: %w", name, err)
	}
	return c.finish(ctx, op, onProgress)
}

// Move moves a stopped distro's files to the directory location (absolute,
// on the server's host) and waits for the operation to end.
func (c *Client) Move(ctx context.Context, name, location string, onProgress func(api.Operation)) (api.Operation, error) {
	var op api.Operation
	if err := c.call(ctx, http.MethodPost, distroPath(name)+"/move", nil, api.MoveRequest{Location: location}, &op); err != nil {
		return api.Operation{}, fmt.Errorf("move %s: %w", name, err)
	}
	return c.finish(ctx, op, onProgress)
}

// Install makes a new distro from a catalog release ("debian:bookworm",
// built on the server), an https URL or a server path of a tarball, and
// waits for the operation to end, calling onProgress as it goes.
func (c *Client) Install(ctx context.Context, req api.InstallRequest, onProgress func(api.Operation)) (api.Operation, error) {
	var op api.Operation
	if err := c.call(ctx, http.MethodPost, "/distros/install", nil, req, &op); err != nil {
		return api.Operation{}, fmt.Errorf("install %s: %w", req.Source, err)
	}
	return c.finish(ctx, op, onProgress)
}

// Catalog lists the releases the server can install.
func (c *Client) Catalog(ctx context.Context) ([]api.CatalogEntry, error) {
	return get[[]api.CatalogEntry](ctx, c, "/catalog", nil)
}

// Snapshots lists a distro's snapshots, the oldest first.
func (c *Client) Snapshots(ctx context.Context, name string) ([]api.DistroSnapshot, error) {
	return get[[]api.DistroSnapshot](ctx, c, distroPath(name)+"/snapshots", nil)
}

// TakeSnapshot copies a stopped distro's files into snapshot snap (empty:
// named by the time) and waits for the operation to end.
func (c *Client) TakeSnapshot(ctx context.Context, name, snap string, onProgress func(api.Operation)) (api.Operation, error) {
	var op api.Operation
	if err := c.call(ctx, http.MethodPost, distroPath(name)+"/snapshots", nil, api.SnapshotRequest{Name: snap}, &op); err != nil {
		return api.Operation{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	return c.finish(ctx, op, onProgress)
}

// RestoreSnapshot puts snapshot snap's files in place of the stopped
// distro's and waits for the operation to end.
func (c *Client) RestoreSnapshot(ctx context.Context, name, snap string, onProgress func(api.Operation)) (api.Operation, error) {
	var op api.Operation
	if err := c.call(ctx, http.MethodPost, distroPath(name)+"/snapshots/"+url.PathEscape(snap)+"/restore", nil, nil, &op); err != nil {
		return api.Operation{}, fmt.Errorf("restore %s to %s: %w", name, snap, err)
	}
	return c.finish(ctx, op, onProgress)
}

// DeleteSnapshot removes snapshot snap of a distro.
func (c *Client) DeleteSnapshot(ctx context.Context, name, snap string) error {
	if err := c.call(ctx, http.MethodDelete, distroPath(name)+"/snapshots/"+url.PathEscape(snap), nil, nil, nil); err != nil {
		return fmt.Errorf("delete snapshot %s of %s: %w", snap, name, err)
	}
	return nil
}
