package hcs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// TestWriteInitrd: the initrd is a newc archive whose /init is the agent,
// executable.
func TestWriteInitrd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "initrd.img")
	agentBin := []byte("\x7fELF not really an agent")
	if err := WriteInitrd(path, agentBin, nil); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := cpio.NewReader(f)
	found := false
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "init" || h.Name == "/init" {
			data, _ := io.ReadAll(r)
			if !bytes.Equal(data, agentBin) || h.Mode.Perm()&0o111 == 0 {
				t.Errorf("/init: %d bytes, mode %v", len(data), h.Mode)
			}
			found = true
		}
	}
	if !found {
		t.Error("no /init in the initrd")
	}
	if err := WriteInitrd(path, nil, nil); err == nil {
		t.Error("an initrd without an agent was written")
	}
}
