package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// These tests run the agent's Server in the test process, on the host's file
// system: they check the operations and their permissions. The containment
// of paths in a distro's root (the agent is the distro's PID 1, pivoted into
// it) is checked by the e2e tests on real distros (e2e/files_test.go).

// filesDir is a directory that the test's nobody user (65534) can reach.
func filesDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readAll(t *testing.T, c *Client, user, p string, off, n int64) ([]byte, error) {
	t.Helper()
	r, err := c.ReadFile(context.Background(), user, p, off, n)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestFileOps(t *testing.T) {
	c, _ := startServer(t)
	ctx := context.Background()
	dir := filesDir(t)

	// write, stat, read, ranges
	fi, err := c.WriteFile(ctx, "", dir+"/a.txt", nil, strings.NewReader("hello world"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Type != FileTypeFile || fi.Size != 11 || fi.Mode != 0o644 || fi.User != "root" || fi.Group != "root" || fi.Name != "a.txt" {
		t.Fatalf("write: %+v", fi)
	}
	if b, err := readAll(t, c, "", dir+"/a.txt", 0, 0); err != nil || string(b) != "hello world" {
		t.Fatalf("read = %q, %v", b, err)
	}
	if b, err := readAll(t, c, "", dir+"/a.txt", 6, 3); err != nil || string(b) != "wor" {
		t.Fatalf("range read = %q, %v", b, err)
	}
	if b, err := readAll(t, c, "", dir+"/a.txt", 20, 0); err != nil || len(b) != 0 {
		t.Fatalf("read past the end = %q, %v", b, err)
	}
	mode := uint32(0o4750)
	if fi, err = c.WriteFile(ctx, "", dir+"/a.txt", &mode, strings.NewReader("x")); err != nil || fi.Mode != 0o4750 || fi.Size != 1 {
		t.Fatalf("rewrite with mode: %+v, %v", fi, err)
	}
	// Replacing keeps the mode when none is given.
	if fi, err = c.WriteFile(ctx, "", dir+"/a.txt", nil, strings.NewReader("yy")); err != nil || fi.Mode != 0o4750 {
		t.Fatalf("rewrite: %+v, %v", fi, err)
	}

	// symlinks: stat reports the link, read follows it
	if err := os.Symlink("a.txt", dir+"/link"); err != nil {
		t.Fatal(err)
	}
	if fi, err = c.StatFile(ctx, "", dir+"/link", false); err != nil || fi.Type != FileTypeSymlink || fi.Target != "a.txt" {
		t.Fatalf("stat link: %+v, %v", fi, err)
	}
	if fi, err = c.StatFile(ctx, "", dir+"/link", true); err != nil || fi.Type != FileTypeFile {
		t.Fatalf("stat link, following: %+v, %v", fi, err)
	}
	if b, err := readAll(t, c, "", dir+"/link", 0, 0); err != nil || string(b) != "yy" {
		t.Fatalf("read through link = %q, %v", b, err)
	}

	// mkdir, list, rename, remove
	if fi, err = c.Mkdir(ctx, "", dir+"/d", false); err != nil || fi.Type != FileTypeDir {
		t.Fatalf("mkdir: %+v, %v", fi, err)
	}
	if _, err = c.Mkdir(ctx, "", dir+"/d", false); !errors.Is(err, ErrFileExists) {
		t.Fatalf("mkdir of an existing dir = %v, want ErrFileExists", err)
	}
	if _, err = c.Mkdir(ctx, "", dir+"/d", true); err != nil {
		t.Fatalf("mkdir -p of an existing dir = %v", err)
	}
	if _, err = c.Mkdir(ctx, "", dir+"/p/q/r", true); err != nil {
		t.Fatalf("mkdir -p = %v", err)
	}
	if _, err = c.Mkdir(ctx, "", dir+"/x/y", false); !errors.Is(err, ErrNoSuchFile) {
		t.Fatalf("mkdir without parent = %v, want ErrNoSuchFile", err)
	}
	dinfo, entries, err := c.ListFiles(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name+":"+e.Type)
	}
	if got := strings.Join(names, " "); dinfo.Type != FileTypeDir || got != "a.txt:file d:dir link:symlink p:dir" {
		t.Fatalf("list = %q (%+v)", got, dinfo)
	}
	if _, _, err := c.ListFiles(ctx, "", dir+"/a.txt"); !errors.Is(err, ErrNotDir) {
		t.Fatalf("list of a file = %v, want ErrNotDir", err)
	}
	if _, err := c.ReadFile(ctx, "", dir+"/d", 0, 0); !errors.Is(err, ErrIsDir) {
		t.Fatalf("read of a dir = %v, want ErrIsDir", err)
	}
	if _, err := c.ReadFile(ctx, "", "/dev/null", 0, 0); !errors.Is(err, ErrInvalidPath) {
		t.Fatalf("read of a device = %v, want ErrInvalidPath", err)
	}
	if _, err := c.Rename(ctx, "", dir+"/a.txt", dir+"/d"); !errors.Is(err, ErrFileExists) {
		t.Fatalf("rename over a dir = %v, want ErrFileExists", err)
	}
	if fi, err = c.Rename(ctx, "", dir+"/a.txt", dir+"/d/b.txt"); err != nil || fi.Path != dir+"/d/b.txt" {
		t.Fatalf("rename: %+v, %v", fi, err)
	}
	if err := c.RemoveFile(ctx, "", dir+"/d", false); !errors.Is(err, ErrDirNotEmpty) {
		t.Fatalf("remove of a full dir = %v, want ErrDirNotEmpty", err)
	}
	if err := c.RemoveFile(ctx, "", dir+"/d", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir + "/d"); !os.IsNotExist(err) {
		t.Fatalf("d still there: %v", err)
	}
	if err := c.RemoveFile(ctx, "", dir+"/d", true); !errors.Is(err, ErrNoSuchFile) {
		t.Fatalf("remove of a missing path = %v, want ErrNoSuchFile", err)
	}
	// Removing a symlink removes the link, never its target.
	if err := c.RemoveFile(ctx, "", dir+"/link", false); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveFile(ctx, "", "/", true); !errors.Is(err, ErrInvalidPath) {
		t.Fatalf("remove / = %v, want ErrInvalidPath", err)
	}
	for _, bad := range []string{"", "rel", "/a/../b", "/a//b", "/a/./b", "/a\x00b"} {
		if _, err := c.StatFile(ctx, "", bad, false); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("stat %q = %v, want ErrInvalidPath", bad, err)
		}
	}
	if _, err := c.StatFile(ctx, "ghost", dir, false); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("stat as a missing user = %v, want ErrUserNotFound", err)
	}
}

