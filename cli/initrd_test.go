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
		path, err := buildInitrd(agentPath, vmDir, nil)
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
	if _, err := buildInitrd(filepath.Join(dir, "missing"), vmDir, nil); err == nil {
		t.Error("an agent that is not there: no error")
	}
	if entries, _ := os.ReadDir(vmDir); len(entries) != 0 {
		t.Errorf("a failed build left %v", entries)
	}
}

// TestBuildInitrdEmbedded: a build that embeds the Windows initrd writes it
// as it is, and the agent on disk is not read.
func TestBuildInitrdEmbedded(t *testing.T) {
	dir := t.TempDir()
	img := []byte("an initrd made at build time")
	path, err := buildInitrd(filepath.Join(dir, "no-agent-here"), dir, func() []byte { return img })
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, img) {
		t.Errorf("initrd = %q, %v; want the embedded one", got, err)
	}
	// An empty embedded one is no initrd: the agent is needed again.
	if _, err := buildInitrd(filepath.Join(dir, "no-agent-here"), dir, func() []byte { return nil }); err == nil {
		t.Error("no embedded initrd and no agent: no error")
	}
}

// TestVMInitrdCmd: `subsys vm-initrd FILE` (what make cross-windows runs)
// writes an initrd with the build's agent as /init and this host's e2fsck,
// resize2fs and mke2fs, each with its ELF interpreter; a build without an
// agent refuses.
func TestVMInitrdCmd(t *testing.T) {
	agent := bytes.Repeat([]byte("\x7fELF agent "), 100)
	out := filepath.Join(t.TempDir(), "windows-initrd.img")
	cmd := newVMInitrdCmd(Build{Agent: func() []byte { return agent }})
	cmd.SetArgs([]string{out})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	r := cpio.NewReader(f)
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read the initrd: %v", err)
		}
		names[filepath.Base(h.Name)] = true
		if h.Name == "init" {
			if body, _ := io.ReadAll(r); !bytes.Equal(body, agent) {
				t.Error("/init is not the agent")
			}
		}
	}
	for _, want := range []string{"init", "e2fsck", "resize2fs", "mke2fs", "ld-linux-x86-64.so.2"} {
		if !names[want] {
			t.Errorf("the initrd has no %s (it has %d files)", want, len(names))
		}
	}
	none := newVMInitrdCmd(Build{})
	none.SetArgs([]string{filepath.Join(t.TempDir(), "x")})
	none.SilenceUsage, none.SilenceErrors = true, true
	if err := none.Execute(); err == nil {
		t.Error("a build without an agent wrote an initrd")
	}
}
