package client

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: client is for programs of others too, so of subsys it
// imports only api (DESIGN.md: cli → client → api).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const module = "github.com/subsys-dev/subsys"
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, module+"/") && dep != module+"/api" && dep != module+"/client" {
			t.Errorf("client depends on %s: of subsys it may import only api", dep)
		}
	}
}