// TestFilePermissions: the operations run with the user's credentials; the
// agent's root never leaks into them.
func TestFilePermissions(t *testing.T) {
	c, _ := startServer(t)
	ctx := context.Background()
	dir := filesDir(t)
	if err := os.WriteFile(dir+"/secret", []byte("root only"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The probe can see the positive: root reads it.
	if b, err := readAll(t, c, "root", dir+"/secret", 0, 0); err != nil || string(b) != "root only" {
		t.Fatalf("root read = %q, %v", b, err)
	}
	if _, err := c.ReadFile(ctx, "nobody", dir+"/secret", 0, 0); !errors.Is(err, ErrPermission) {
		t.Fatalf("nobody read = %v, want ErrPermission", err)
	}
	if _, err := c.ArchiveFiles(ctx, "nobody", dir+"/secret"); !errors.Is(err, ErrPermission) {
		t.Fatalf("nobody archive = %v, want ErrPermission", err)
	}
	if _, err := c.WriteFile(ctx, "nobody", dir+"/new", nil, strings.NewReader("x")); !errors.Is(err, ErrPermission) {
		t.Fatalf("nobody write in root's dir = %v, want ErrPermission", err)
	}
	if err := c.RemoveFile(ctx, "nobody", dir+"/secret", false); !errors.Is(err, ErrPermission) {
		t.Fatalf("nobody remove = %v, want ErrPermission", err)
	}
	if _, err := os.Stat(dir + "/secret"); err != nil {
		t.Fatal(err)
	}
	// A directory of nobody's own: what it creates is nobody's, and the
	// supplementary group (users, 100) applies.
	own := dir + "/own"
	os.Mkdir(own, 0o755)
	os.Chown(own, 65534, 65534)
	fi, err := c.WriteFile(ctx, "nobody", own+"/f", nil, strings.NewReader("mine"))
	if err != nil || fi.User != "nobody" || fi.UID != 65534 || fi.Group != "nogroup" {
		t.Fatalf("nobody write = %+v, %v", fi, err)
	}
	grp := dir + "/grp"
	os.Mkdir(grp, 0o770)
	os.Chmod(grp, 0o770)
	os.Chown(grp, 0, 100)
	if _, err := c.WriteFile(ctx, "nobody", grp+"/g", nil, strings.NewReader("via group")); err != nil {
		t.Fatalf("write through the supplementary group: %v", err)
	}
	// Root replacing nobody's file keeps it nobody's.
	if fi, err = c.WriteFile(ctx, "root", own+"/f", nil, strings.NewReader("edited")); err != nil || fi.User != "nobody" {
		t.Fatalf("root rewrite = %+v, %v", fi, err)
	}
	// The agent's own credentials are untouched.
	if os.Getuid() != 0 || os.Geteuid() != 0 {
		t.Fatal("the agent's credentials changed")
	}
}

// TestFileWriteAtomic: a write that fails leaves the old file as it was, and
// no temporary file behind.
func TestFileWriteAtomic(t *testing.T) {
	c, _ := startServer(t)
	dir := filesDir(t)
	p := dir + "/f"
	os.WriteFile(p, []byte("old contents"), 0o644)
	big := strings.Repeat("n", 3*dataChunk)
	// The upload's source fails midway.
	r := io.MultiReader(strings.NewReader(big), iotest.ErrReader(errors.New("disk on fire")))
	if _, err := c.WriteFile(context.Background(), "", p, nil, r); err == nil {
		t.Fatal("write with a failing source succeeded")
	}
	// The context ends midway.
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(big))
		cancel()
		pw.CloseWithError(errors.New("cancelled"))
	}()
	if _, err := c.WriteFile(ctx, "", p, nil, pr); err == nil {
		t.Fatal("cancelled write succeeded")
	}
	// And one that goes through, to prove the probe sees a change.
	waitFor(t, func() bool {
		entries, _ := os.ReadDir(dir)
		return len(entries) == 1
	})
	if b, _ := os.ReadFile(p); string(b) != "old contents" {
		t.Fatalf("after failed writes: %q", b)
	}
	if _, err := c.WriteFile(context.Background(), "", p, nil, strings.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != big {
		t.Fatalf("after the write: %d bytes", len(b))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
	// The parent must exist; a directory is not replaced.
	if _, err := c.WriteFile(context.Background(), "", dir+"/no/f", nil, strings.NewReader("x")); !errors.Is(err, ErrNoSuchFile) {
		t.Fatalf("write without parent = %v", err)
	}
	os.Mkdir(dir+"/d", 0o755)
	if _, err := c.WriteFile(context.Background(), "", dir+"/d", nil, strings.NewReader("x")); !errors.Is(err, ErrIsDir) {
		t.Fatalf("write over a dir = %v", err)
	}
}

func TestFileArchive(t *testing.T) {
	c, _ := startServer(t)
	dir := filesDir(t)
	os.MkdirAll(dir+"/t/sub", 0o755)
	os.WriteFile(dir+"/t/a", []byte("A"), 0o644)
	os.WriteFile(dir+"/t/sub/b", []byte("BB"), 0o600)
	os.Symlink("/etc/passwd", dir+"/t/l")
	read := func(p string) map[string]string {
		t.Helper()
		rc, err := c.ArchiveFiles(context.Background(), "", p)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		zr, err := gzip.NewReader(rc)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		got := map[string]string{}
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			io.Copy(&b, tr)
			got[h.Name] = b.String() + h.Linkname
		}
		return got
	}
	got := read(dir + "/t")
	if got["./a"] != "A" || got["./sub/b"] != "BB" || got["./l"] != "/etc/passwd" {
		t.Fatalf("archive of a dir: %v", got)
	}
	if got := read(dir + "/t/a"); len(got) != 1 || got["a"] != "A" {
		t.Fatalf("archive of a file: %v", got)
	}
}

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/etc", "/etc", true},
		{"/etc/", "/etc", true},
		{"/a b/ü", "/a b/ü", true},
		{"", "", false},
		{"etc", "", false},
		{"//", "", false},
		{"/etc//passwd", "", false},
		{"/etc/../x", "", false},
		{"/..", "", false},
		{"/./x", "", false},
		{"/x\x00", "", false},
	} {
		got, err := CleanPath(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("CleanPath(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidPath) {
			t.Errorf("CleanPath(%q) error %v is not ErrInvalidPath", tc.in, err)
		}
	}
	for name, ok := range map[string]bool{"a": true, "a b.txt": true, "": false, ".": false, "..": false, "a/b": false, "/": false, "a\x00": false, "...": true} {
		if ValidFileName(name) != ok {
			t.Errorf("ValidFileName(%q) = %v", name, !ok)
		}
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/etc/", "a/../b", "/x//y", "/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := CleanPath(s)
		if err != nil {
			return
		}
		if p[0] != '/' || filepath.Clean(p) != p || strings.Contains(p, "\x00") {
			t.Fatalf("CleanPath(%q) = %q", s, p)
		}
		for _, el := range strings.Split(p[1:], "/") {
			if p != "/" && !ValidFileName(el) {
				t.Fatalf("CleanPath(%q) = %q has element %q", s, p, el)
			}
		}
	})
}

