package vmm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/archive"
)

// guestV2Backend is a version 2 backend that makes disks "in its VM"
// (GuestImageBuilder) without one: BuildImage writes a stand-in image file
// and extracts the tarball with archive.Extract into a tree, which its
// ExportTree then serves, and reports what it extracted. fail, when set,
// is returned after the tarball is read (the image removed, as the
// contract says).
type guestV2Backend struct {
	*fakeV2Backend
	t      *testing.T
	fail   error
	builds int
}

var _ GuestImageBuilder = (*guestV2Backend)(nil)

func (g *guestV2Backend) BuildImage(ctx context.Context, s Spec, path string, maxSize int64, r io.Reader) error {
	g.builds++
	if s.Disk != path {
		return fmt.Errorf("spec's disk %q, want %q", s.Disk, path)
	}
	if err := os.WriteFile(path, []byte("image"), 0o600); err != nil {
		return err
	}
	tree := filepath.Join(g.t.TempDir(), "tree")
	os.Mkdir(tree, 0o755)
	st, err := archive.Extract(ctx, r, tree, archive.Limits{MaxExpandedBytes: maxSize})
	if err == nil && g.fail != nil {
		err = g.fail
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	g.mu.Lock()
	g.trees[s.Name] = tree
	g.mu.Unlock()
	if rep, ok := r.(UnpackReporter); ok {
		rep.ReportUnpacked(agent.UnpackResult{Files: int64(st.Entries), Bytes: st.Bytes, Warnings: []string{"from the guest"}})
	}
	return nil
}

// TestImportV2InGuest: with SUBSYS_GUEST_UNPACK=1 a version 2 import has
// the backend make the disk (BuildImage), keeps the import's progress and
// result, and on a failure leaves nothing; a backend that cannot is an
// unsupported request, not a host-side build.
func TestImportV2InGuest(t *testing.T) {
	t.Setenv(GuestUnpackEnv, "1")
	g := &guestV2Backend{fakeV2Backend: newFakeV2Backend(t), t: t}
	m, _, data := newTestManager(t, map[int]Backend{1: newFakeBackend(t), 2: g})
	ctx := context.Background()
	body := tinyTar(t)

	op, err := m.Import(ctx, ImportRequest{Name: "guest", Version: 2, Body: bytes.NewReader(body), Size: int64(len(body))})
	if err != nil {
		t.Fatal(err)
	}
	if err := waitOp(t, m, op); err != nil {
		t.Fatal(err)
	}
	info := op.Info()
	if info.Progress.Done != int64(len(body)) || info.Progress.Total != int64(len(body)) {
		t.Errorf("progress %+v, want the tarball's %d bytes", info.Progress, len(body))
	}
	if r := info.Result; r == nil || r.Entries != 5 || len(r.Warnings) != 1 {
		t.Errorf("result %+v, want the guest's 5 entries and its warning", info.Result)
	}
	d, err := m.Get(ctx, "guest")
	if err != nil || d.Version != 2 || d.State != StateStopped {
		t.Fatalf("Get = %+v, %v", d, err)
	}
	if b, err := os.ReadFile(filepath.Join(d.Location, DiskImageName)); err != nil || string(b) != "image" {
		t.Errorf("the built image is not in place: %q, %v", b, err)
	}
	if g.builds != 1 {
		t.Errorf("BuildImage called %d times", g.builds)
	}
	// Exported as any version 2 distro, through the backend.
	var out bytes.Buffer
	if err := m.Export(ctx, "guest", &out, archive.Tar); err != nil || out.Len() == 0 {
		t.Errorf("export: %d bytes, %v", out.Len(), err)
	}
	noLeftovers(t, data, 1)

	for _, tc := range []struct {
		name string
		fail error
		want error
	}{
		{"disk full", fmt.Errorf("unpack: %w", &agent.RemoteError{Op: "unpack-tree", Code: "no_space", Message: "ENOSPC"}), ErrTooLarge},
		{"bad archive", &agent.RemoteError{Op: "unpack-tree", Code: "bad_archive", Message: "unsafe"}, ErrInvalid},
		{"host disk full", fmt.Errorf("%w: reserve", ErrInsufficientStorage), ErrInsufficientStorage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.fail = tc.fail
			defer func() { g.fail = nil }()
			op, err := m.Import(ctx, ImportRequest{Name: "failing", Version: 2, Body: bytes.NewReader(body)})
			if err != nil {
				t.Fatal(err)
			}
			if err := waitOp(t, m, op); !errors.Is(err, tc.want) {
				t.Errorf("import: %v, want %v", err, tc.want)
			}
			if _, err := m.Get(ctx, "failing"); !errors.Is(err, ErrNotFound) {
				t.Errorf("after the failure: Get = %v, want ErrNotFound", err)
			}
			noLeftovers(t, data, 1)
		})
	}

	// A version 2 backend that cannot make disks in its VM.
	m2, _, data2 := newTestManager(t, map[int]Backend{2: newFakeV2Backend(t)})
	op, err = m2.Import(ctx, ImportRequest{Name: "nope", Version: 2, Body: bytes.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	if err := waitOp(t, m2, op); !errors.Is(err, ErrUnsupported) {
		t.Errorf("import with a backend that cannot build in its VM: %v, want ErrUnsupported", err)
	}
	noLeftovers(t, data2, 0)
}
