package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/vmmtest"
)

// fakeVM is a version 2 backend for the handlers' sake: its distros run as
// vmmtest's do, and its VM is whatever status and console the test sets.
type fakeVM struct {
	*vmmtest.Backend
	status   vmm.VMStatus
	console  []byte
	reclaim  vmm.VMReclaim
	reclaims atomic.Int32 // calls of ReclaimVM
}

func (f *fakeVM) VMStatus(context.Context) vmm.VMStatus { return f.status }
func (f *fakeVM) VMConsole() []byte                     { return f.console }
func (f *fakeVM) ShutdownVM(ctx context.Context) error  { return nil }
func (f *fakeVM) ReclaimVM(context.Context) (vmm.VMReclaim, error) {
	f.reclaims.Add(1)
	if f.status.State != vmm.VMRunning {
		return vmm.VMReclaim{}, vmm.ErrNotRunning
	}
	return f.reclaim, nil
}
func newFakeVM(t *testing.T, st vmm.VMStatus, console []byte) *fakeVM {
	b := vmmtest.NewBackend(vmmtest.Config{})
	t.Cleanup(func() { b.Close() })
	return &fakeVM{Backend: b, status: st, console: console}
}

var _ vmm.VMBackend = (*fakeVM)(nil)

// hostileConsole is what a guest may write to its serial console: escape
// sequences that retitle a terminal or clear it, markup, invalid UTF-8, a
// bidi override, NUL.
var hostileConsole = []byte("boot ok\r\n\x1b]0;pwned\x07\x1b[2J<img src=x onerror=alert(1)>\xff\xfe\u202egnp.exe\x00\n")

// get sends a GET to path (under /api/v1) with the token and returns the
// whole reply.
func (e *env) get(path string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.url+"/api/v1"+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	return resp, raw
}

// TestVM: GET /vm reports the version 2 backend's VM (or that there is
// none), and GET /vm/console hands the guest's bytes over exactly, as an
// octet-stream attachment no browser renders.
func TestVM(t *testing.T) {
	started := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	running := vmm.VMStatus{State: vmm.VMRunning, Accel: "tcg", AccelNote: "/dev/kvm: permission denied", PID: 4242,
		StartedAt: started, MemoryMiB: 2048, CPUs: 2, RSSBytes: 300 << 20, Kernel: "/boot/vmlinuz", KernelRelease: "6.1.0-\x1b[31mred",
		Distros: []string{"id-1"}, IdleTimeoutS: 60}
	tests := []struct {
		name        string
		v2          vmm.Backend
		wantStatus  api.VMStatus
		wantConsole []byte
	}{
		{"no version 2 backend", nil, api.VMStatus{State: api.VMStopped}, nil},
		{"running", newFakeVM(t, running, hostileConsole), api.VMStatus{Available: true, State: api.VMRunning, Accel: "tcg",
			AccelNote: "/dev/kvm: permission denied", PID: 4242, StartedAt: started, MemoryMiB: 2048, CPUs: 2, RSSBytes: 300 << 20,
			Kernel: "/boot/vmlinuz", KernelRelease: "6.1.0-\x1b[31mred", Distros: []string{"id-1"}, IdleTimeoutS: 60}, hostileConsole},
		{"failed", newFakeVM(t, vmm.VMStatus{State: vmm.VMFailed, Error: "no agent after 30 s", MemoryMiB: 1024, CPUs: 1, IdleTimeoutS: -1}, []byte("Kernel panic\n")),
			api.VMStatus{Available: true, State: api.VMFailed, Error: "no agent after 30 s", MemoryMiB: 1024, CPUs: 1, IdleTimeoutS: -1}, []byte("Kernel panic\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, nil, tc.v2)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			st, err := e.c.VM(ctx)
			if err != nil || !reflect.DeepEqual(st, tc.wantStatus) {
				t.Errorf("VM = %+v, %v; want %+v", st, err, tc.wantStatus)
			}
			con, err := e.c.VMConsole(ctx)
			if err != nil || !bytes.Equal(con, tc.wantConsole) {
				t.Errorf("VMConsole = %q, %v; want %q", con, err, tc.wantConsole)
			}
			resp, raw := e.get("/vm/console")
			h := resp.Header
			if resp.StatusCode != 200 || h.Get("Content-Type") != "application/octet-stream" || h.Get("X-Content-Type-Options") != "nosniff" ||
				h.Get("Content-Disposition") == "" || !bytes.Equal(raw, tc.wantConsole) {
				t.Errorf("GET /vm/console = %d %v %q", resp.StatusCode, h, raw)
			}
		})
	}
}

