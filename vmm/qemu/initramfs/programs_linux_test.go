package initramfs

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/subsys-dev/subsys/internal/testenv"
)

// TestBuildPrograms packs the host's e2fsck and resize2fs, unpacks the
// archive and runs both in a chroot of it: with no ld.so.cache and nothing
// but what the archive holds, the loader must find every library where
// Build put it.
func TestBuildPrograms(t *testing.T) {
	testenv.RequireRoot(t, "chroot into the unpacked archive")
	e2fsck := testenv.RequireCommand(t, "e2fsck", "Debian package e2fsprogs")
	resize2fs := testenv.RequireCommand(t, "resize2fs", "Debian package e2fsprogs")
	var buf bytes.Buffer
	m, err := Build(&buf, Spec{Init: []byte("#!/bin/false\n"), Programs: []string{e2fsck, resize2fs}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{strings.TrimPrefix(e2fsck, "/"), strings.TrimPrefix(resize2fs, "/")} {
		if !slices.Contains(m.Programs, want) {
			t.Errorf("Manifest.Programs = %v, want %s in it", m.Programs, want)
		}
	}
	root := t.TempDir()
	r := cpio.NewReader(&buf)
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, h.Name)
		if h.Mode.IsDir() {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, os.FileMode(h.Mode.Perm())); err != nil {
			t.Fatal(err)
		}
	}
	for _, prog := range []string{e2fsck, resize2fs} {
		cmd := exec.Command(prog, "-V")
		cmd.Env = []string{}
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		out, err := cmd.CombinedOutput()
		// e2fsck -V exits 0; resize2fs -V prints its version and exits 1
		// for want of a device. Either way the loader ran it.
		if !strings.Contains(string(out), "1.") || (err != nil && cmd.ProcessState == nil) {
			t.Errorf("%s -V in the unpacked archive: %v: %s", prog, err, out)
		}
		if strings.Contains(string(out), "error while loading shared libraries") {
			t.Errorf("%s: %s", prog, out)
		}
	}
}

func TestBuildProgramsErrors(t *testing.T) {
	notELF := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, prog, want string }{
		{"relative", "sbin/e2fsck", "absolute"},
		{"unclean", "/sbin/../sbin/e2fsck", "absolute"},
		{"missing", "/nonexistent/prog", "no such file"},
		{"not ELF", notELF, "not an ELF file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(io.Discard, Spec{Init: []byte("x"), Programs: []string{tc.prog}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build with program %q: %v, want an error with %q", tc.prog, err, tc.want)
			}
		})
	}
}
