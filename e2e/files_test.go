package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/studio-b12/gowebdav"

	"github.com/subsys-dev/subsys/api"
)

// fileReq sends a files API request and returns the reply with its body; a
// JSON reply is checked against openapi.yaml.
func (s *server) fileReq(method, path string, hdr http.Header, body io.Reader) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+"/api/v1"+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read the reply: %v", method, path, err)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		checkAgainstSpec(s.t, req, resp.StatusCode, resp.Header, raw)
	}
	return resp, raw
}

// wantFileError checks an error reply's status and code.
func wantFileError(t *testing.T, what string, resp *http.Response, raw []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status || !strings.Contains(string(raw), `"code":"`+code+`"`) {
		t.Errorf("%s = %d %s, want %d %s", what, resp.StatusCode, raw, status, code)
	}
}

// multipartBody builds a multipart/form-data body of files (name → contents)
// in the order given; names are sent as they are, "/" and all.
func multipartBody(t *testing.T, names []string, contents []string) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i, n := range names {
		h := textproto.MIMEHeader{}
		// Not CreateFormFile: it escapes nothing that matters here, but say
		// exactly what a hostile client would send.
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, n))
		h.Set("Content-Type", "application/octet-stream")
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, contents[i])
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// testFilesAPI runs every verb of the files API against the running or
// stopped distro name (the tiny busybox root file system).
func testFilesAPI(t *testing.T, s *server, name string) {
	base := "/distros/" + name + "/files"
	jsonHdr := http.Header{"Content-Type": {"application/json"}}

	// A directory: a FileList, sorted.
	resp, raw := s.fileReq("GET", base+"/etc", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get(api.HeaderFileType) != "dir" || !strings.Contains(string(raw), `"name":"passwd"`) {
		t.Fatalf("GET /etc = %d %v %s", resp.StatusCode, resp.Header, raw)
	}
	if resp, raw = s.fileReq("GET", base+"/", nil, nil); resp.StatusCode != 200 || !strings.Contains(string(raw), `"path":"/"`) || !strings.Contains(string(raw), `"name":"bin"`) {
		t.Fatalf("GET / = %d %s", resp.StatusCode, raw)
	}

	// A file: its bytes, with the headers of the contract.
	passwd := s.sh(name, "cat /etc/passwd").Stdout
	resp, raw = s.fileReq("GET", base+"/etc/passwd", nil, nil)
	if resp.StatusCode != 200 || string(raw) != passwd || resp.Header.Get(api.HeaderFileType) != "file" ||
		resp.Header.Get("Content-Type") != "application/octet-stream" || resp.Header.Get("Last-Modified") == "" ||
		resp.Header.Get("Content-Length") != fmt.Sprint(len(passwd)) {
		t.Fatalf("GET /etc/passwd = %d %v %q", resp.StatusCode, resp.Header, raw)
	}
	resp, raw = s.fileReq("GET", base+"/etc/passwd", http.Header{"Range": {"bytes=0-3"}}, nil)
	if resp.StatusCode != http.StatusPartialContent || string(raw) != "root" {
		t.Errorf("GET with Range = %d %q", resp.StatusCode, raw)
	}
	resp, raw = s.fileReq("GET", base+"/etc/passwd", http.Header{"Range": {"bytes=5-"}}, nil)
	if resp.StatusCode != http.StatusPartialContent || string(raw) != passwd[5:] {
		t.Errorf("GET with an open Range = %d %q", resp.StatusCode, raw)
	}

	// A /proc file's size is 0; its contents come whole.
	if resp, raw = s.fileReq("GET", base+"/proc/version", nil, nil); resp.StatusCode != 200 || len(raw) == 0 || string(raw) != s.sh(name, "cat /proc/version").Stdout {
		t.Errorf("GET /proc/version = %d %q", resp.StatusCode, raw)
	}

	// PUT: as root with a mode, then as alice in her home.
	resp, raw = s.fileReq("PUT", base+"/root/secret?mode=0600&user=root", nil, strings.NewReader("root only\n"))
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"mode":"0600"`) || !strings.Contains(string(raw), `"user":"root"`) {
		t.Fatalf("PUT /root/secret = %d %s", resp.StatusCode, raw)
	}
	if got := s.sh(name, "ls -l /root/secret").Stdout; !strings.HasPrefix(got, "-rw-------") {
		t.Errorf("ls -l /root/secret = %q", got)
	}
	resp, raw = s.fileReq("PUT", base+"/home/alice/note%20one.txt?user=alice", nil, strings.NewReader("hello from alice"))
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"user":"alice"`) || !strings.Contains(string(raw), `"path":"/home/alice/note one.txt"`) {
		t.Fatalf("PUT as alice = %d %s", resp.StatusCode, raw)
	}
	if got := s.sh(name, "cat '/home/alice/note one.txt'").Stdout; got != "hello from alice" {
		t.Errorf("alice's file = %q", got)
	}

	// Permissions are the user's: alice cannot read root's 0600 file, root can.
	resp, raw = s.fileReq("GET", base+"/root/secret?user=alice", nil, nil)
	wantFileError(t, "GET /root/secret as alice", resp, raw, 403, api.CodePermissionDenied)
	if resp, raw = s.fileReq("GET", base+"/root/secret?user=root", nil, nil); resp.StatusCode != 200 || string(raw) != "root only\n" {
		t.Errorf("GET /root/secret as root = %d %q", resp.StatusCode, raw)
	}
	resp, raw = s.fileReq("PUT", base+"/etc/evil?user=alice", nil, strings.NewReader("x"))
	wantFileError(t, "PUT /etc/evil as alice", resp, raw, 403, api.CodePermissionDenied)

	// Symlinks resolve inside the distro's root, whatever they say. The
	// host's marker is reachable through /mnt/host, which proves the probe
	// would see an escape.
	marker, err := os.CreateTemp("/tmp", "subsys-files-marker-")
	if err != nil {
		t.Fatal(err)
	}
	marker.WriteString("host side")
	marker.Close()
	t.Cleanup(func() { os.Remove(marker.Name()) })
	mname := filepath.Base(marker.Name())
	if r := s.sh(name, "busybox ln -s /../../.. /up && busybox ln -s /proc/1/root /pid1root && busybox ln -s ../../../../tmp /reltmp && busybox ln -s /mnt/host/tmp /hosttmp"); r.ExitCode != 0 {
		t.Fatalf("make symlinks: %+v", r)
	}
	if resp, raw = s.fileReq("GET", base+"/hosttmp/"+mname+"?user=root", nil, nil); resp.StatusCode != 200 || string(raw) != "host side" {
		t.Fatalf("the host's marker through /mnt/host = %d %q; the escape probes below would prove nothing", resp.StatusCode, raw)
	}
	for _, p := range []string{"/up/tmp/" + mname, "/reltmp/" + mname, "/pid1root/tmp/" + mname} {
		resp, raw = s.fileReq("GET", base+p+"?user=root", nil, nil)
		wantFileError(t, "GET "+p, resp, raw, 404, api.CodeFileNotFound)
	}
	for _, p := range []string{"/up", "/pid1root"} {
		var l api.FileList
		resp, raw = s.fileReq("GET", base+p+"?user=root", nil, nil)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d %s", p, resp.StatusCode, raw)
			continue
		}
		jsonUnmarshal(t, raw, &l)
		if !hasEntry(l, "pid1root") || !hasEntry(l, "etc") {
			t.Errorf("GET %s lists %s, want the distro's root", p, raw)
		}
	}
	resp, raw = s.fileReq("GET", base+"/up?stat=1", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"type":"symlink"`) || !strings.Contains(string(raw), `"target":"/../../.."`) {
		t.Errorf("stat /up = %d %s", resp.StatusCode, raw)
	}

	// mkdir
	resp, raw = s.fileReq("POST", base+"/data/a/b", jsonHdr, strings.NewReader(`{"action":"mkdir","parents":true}`))
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"type":"dir"`) {
		t.Fatalf("mkdir -p = %d %s", resp.StatusCode, raw)
	}
	resp, raw = s.fileReq("POST", base+"/data/a", jsonHdr, strings.NewReader(`{"action":"mkdir"}`))
	wantFileError(t, "mkdir of an existing dir", resp, raw, 409, api.CodeFileExists)
	resp, raw = s.fileReq("POST", base+"/nope/a", jsonHdr, strings.NewReader(`{"action":"mkdir"}`))
	wantFileError(t, "mkdir without parent", resp, raw, 404, api.CodeFileNotFound)

	// rename, never replacing
	resp, raw = s.fileReq("POST", base+"/home/alice/note%20one.txt", jsonHdr, strings.NewReader(`{"action":"rename","to":"/data/note.txt"}`))
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"path":"/data/note.txt"`) {
		t.Fatalf("rename = %d %s", resp.StatusCode, raw)
	}
	resp, raw = s.fileReq("POST", base+"/data/note.txt", jsonHdr, strings.NewReader(`{"action":"rename","to":"/data/a"}`))
	wantFileError(t, "rename onto an existing path", resp, raw, 409, api.CodeFileExists)
	resp, raw = s.fileReq("POST", base+"/data/note.txt", jsonHdr, strings.NewReader(`{"action":"rename","to":"relative"}`))
	wantFileError(t, "rename to a relative path", resp, raw, 400, api.CodeInvalidPath)

	// upload: a bad name anywhere refuses the whole upload before any write
	body, ct := multipartBody(t, []string{"first.txt", "../evil.txt"}, []string{"1", "2"})
	resp, raw = s.fileReq("POST", base+"/data", http.Header{"Content-Type": {ct}}, body)
	wantFileError(t, "upload with ../evil.txt", resp, raw, 400, api.CodeInvalidPath)
	for _, bad := range []string{"a/b.txt", ".", ".."} {
		body, ct = multipartBody(t, []string{bad}, []string{"x"})
		resp, raw = s.fileReq("POST", base+"/data", http.Header{"Content-Type": {ct}}, body)
		wantFileError(t, "upload of "+bad, resp, raw, 400, api.CodeInvalidPath)
	}
	if r := s.sh(name, "ls /data /; test -e /data/first.txt || echo no-first; test -e /evil.txt || echo no-evil"); !strings.Contains(r.Stdout, "no-first") || !strings.Contains(r.Stdout, "no-evil") {
		t.Errorf("after refused uploads: %q", r.Stdout)
	}
	body, ct = multipartBody(t, []string{"x.txt", "y.txt"}, []string{"ex", "why"})
	resp, raw = s.fileReq("POST", base+"/data?user=root", http.Header{"Content-Type": {ct}}, body)
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"name":"x.txt"`) || !strings.Contains(string(raw), `"name":"y.txt"`) {
		t.Fatalf("upload = %d %s", resp.StatusCode, raw)
	}
	if got := s.sh(name, "cat /data/x.txt /data/y.txt").Stdout; got != "exwhy" {
		t.Errorf("uploaded = %q", got)
	}

	// archive
	resp, raw = s.fileReq("GET", base+"/data?archive=tar.gz", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/gzip" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename=data.tar.gz` {
		t.Fatalf("archive = %d %v", resp.StatusCode, resp.Header)
	}
	names := strings.Join(tarNames(t, raw), " ")
	for _, want := range []string{"./a/b", "./note.txt", "./x.txt", "./y.txt"} {
		if !strings.Contains(names, want) {
			t.Errorf("archive holds %s, want %s among them", names, want)
		}
	}
	resp, raw = s.fileReq("GET", base+"/data/x.txt?archive=tar.gz", nil, nil)
	if names := strings.Join(tarNames(t, raw), " "); resp.Header.Get("Content-Disposition") != `attachment; filename=x.txt.tar.gz` || names != "x.txt" {
		t.Errorf("archive of a file = %v %s", resp.Header, names)
	}
	// The whole root: the distro's files, not what is mounted in it
	// (/proc, and the host's root at /mnt/host).
	resp, raw = s.fileReq("GET", base+"/?archive=tar.gz&user=root", nil, nil)
	if resp.Header.Get("Content-Disposition") != `attachment; filename=root.tar.gz` {
		t.Errorf("archive of / = %v", resp.Header)
	}
	names = strings.Join(tarNames(t, raw), " ")
	if !strings.Contains(names, "./etc/passwd") || !strings.Contains(names, "./mnt/host/") ||
		strings.Contains(names, "./mnt/host/"+strings.TrimPrefix(marker.Name(), "/")) || strings.Contains(names, "./proc/self") {
		t.Errorf("archive of / holds %.2000s", names)
	}

	// An unreadable entry midway breaks the download: never a short archive
	// that passes for whole.
	req, _ := http.NewRequest("GET", s.url+"/api/v1"+base+"/root?archive=tar.gz&user=alice", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && rerr == nil {
			t.Errorf("archive of /root as alice (secret is 0600) ended cleanly")
		}
	}

	// delete
	resp, raw = s.fileReq("DELETE", base+"/data", nil, nil)
	wantFileError(t, "DELETE of a full dir", resp, raw, 409, api.CodeDirectoryNotEmpty)
	resp, raw = s.fileReq("DELETE", base+"/", nil, nil)
	wantFileError(t, "DELETE /", resp, raw, 400, api.CodeInvalidPath)
	// A recursive delete does not go into what is mounted below (as the
	// host's root is at /mnt/host; a tmpfs stands in for it here, so that a
	// failure costs nothing): it removes the rest and says so.
	if r := s.sh(name, "mkdir -p /mnttest/m && mount -t tmpfs none /mnttest/m && touch /mnttest/m/kept /mnttest/beside"); r.ExitCode != 0 {
		t.Fatalf("mount a tmpfs: %+v", r)
	}
	resp, raw = s.fileReq("DELETE", base+"/mnttest?recursive=1&user=root", nil, nil)
	wantFileError(t, "DELETE -r of a tree with a mount", resp, raw, 409, api.CodeDirectoryNotEmpty)
	if r := s.sh(name, "test -e /mnttest/beside || echo gone; test -e /mnttest/m/kept && echo kept; umount /mnttest/m"); r.Stdout != "gone\nkept\n" {
		t.Errorf("after DELETE -r /mnttest: %q", r.Stdout)
	}
	resp, raw = s.fileReq("DELETE", base+"/root/secret?user=alice", nil, nil)
	wantFileError(t, "DELETE /root/secret as alice", resp, raw, 403, api.CodePermissionDenied)
	if resp, raw = s.fileReq("DELETE", base+"/data?recursive=1", nil, nil); resp.StatusCode != 204 {
		t.Fatalf("DELETE -r = %d %s", resp.StatusCode, raw)
	}
	resp, raw = s.fileReq("GET", base+"/data", nil, nil)
	wantFileError(t, "GET of a deleted dir", resp, raw, 404, api.CodeFileNotFound)

	// the other errors
	resp, raw = s.fileReq("GET", "/distros/ghost/files/etc", nil, nil)
	wantFileError(t, "GET in a missing distro", resp, raw, 404, api.CodeDistroNotFound)
	resp, raw = s.fileReq("GET", base+"/etc?user=ghost", nil, nil)
	wantFileError(t, "GET as a missing user", resp, raw, 404, api.CodeUserNotFound)
	resp, raw = s.fileReq("GET", base+"/etc/passwd/x", nil, nil)
	wantFileError(t, "GET under a file", resp, raw, 400, api.CodeNotADirectory)
	resp, raw = s.fileReq("PUT", base+"/etc", nil, strings.NewReader("x"))
	wantFileError(t, "PUT over a dir", resp, raw, 400, api.CodeIsADirectory)
	resp, raw = s.fileReq("GET", base+"/etc/%2E%2E/etc", nil, nil)
	wantFileError(t, "GET with ..", resp, raw, 400, api.CodeInvalidPath)

	// The Go client, with a name that needs escaping.
	c := s.client()
	ctx := context.Background()
	if _, err := c.WriteFile(ctx, name, "root", "/tmp/a b#?%.txt", "0640", strings.NewReader("odd")); err != nil {
		t.Fatal(err)
	}
	l, err := c.ListFiles(ctx, name, "", "/tmp")
	if err != nil || !hasEntry(l, "a b#?%.txt") {
		t.Fatalf("ListFiles = %+v, %v", l, err)
	}
	rc, err := c.ReadFile(ctx, name, "", "/tmp/a b#?%.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "odd" {
		t.Errorf("ReadFile = %q", got)
	}
	if _, err := c.UploadFiles(ctx, name, "", "/tmp", nil); err != nil {
		t.Errorf("an empty upload: %v", err)
	}
	var ae *api.Error
	if err := c.RemoveFile(ctx, name, "", "/tmp/nothing", false); !errors.As(err, &ae) || ae.Code != api.CodeFileNotFound {
		t.Errorf("RemoveFile of nothing = %v", err)
	}
}