// TestVMReclaim: POST /vm/reclaim answers what the VM gave back, or 409
// not_running (it never boots the VM), in the one error shape; a GET is not
// allowed to do it.
func TestVMReclaim(t *testing.T) {
	mem := vmm.VMMemory{TotalBytes: 2 << 30, UsedBytes: 100 << 20, CachedBytes: 10 << 20, AvailableBytes: 1 << 30, ReclaimedBytes: 900 << 20}
	tests := []struct {
		name     string
		v2       func(t *testing.T) vmm.Backend
		want     api.VMReclaim
		wantCode string
	}{
		{"no version 2 backend", func(*testing.T) vmm.Backend { return nil }, api.VMReclaim{}, api.CodeNotRunning},
		{"stopped", func(t *testing.T) vmm.Backend { return newFakeVM(t, vmm.VMStatus{State: vmm.VMStopped}, nil) }, api.VMReclaim{}, api.CodeNotRunning},
		{"running", func(t *testing.T) vmm.Backend {
			f := newFakeVM(t, vmm.VMStatus{State: vmm.VMRunning}, nil)
			f.reclaim = vmm.VMReclaim{DroppedBytes: 800 << 20, Memory: mem, RSSBytes: 400 << 20}
			return f
		}, api.VMReclaim{DroppedBytes: 800 << 20, Memory: api.VMMemory(mem), RSSBytes: 400 << 20}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, nil, tc.v2(t))
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			got, err := e.c.ReclaimVM(ctx)
			var ce *api.Error
			switch {
			case tc.wantCode != "" && (!errors.As(err, &ce) || ce.Code != tc.wantCode || ce.Status != http.StatusConflict):
				t.Fatalf("ReclaimVM = %+v, %v; want a 409 %s", got, err, tc.wantCode)
			case tc.wantCode == "" && (err != nil || got != tc.want):
				t.Fatalf("ReclaimVM = %+v, %v; want %+v", got, err, tc.want)
			}
			if resp, _ := e.get("/vm/reclaim"); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("GET /vm/reclaim = %d, want 405", resp.StatusCode)
			}
		})
	}
}

// TestVMReclaimAttacks: what a browser sends by itself (a cookie) or a page
// of another origin sends with a stolen-looking token never reaches the VM;
// the same POST with the token as a header does (the control).
func TestVMReclaimAttacks(t *testing.T) {
	f := newFakeVM(t, vmm.VMStatus{State: vmm.VMRunning}, nil)
	e := newEnvWith(t, nil, f)
	post := func(hdr map[string]string) int {
		req, err := http.NewRequest("POST", e.url+"/api/v1/vm/reclaim", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"a cookie only", map[string]string{"Cookie": "subsys_token=" + token}},
		{"another origin", map[string]string{"Authorization": "Bearer " + token, "Origin": "http://evil.example"}},
		{"nothing", nil},
	} {
		if st := post(tc.hdr); st != http.StatusUnauthorized && st != http.StatusForbidden {
			t.Errorf("%s: POST /vm/reclaim = %d, want 401 or 403", tc.name, st)
		}
	}
	if n := f.reclaims.Load(); n != 0 {
		t.Fatalf("refused requests reached the VM %d times", n)
	}
	if st := post(map[string]string{"Authorization": "Bearer " + token}); st != 200 || f.reclaims.Load() != 1 {
		t.Errorf("control: POST /vm/reclaim with the token = %d, %d calls; want 200 and one", st, f.reclaims.Load())
	}
}

