package ns

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/vmm/agent"
)

// TestFilesStayInDistro: the agent's file operations, run in a real
// distro (the agent as PID 1, pivoted into its root), resolve every symlink
// inside the distro's root: absolute targets, climbs above /, and
// /proc/1/root. The host's marker is readable through /mnt/host (the
// host's root), which proves each probe would see it if it escaped.
func TestFilesStayInDistro(t *testing.T) {
	e := newEnv(t, "files")
	root := e.spec.RootFS
	hostDir := filepath.Dir(root) // outside the distro
	marker := filepath.Join(hostDir, "marker")
	if err := os.WriteFile(marker, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"up":     "/../../../../../../../../" + hostDir + "/marker",
		"rel":    "../../../../../../../../../" + hostDir[1:] + "/marker",
		"abs":    marker,
		"pid1":   "/proc/1/root/" + marker,
		"parent": "/..",
		"pid1up": "/proc/1/root/../../.." + marker,
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	c := e.start(t)
	ctx := context.Background()
	read := func(user, p string) (string, error) {
		r, err := c.ReadFile(ctx, user, p, 0, 0)
		if err != nil {
			return "", err
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		return string(b), err
	}
	if got, err := read("root", "/mnt/host"+marker); err != nil || got != "host" {
		t.Fatalf("the marker through /mnt/host = %q, %v; the probes below would prove nothing", got, err)
	}
	for _, p := range []string{"/up", "/rel", "/abs", "/pid1", "/parent" + marker, "/pid1up"} {
		for _, user := range []string{"root", "alice"} {
			// Not found in the distro; for alice, also refused by the
			// ptrace check of /proc/1/root.
			got, err := read(user, p)
			if !errors.Is(err, agent.ErrNoSuchFile) && !(user == "alice" && errors.Is(err, agent.ErrPermission)) {
				t.Errorf("read %s as %s = %q, %v; want not found in the distro", p, user, got, err)
			}
		}
	}
	// Writes through the links land inside the distro too.
	if _, err := c.WriteFile(ctx, "root", "/parent/tmp/planted", nil, strings.NewReader("x")); err != nil && !errors.Is(err, agent.ErrNoSuchFile) {
		t.Logf("write through /parent: %v", err)
	}
	if _, err := os.Stat(filepath.Join(hostDir, "tmp", "planted")); err == nil {
		t.Error("a write through /parent reached the host")
	}
	_, entries, err := c.ListFiles(ctx, "root", "/parent")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, en := range entries {
		found = found || en.Name == "up"
	}
	if !found {
		t.Errorf("/parent lists %v, want the distro's root", entries)
	}
}
