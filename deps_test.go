package main

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/subsys-dev/subsys"

// TestDependencyDirection keeps the import arrows of ARCHITECTURE.md pointing one
// way: no package below cli reaches cli, and none but cli reaches server; vmm and
// vmm/ns never reach netmgr; store reaches none of vmm, netmgr or web; vmm/agent,
// vmm/archive, web and migrations reach none of store, vmm, netmgr, server or cli.
func TestDependencyDirection(t *testing.T) {
	forbidden := map[string][]string{
		"store":           {"server", "vmm", "netmgr", "cli", "web"},
		"migrations":      {"server", "vmm", "netmgr", "cli", "store", "web"},
		"web":             {"server", "vmm", "netmgr", "cli", "store", "migrations"},
		"vmm":             {"server", "cli", "netmgr", "web"},
		"vmm/agent":       {"server", "cli", "store", "vmm", "vmm/qemu", "vmm/ns", "netmgr", "web"},
		"vmm/ns":          {"server", "cli", "netmgr", "web"},
		"vmm/qemu":        {"server", "cli", "netmgr", "web", "vmm/ns"},
		"vmm/hcs":         {"server", "cli", "netmgr", "web", "vmm/ns", "vmm/qemu"},
		"vmm/disk":        {"server", "cli", "store", "vmm", "vmm/agent", "netmgr", "web"},
		"vmm/archive":     {"server", "cli", "store", "vmm", "netmgr", "web"},
		"vmm/cgroup":      {"server", "cli", "store", "vmm", "vmm/agent", "netmgr", "web"},
		"vmm/catalog":     {"server", "cli", "store", "vmm", "vmm/agent", "netmgr", "web"},
		"netmgr":          {"server", "cli", "web"},
		"netmgr/sockdiag": {"server", "cli", "store", "vmm", "vmm/agent", "netmgr", "web"},
		"server":          {"cli"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "./"+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps ./%s: %v", pkg, err)
		}
		deps := strings.Fields(string(out))
		for _, b := range bad {
			for _, d := range deps {
				if d == module+"/"+b {
					t.Errorf("%s depends on %s, against the dependency direction in ARCHITECTURE.md", pkg, b)
				}
			}
		}
	}
}

// TestPackageDocs: every package of subsys says what it is for.
func TestPackageDocs(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Doc}}", "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, doc, _ := strings.Cut(line, "\t")
		if strings.TrimSpace(doc) == "" && !strings.HasSuffix(path, "/e2e") {
			t.Errorf("package %s has no doc comment", path)
		}
	}
}