// ext4Image returns a 1 MiB image whose superblock passes the server's check
// of an imported image (disk.ParseSuperblock): 256 blocks of 4 KiB, one group
// of 64 inodes, a marker in its last bytes. No guest mounts it here.
func ext4Image() []byte {
	img := make([]byte, 1<<20)
	sb := img[1024:2048]
	le := binary.LittleEndian
	le.PutUint32(sb[0x00:], 64)    // s_inodes_count
	le.PutUint32(sb[0x04:], 256)   // s_blocks_count_lo
	le.PutUint32(sb[0x14:], 0)     // s_first_data_block
	le.PutUint32(sb[0x18:], 2)     // s_log_block_size: 4 KiB
	le.PutUint32(sb[0x20:], 32768) // s_blocks_per_group
	le.PutUint32(sb[0x28:], 64)    // s_inodes_per_group
	le.PutUint16(sb[0x38:], 0xEF53)
	copy(img[len(img)-8:], "the end!")
	return img
}

// TestSetVersion: POST …/set-version answers 202 with a set-version
// operation, or refuses in the one error shape: a version this server cannot
// run (501), the version the distro has, a bad body (400), a running distro
// (409), no such distro (404).
func TestSetVersion(t *testing.T) {
	jsonCT := map[string]string{"Content-Type": "application/json"}
	t.Run("refusals", func(t *testing.T) {
		e := newEnv(t, nil) // version 1 only
		e.importDistro("alpha")
		e.importDistro("busy")
		if _, err := e.c.Start(context.Background(), "busy"); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, path, body string
			status           int
			code             string
		}{
			{"version 2 unavailable", "/distros/alpha/set-version", `{"version":2}`, 501, api.CodeUnsupported},
			{"the version it has", "/distros/alpha/set-version", `{"version":1}`, 400, api.CodeInvalid},
			{"no such version", "/distros/alpha/set-version", `{"version":3}`, 400, api.CodeInvalid},
			{"version as a string", "/distros/alpha/set-version", `{"version":"2"}`, 400, api.CodeInvalid},
			{"unknown field", "/distros/alpha/set-version", `{"versoin":2}`, 400, api.CodeInvalid},
			{"no body", "/distros/alpha/set-version", ``, 400, api.CodeInvalid},
			{"no such distro", "/distros/missing/set-version", `{"version":2}`, 404, api.CodeNotFound},
			{"GET is not a conversion", "/distros/alpha/set-version", "", 405, api.CodeMethodNotAllowed},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				method := "POST"
				if strings.HasPrefix(tc.name, "GET") {
					method = "GET"
				}
				status, raw := e.do(method, tc.path, strings.NewReader(tc.body), jsonCT)
				if ae := apiErr(raw); status != tc.status || ae.Code != tc.code || ae.Message == "" {
					t.Errorf("%s %s %s = %d %s; want %d %s", method, tc.path, tc.body, status, raw, tc.status, tc.code)
				}
			})
		}
		// The client says the same, as an *api.Error.
		if _, err := e.c.SetVersion(context.Background(), "alpha", 2, nil); asAPIError(err).Code != api.CodeUnsupported {
			t.Errorf("client SetVersion = %v, want unsupported", err)
		}
		if d, err := e.c.Get(context.Background(), "alpha"); err != nil || d.Version != 1 || d.State != api.StateStopped {
			t.Errorf("alpha after the refusals = %+v, %v", d, err)
		}
	})
	t.Run("running distro", func(t *testing.T) {
		e := newEnvWith(t, nil, newFakeVM(t, vmm.VMStatus{}, nil))
		e.importDistro("alpha")
		if _, err := e.c.Start(context.Background(), "alpha"); err != nil {
			t.Fatal(err)
		}
		status, raw := e.do("POST", "/distros/alpha/set-version", strings.NewReader(`{"version":2}`), jsonCT)
		if ae := apiErr(raw); status != 409 || ae.Code != api.CodeBusy {
			t.Errorf("converting a running distro = %d %s, want 409 busy", status, raw)
		}
	})
	t.Run("a failed conversion", func(t *testing.T) {
		// The conversion reads the distro's files; with them gone it fails
		// at once (and starts no program: no mkfs.ext4 in this binary, whose
		// agent reaps every child).
		e := newEnvWith(t, nil, newFakeVM(t, vmm.VMStatus{}, nil))
		d := e.importDistro("alpha")
		if err := os.RemoveAll(filepath.Join(d.Location, "rootfs")); err != nil {
			t.Fatal(err)
		}
		status, raw := e.do("POST", "/distros/alpha/set-version", strings.NewReader(`{"version":2}`), jsonCT)
		var op api.Operation
		if err := json.Unmarshal(raw, &op); status != 202 || err != nil || op.Kind != api.KindSetVersion || op.Distro != "alpha" {
			t.Fatalf("POST set-version = %d %s", status, raw)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		end, err := e.c.WaitOperation(ctx, op.ID, nil)
		var oe *api.OperationError
		if !errors.As(err, &oe) || end.Status != api.StatusFailure || !strings.Contains(end.Error, "set-version alpha") {
			t.Errorf("the conversion ended %+v, %v; want a failure that names it", end, err)
		}
		if got, err := e.c.Get(ctx, "alpha"); err != nil || got.Version != 1 || got.State != api.StateStopped {
			t.Errorf("alpha after the failed conversion = %+v, %v; want version 1, stopped", got, err)
		}
	})
}

