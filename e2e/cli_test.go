package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLI drives the verbs a WSL user knows through bin/subsys.
func TestCLI(t *testing.T) {
	s := startServer(t, "")
	dir := t.TempDir()
	tarball := filepath.Join(dir, "tiny.tar.gz")
	if err := os.WriteFile(tarball, tinyRootfs(t), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI := func(stdin []byte, args ...string) string {
		t.Helper()
		out, errOut, code := s.cli(bytes.NewReader(stdin), args...)
		if code != 0 {
			t.Fatalf("subsys %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	mustCLI(nil, "import", "one", tarball)
	raw, _ := os.ReadFile(tarball)
	mustCLI(raw, "import", "two", "-")

	out := mustCLI(nil, "list", "-v")
	want := []string{"NAME", "STATE", "VERSION", "* one", "Stopped", "  two"}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("list -v output lacks %q:\n%s", w, out)
		}
	}
	if out := mustCLI(nil, "list"); !strings.Contains(out, "one (Default)") {
		t.Errorf("list = %q, want the default marked", out)
	}

	// run: default distro, stdin, exit code passthrough, -u, --cd, -d.
	if out := mustCLI(nil, "run", "--", "hostname"); out != "one\n" {
		t.Errorf("run hostname = %q, want one (the default)", out)
	}
	if out := mustCLI([]byte("piped\n"), "run", "-d", "two", "--", "cat"); out != "piped\n" {
		t.Errorf("run cat with stdin = %q", out)
	}
	if out := mustCLI(nil, "run", "-d", "two", "-u", "alice", "--cd", "/tmp", "--", "sh", "-c", "id -un; pwd"); out != "alice\n/tmp\n" {
		t.Errorf("run -u --cd = %q", out)
	}
	stdout, stderr, code := s.cli(nil, "run", "-d", "two", "--", "sh", "-c", "echo out; echo err >&2; exit 42")
	if code != 42 || stdout != "out\n" || stderr != "err\n" {
		t.Errorf("run exit 42 = code %d out %q err %q", code, stdout, stderr)
	}
	if out := mustCLI(nil, "run", "ls", "/"); !strings.Contains(out, "bin") {
		t.Errorf("run without -- = %q", out)
	}
	if _, errOut, code := s.cli(nil, "run", "-d", "nope", "--", "true"); code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("run in an unknown distro: code %d, stderr %q; want an error naming it", code, errOut)
	}
	if out := mustCLI(nil, "list", "--running"); !strings.Contains(out, "one") || !strings.Contains(out, "two") {
		t.Errorf("list --running = %q", out)
	}

	mustCLI(nil, "set-default", "two")
	if out := mustCLI(nil, "run", "hostname"); out != "two\n" {
		t.Errorf("after set-default two, run hostname = %q", out)
	}
	mustCLI(nil, "set-user", "two", "alice")
	if out := mustCLI(nil, "run", "id", "-un"); out != "alice\n" {
		t.Errorf("after set-user, run id = %q", out)
	}
	mustCLI(nil, "terminate", "one")
	if out := mustCLI(nil, "list", "-v"); !strings.Contains(out, "one") || !strings.Contains(out, "Stopped") {
		t.Errorf("after terminate: %s", out)
	}

	exported := filepath.Join(dir, "one.tar.zst")
	mustCLI(nil, "export", "one", exported)
	if b, _ := os.ReadFile(exported); len(b) < 4 || !bytes.Equal(b[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Errorf("export to .tar.zst did not write zstd")
	}
	var buf bytes.Buffer
	if out := mustCLI(nil, "export", "one", "-", "--format", "tar"); len(out) < 1024 {
		t.Errorf("export to stdout wrote %d bytes", len(out))
	}
	buf.Reset()
	if _, errOut, code := s.cli(nil, "export", "nope", filepath.Join(dir, "nope.tar")); code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("export of an unknown distro: code %d err %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope.tar")); !os.IsNotExist(err) {
		t.Errorf("failed export left a file behind")
	}

	mustCLI(nil, "clone", "one", "three")
	mustCLI(nil, "rename", "three", "four")
	if out := mustCLI(nil, "run", "-d", "four", "hostname"); out != "four\n" {
		t.Errorf("renamed clone hostname = %q", out)
	}
	if out := mustCLI(nil, "status"); !strings.Contains(out, "Default distro: two") {
		t.Errorf("status = %q", out)
	}
	if out := mustCLI(nil, "version"); !strings.Contains(out, "server version") {
		t.Errorf("version = %q", out)
	}
	mustCLI(nil, "shutdown")
	if out := mustCLI(nil, "list", "--running"); strings.Contains(out, "one") {
		t.Errorf("after shutdown, running = %q", out)
	}
	mustCLI(nil, "unregister", "four")
	if _, errOut, code := s.cli(nil, "import", "one", tarball); code == 0 || !strings.Contains(errOut, "already exists") {
		t.Errorf("import of a taken name: code %d err %q", code, errOut)
	}

	// SUBSYS_URL and SUBSYS_TOKEN work without a data directory.
	cmd := newCLI(subsysBin, "--data", t.TempDir(), "list")
	cmd.Env = append(os.Environ(), "SUBSYS_URL="+s.url, "SUBSYS_TOKEN="+s.token)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "one") {
		t.Errorf("list with SUBSYS_URL/SUBSYS_TOKEN: %v %s", err, out)
	}
}
