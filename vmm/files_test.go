package vmm

import (
	"errors"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/vmm/agent"
)

// TestFilesOutdatedAgent: an agent from before the file operations answers
// an unknown op with "unsupported"; the caller is told what to do.
func TestFilesOutdatedAgent(t *testing.T) {
	f := &Files{distro: "old"}
	err := f.wrap(&agent.RemoteError{Op: "file-stat", Code: "unsupported", Message: `unsupported: op "file-stat"`})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "restart the distro") {
		t.Fatalf("wrap = %v", err)
	}
	err = f.wrap(&agent.RemoteError{Op: "file-stat", Code: "not_found", Message: "no such file"})
	if !errors.Is(err, agent.ErrNoSuchFile) || errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "distro old") {
		t.Fatalf("wrap of not_found = %v", err)
	}
}