// TestImportSizeAndImage: the import's size parameter, and a raw disk image
// (Content-Type application/x-raw-disk-image) imported as a version 2 distro
// whose image export (format=img) gives it back byte for byte.
func TestImportSizeAndImage(t *testing.T) {
	img := ext4Image()
	rawCT := map[string]string{"Content-Type": api.ContentTypeRawDiskImage}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	t.Run("version 1 server", func(t *testing.T) {
		e := newEnv(t, nil)
		e.importDistro("alpha")
		tests := []struct {
			name, method, path, body string
			hdr                      map[string]string
			status                   int
			code                     string
		}{
			{"a size for version 1", "POST", "/distros?name=v&version=1&size=1073741824", string(tarball(t)), nil, 400, api.CodeInvalid},
			{"a size that is no number", "POST", "/distros?name=v&size=big", string(tarball(t)), nil, 400, api.CodeInvalid},
			{"a size of zero", "POST", "/distros?name=v&size=0", string(tarball(t)), nil, 400, api.CodeInvalid},
			{"an image needs version 2", "POST", "/distros?name=v", string(img), rawCT, 501, api.CodeUnsupported},
			{"an image is not version 1", "POST", "/distros?name=v&version=1", string(img), rawCT, 400, api.CodeInvalid},
			{"a JSON source of no format", "POST", "/distros", `{"name":"v","source":{"path":"/x","format":"zip"}}`, jsonCT, 400, api.CodeInvalid},
			{"export of a version 1 image", "POST", "/distros/alpha/export?format=img", "", nil, 400, api.CodeInvalid},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				status, raw := e.do(tc.method, tc.path, strings.NewReader(tc.body), tc.hdr)
				if ae := apiErr(raw); status != tc.status || ae.Code != tc.code || ae.Message == "" {
					t.Errorf("%s %s = %d %s; want %d %s", tc.method, tc.path, status, raw, tc.status, tc.code)
				}
			})
		}
	})
	t.Run("version 2 server", func(t *testing.T) {
		e := newEnvWith(t, nil, newFakeVM(t, vmm.VMStatus{}, nil))
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		for _, tc := range []struct {
			name, path, body string
			status           int
			code             string
		}{
			{"not an image", "/distros?name=junk", string(tarball(t)), 400, api.CodeInvalid},
			{"bigger than its size", "/distros?name=small&size=1", string(img), 400, api.CodeInvalid},
		} {
			status, raw := e.do("POST", tc.path, strings.NewReader(tc.body), rawCT)
			if ae := apiErr(raw); status != tc.status || ae.Code != tc.code {
				t.Errorf("%s: POST %s = %d %s; want %d %s", tc.name, tc.path, status, raw, tc.status, tc.code)
			}
		}
		if op, err := e.c.Import(ctx, "disk", bytes.NewReader(img), client.ImportOptions{RawImage: true, Size: int64(len(img))}); err != nil {
			t.Fatalf("import the image = %+v, %v", op, err)
		}
		d, err := e.c.Get(ctx, "disk")
		if err != nil || d.Version != 2 {
			t.Fatalf("the imported image = %+v, %v; want a version 2 distro", d, err)
		}
		rc, err := e.c.Export(ctx, "disk", "img")
		if err != nil {
			t.Fatal(err)
		}
		back, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(back, img) {
			t.Errorf("exported image: %d bytes (%v), want the %d imported", len(back), err, len(img))
		}
		list, err := e.c.List(ctx)
		if err != nil || len(list) != 1 {
			t.Errorf("distros = %+v, %v; the refused imports left something", list, err)
		}
	})
}