func FuzzValidFileName(f *testing.F) {
	for _, s := range []string{"a", ".", "..", "a/b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidFileName(s) {
			return
		}
		if filepath.Base("/d/"+s) != s || strings.ContainsAny(s, "/\x00") || s == "." || s == ".." {
			t.Fatalf("ValidFileName(%q) accepted it", s)
		}
	})
}

// TestFileUserHasNoCapabilities: a user's operation keeps none of the
// agent's capabilities. CAP_SYS_PTRACE would let it read another user's
// /proc/PID/maps (mode 0444, then a ptrace check) or follow /proc/PID/root;
// the probe is a root process of the test's own, whose maps root can read.
func TestFileUserHasNoCapabilities(t *testing.T) {
	c, _ := startServer(t)
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	maps := fmt.Sprintf("/proc/%d/maps", sleeper.Process.Pid)
	if _, err := readAll(t, c, "root", maps, 0, 0); err != nil {
		t.Fatalf("root cannot read %s: %v", maps, err)
	}
	if _, err := readAll(t, c, "nobody", maps, 0, 0); !errors.Is(err, ErrPermission) {
		t.Fatalf("nobody read %s: %v, want ErrPermission", maps, err)
	}
	root := fmt.Sprintf("/proc/%d/root", sleeper.Process.Pid)
	if _, _, err := c.ListFiles(context.Background(), "nobody", root); !errors.Is(err, ErrPermission) {
		t.Fatalf("nobody listed %s: %v, want ErrPermission", root, err)
	}
}
