package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/vmmtest"
)

// fakeVM is a version 2 backend for the handlers' sake: its distros run as
// vmmtest's do, and its VM is whatever status and console the test sets.
type fakeVM struct {
	*vmmtest.Backend
	status  vmm.VMStatus
	console []byte
}

func (f *fakeVM) VMStatus(context.Context) vmm.VMStatus { return f.status }
func (f *fakeVM) VMConsole() []byte                     { return f.console }
func (f *fakeVM) ShutdownVM(ctx context.Context) error  { return nil }
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
