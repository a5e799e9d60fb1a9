package server_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm/vmmtest"
)

// TestNoVersion1API: on a server without a version 1 backend (Windows),
// every request that needs one is 400 version1_needs_linux with the message
// a person reads, and creates nothing; the same requests on a server with
// version 1 are accepted, so the refusal is the missing backend's.
func TestNoVersion1API(t *testing.T) {
	tar := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(tar, tarball(t), 0o600); err != nil {
		t.Fatal(err)
	}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	requests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		accepted                 int // the status where version 1 exists
	}{
		{"import", "POST", "/distros?name=one&version=1", string(tarball(t)), nil, http.StatusAccepted},
		{"import from a path", "POST", "/distros", `{"name":"two","version":1,"source":{"path":"` + tar + `"}}`, jsonCT, http.StatusAccepted},
		{"install", "POST", "/distros/install", `{"name":"three","version":1,"source":"` + tar + `"}`, jsonCT, http.StatusAccepted},
		{"default_version", "PUT", "/settings", `{"default_version":1}`, jsonCT, http.StatusOK},
	}
	with := newEnv(t, nil)
	without := newEnvBackends(t, nil, vmmtest.NewBackend(vmmtest.Config{}), false)
	for _, tc := range requests {
		t.Run(tc.name, func(t *testing.T) {
			if status, raw := with.do(tc.method, tc.path, strings.NewReader(tc.body), tc.hdr); status != tc.accepted {
				t.Fatalf("with version 1: %d %s, want %d", status, raw, tc.accepted)
			}
			status, raw := without.do(tc.method, tc.path, strings.NewReader(tc.body), tc.hdr)
			ae := apiErr(raw)
			if status != http.StatusBadRequest || ae.Code != api.CodeVersion1NeedsLinux || !strings.Contains(ae.Message, "version 1 distros need a Linux host") {
				t.Errorf("without version 1: %d %s, want 400 %s", status, raw, api.CodeVersion1NeedsLinux)
			}
		})
	}
	if names := without.entries("distros"); len(names) != 0 {
		t.Errorf("refused requests left distro directories: %v", names)
	}
	status, raw := without.do("GET", "/distros", nil, nil)
	if status != http.StatusOK || strings.TrimSpace(string(raw)) != "[]" {
		t.Errorf("distros after refused requests: %d %s", status, raw)
	}
	// Its default is version 2, whatever the built-in default (1) says.
	if status, raw := without.do("GET", "/settings", nil, nil); status != http.StatusOK || !strings.Contains(string(raw), `"default_version":2`) {
		t.Errorf("settings without version 1: %d %s, want default_version 2", status, raw)
	}
}
