package api

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStandardLibraryOnly: api is imported by every side of the wire, the
// client programs of others included, so it depends on nothing but Go's
// standard library.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != "github.com/subsys-dev/subsys/api" {
			t.Errorf("api depends on %s: it may import only the standard library", dep)
		}
	}
}