func jsonUnmarshal(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
}

func hasEntry(l api.FileList, name string) bool {
	for _, e := range l.Entries {
		if e.Name == name {
			return true
		}
	}
	return false
}

// tarNames lists a tar.gz's entries, sorted.
func tarNames(t *testing.T, gz []byte) []string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	sort.Strings(names)
	return names
}

// TestFilesVersion1: every verb of the files API on a version 1 distro; the
// first request starts the stopped distro.
func TestFilesVersion1(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))
	var d api.Distro
	if s.api("GET", "/distros/tiny", nil, &d); d.State != "Stopped" {
		t.Fatalf("tiny = %+v, want stopped", d)
	}
	resp, _ := s.fileReq("GET", "/distros/tiny/files/etc/hostname?stat=1", nil, nil)
	if s.api("GET", "/distros/tiny", nil, &d); d.State != "Running" {
		t.Fatalf("after a files request tiny is %s (%d), want it started", d.State, resp.StatusCode)
	}
	testFilesAPI(t, s, "tiny")
}

// TestFilesVersion2: the same through the utility VM's agent, one distro
// start.
func TestFilesVersion2(t *testing.T) {
	s := startV2Server(t)
	s.importV2("tiny2", tinyRootfs(t))
	began := time.Now()
	if resp, raw := s.fileReq("GET", "/distros/tiny2/files/etc", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("GET /etc (boots the VM) = %d %s", resp.StatusCode, raw)
	}
	t.Logf("first files request in a cold VM: %v", time.Since(began).Round(time.Millisecond))
	testFilesAPI(t, s, "tiny2")

	// The WebDAV share works the same through the VM's agent.
	c := gowebdav.NewClient(s.url+"/dav/tiny2/", "anyone", s.token)
	if err := c.Write("/tmp/dav.txt", []byte("over dav"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Read("/tmp/dav.txt"); err != nil || string(got) != "over dav" {
		t.Fatalf("WebDAV read = %q, %v", got, err)
	}
	if entries, err := c.ReadDir("/tmp"); err != nil || len(entries) == 0 {
		t.Fatalf("WebDAV list = %v, %v", entries, err)
	}
}

// TestFilesCLI: subsys cp both ways (a file, and a directory with -r) and
// subsys files, whose names from the distro are escaped.
func TestFilesCLI(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "a.txt"), []byte("from the host"), 0o640)
	os.MkdirAll(filepath.Join(local, "tree", "sub"), 0o755)
	os.WriteFile(filepath.Join(local, "tree", "sub", "b"), []byte("deep"), 0o755)

	if out, errOut, code := s.cli(nil, "cp", filepath.Join(local, "a.txt"), "tiny:/home/alice/", "-u", "alice"); code != 0 {
		t.Fatalf("cp to the distro: %d %s %s", code, out, errOut)
	}
	if r := s.sh("tiny", "cat /home/alice/a.txt; ls -l /home/alice/a.txt"); !strings.HasPrefix(r.Stdout, "from the host-rw-r-----") || !strings.Contains(r.Stdout, "alice") {
		t.Errorf("after cp: %q", r.Stdout)
	}
	if out, errOut, code := s.cli(nil, "cp", "-r", filepath.Join(local, "tree"), "tiny:/opt"); code != 0 {
		t.Fatalf("cp -r to the distro: %d %s %s", code, out, errOut)
	}
	if r := s.sh("tiny", "cat /opt/sub/b"); r.Stdout != "deep" {
		t.Errorf("after cp -r: %+v", r)
	}
	if out, errOut, code := s.cli(nil, "cp", "tiny:/etc/passwd", local); code != 0 {
		t.Fatalf("cp from the distro: %d %s %s", code, out, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(local, "passwd")); string(b) != s.sh("tiny", "cat /etc/passwd").Stdout {
		t.Errorf("copied passwd = %q", b)
	}
	s.sh("tiny", "busybox ln -s ../../../../../etc/shadow /opt/sub/escape")
	back := filepath.Join(local, "back")
	if out, errOut, code := s.cli(nil, "cp", "-r", "tiny:/opt", back); code != 0 {
		t.Fatalf("cp -r from the distro: %d %s %s", code, out, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(back, "sub", "b")); string(b) != "deep" {
		t.Errorf("cp -r from the distro: b = %q", b)
	}
	if target, err := os.Readlink(filepath.Join(back, "sub", "escape")); err != nil || target != "../../../../../etc/shadow" {
		t.Errorf("the symlink came back as %q, %v", target, err)
	}
	if _, _, code := s.cli(nil, "cp", "tiny:/opt", back); code == 0 {
		t.Error("cp of a directory without -r succeeded")
	}
	if _, errOut, code := s.cli(nil, "cp", "tiny:/root/../etc/passwd", "tiny:/tmp/x"); code == 0 || !strings.Contains(errOut, "two distros") {
		t.Errorf("cp between distros = %d %s", code, errOut)
	}

	// subsys files: ls -l, with a hostile name escaped.
	s.sh("tiny", "touch \"$(printf '/tmp/evil\\033]0;pwned\\007name')\"")
	out, errOut, code := s.cli(nil, "files", "tiny", "/tmp")
	if code != 0 || strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `evil\x1b]0;pwned\x07name`) {
		t.Errorf("files tiny /tmp = %d %q %s", code, out, errOut)
	}
	if out, _, _ := s.cli(nil, "files", "tiny", "/opt"); !strings.Contains(out, "drwxr-xr-x") || !strings.Contains(out, "sub") {
		t.Errorf("files tiny /opt = %q", out)
	}
}
