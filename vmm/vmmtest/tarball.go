package vmmtest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"
)

// File is one regular file of a Tarball.
type File struct {
	// Name is the file's path in the distro, relative ("etc/motd").
	Name string
	// Body is its contents.
	Body string
	// Mode is its permission bits; 0 means 0644.
	Mode fs.FileMode
}

// Tarball returns an uncompressed tarball of a minimal distro root that
// Backend can run, with files added (their parent directories are made):
// etc/passwd and etc/group name root as the current user and group, so the
// agent runs a distro's processes without changing user (which only root
// may do). Every entry is owned by the current user too, so that an import
// of it needs no root (only root may give files away).
func Tarball(files ...File) ([]byte, error) {
	uid, gid := os.Getuid(), os.Getgid()
	base := []File{
		{Name: "etc/passwd", Body: fmt.Sprintf("root:x:%d:%d:root:/:/bin/sh\n", uid, gid)},
		{Name: "etc/group", Body: fmt.Sprintf("root:x:%d:\n", gid)},
	}
	files = append(base, files...)
	// A fixed time keeps the tarball the same from run to run.
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(h *tar.Header, body string) error {
		h.Uid, h.Gid, h.ModTime = uid, gid, mtime
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tarball: %s: %w", h.Name, err)
		}
		_, err := tw.Write([]byte(body))
		return err
	}
	if err := write(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}, ""); err != nil {
		return nil, err
	}
	dirs := map[string]bool{".": true}
	for _, f := range files {
		name := path.Clean(f.Name)
		if name == "." || path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return nil, fmt.Errorf("tarball: %q is not a relative path inside the root", f.Name)
		}
		var parents []string
		for d := path.Dir(name); !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
			dirs[d] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if err := write(&tar.Header{Typeflag: tar.TypeDir, Name: "./" + parents[i] + "/", Mode: 0o755}, ""); err != nil {
				return nil, err
			}
		}
		mode := f.Mode.Perm()
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: "./" + name, Mode: int64(mode), Size: int64(len(f.Body))}
		if err := write(h, f.Body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
