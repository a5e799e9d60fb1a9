package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// TestBuildInitrd: the initrd the Windows server boots its VM with is a
// plain newc archive whose /init is the agent, executable, and nothing
// that needs a module tree; a rebuild replaces it; an agent that cannot be
// read fails and leaves no file.
func TestBuildInitrd(t *testing.T) {
	dir := t.TempDir()
	agentPath := filepath.Join(dir, "subsys-agent")
	agent := bytes.Repeat([]byte("\x7fELF agent "), 1000)
	if err := os.WriteFile(agentPath, agent, 0o755); err != nil {
		t.Fatal(err)
	}
	vmDir := filepath.Join(dir, "vm")
	if err := os.Mkdir(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		path, err := buildInitrd(agentPath, vmDir)
		if err != nil {
			t.Fatal(err)
		}
		if path != filepath.Join(vmDir, "initrd.img") {
			t.Errorf("initrd at %s", path)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		r := cpio.NewReader(f)
		found := false
		for {
			h, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("read the initrd: %v", err)
			}
			if h.Name == "init" {
				body, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				found = bytes.Equal(body, agent) && h.Mode == cpio.TypeReg|0o755
			}
		}
		f.Close()
		if !found {
			t.Error("the initrd has no /init that is the agent, mode 0755")
		}
	}
	if left, _ := filepath.Glob(filepath.Join(vmDir, ".initrd-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	os.Remove(filepath.Join(vmDir, "initrd.img"))
	if _, err := buildInitrd(filepath.Join(dir, "missing"), vmDir); err == nil {
		t.Error("an agent that is not there: no error")
	}
	if entries, _ := os.ReadDir(vmDir); len(entries) != 0 {
		t.Errorf("a failed build left %v", entries)
	}
}
