package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/studio-b12/gowebdav"

	"github.com/subsys-dev/subsys/client"
)

// davRequest sends one raw WebDAV request to s with Basic credentials
// (password pass; none when pass is empty) and extra headers.
func (s *server) davRequest(method, path, pass string, hdr http.Header, body string) (int, http.Header, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+"/dav/"+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if pass != "" {
		req.SetBasicAuth("whoever", pass)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

// TestDAVClient: a real WebDAV client library lists, reads, writes, moves
// and deletes a version 1 distro's files through /dav/{name}/.
func TestDAVClient(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))
	c := gowebdav.NewClient(s.url+"/dav/tiny/", "anyone", s.token)

	entries, err := c.ReadDir("/etc")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !strings.Contains(strings.Join(names, " "), "passwd") {
		t.Fatalf("PROPFIND /etc lists %v", names)
	}
	passwd := s.sh("tiny", "cat /etc/passwd").Stdout
	if got, err := c.Read("/etc/passwd"); err != nil || string(got) != passwd {
		t.Fatalf("GET /etc/passwd = %q, %v", got, err)
	}
	rs, err := c.ReadStreamRange("/etc/passwd", 5, 4)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(rs)
	rs.Close()
	if string(part) != passwd[5:9] {
		t.Errorf("GET with Range = %q, want %q", part, passwd[5:9])
	}

	if err := c.Mkdir("/srv", 0o755); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	if err := c.WriteStream("/srv/big.bin", bytes.NewReader(big), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := s.sh("tiny", "wc -c < /srv/big.bin").Stdout; strings.TrimSpace(got) != "1048576" {
		t.Fatalf("PUT wrote %q bytes", got)
	}
	if err := c.Rename("/srv/big.bin", "/srv/moved.bin", false); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Read("/srv/moved.bin"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("after MOVE: %d bytes, %v", len(got), err)
	}
	fi, err := c.Stat("/srv/moved.bin")
	if err != nil || fi.Size() != int64(len(big)) {
		t.Fatalf("PROPFIND of a file = %v, %v", fi, err)
	}
	if err := c.Copy("/srv/moved.bin", "/srv/copy.bin", false); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove("/srv/moved.bin"); err != nil {
		t.Fatal(err)
	}
	if r := s.sh("tiny", "ls /srv"); strings.TrimSpace(r.Stdout) != "copy.bin" {
		t.Fatalf("after COPY and DELETE /srv holds %q", r.Stdout)
	}
	if err := c.RemoveAll("/srv"); err != nil {
		t.Fatal(err)
	}
	if r := s.sh("tiny", "test -e /srv || echo gone"); r.Stdout != "gone\n" {
		t.Fatalf("DELETE of a directory: %q", r.Stdout)
	}

	// A PUT whose body breaks off leaves the old file as it was.
	brokenPut(t, s, "/dav/tiny/etc/passwd", "Basic "+basic("x", s.token))
	if got := s.sh("tiny", "cat /etc/passwd").Stdout; got != passwd {
		t.Fatalf("a broken PUT changed /etc/passwd to %q", got)
	}
	brokenPut(t, s, "/api/v1/distros/tiny/files/etc/passwd", "Bearer "+s.token)
	if got := s.sh("tiny", "cat /etc/passwd; ls -a /etc").Stdout; !strings.HasPrefix(got, passwd) || strings.Contains(got, ".subsys-") {
		t.Fatalf("a broken files API PUT left %q", got)
	}

	// Walks without bound are refused: an infinite PROPFIND, a copy into
	// itself.
	if st, _, body := s.davRequest("PROPFIND", "tiny/", s.token, http.Header{"Depth": {"infinity"}}, ""); st != http.StatusForbidden {
		t.Errorf("PROPFIND Depth infinity = %d %.200s", st, body)
	}
	s.sh("tiny", "mkdir -p /loop/sub && touch /loop/sub/deep")
	if st, _, body := s.davRequest("PROPFIND", "tiny/loop/", s.token, nil, ""); st != 207 || !strings.Contains(body, "/loop/sub/") || strings.Contains(body, "deep") {
		t.Errorf("PROPFIND without Depth = %d %.600s, want depth 1", st, body)
	}
	for _, m := range []string{"COPY", "MOVE"} {
		if st, _, body := s.davRequest(m, "tiny/loop", s.token, http.Header{"Destination": {s.url + "/dav/tiny/loop/sub/x"}}, ""); st != http.StatusForbidden {
			t.Errorf("%s into itself = %d %.200s", m, st, body)
		}
	}
	if st, _, body := s.davRequest("COPY", "tiny/loop", s.token, http.Header{"Destination": {s.url + "/dav/tiny/loop2"}}, ""); st != 201 {
		t.Errorf("COPY beside itself = %d %.200s", st, body)
	}

	// Credentials: the token is the password; anything else is refused.
	bad := gowebdav.NewClient(s.url+"/dav/tiny/", "anyone", "not-the-token")
	if _, err := bad.ReadDir("/"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	st, hdr, _ := s.davRequest("PROPFIND", "tiny/", "", http.Header{"Depth": {"1"}}, "")
	if st != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("no credentials = %d %v, want 401 with a Basic challenge", st, hdr)
	}
	// A session cookie, or anything cookie-like, is no credential.
	if st, hdr, _ := s.davRequest("PROPFIND", "tiny/", "", http.Header{"Depth": {"1"}, "Cookie": {"session=" + s.token}}, ""); st != http.StatusUnauthorized || hdr.Get("Set-Cookie") != "" {
		t.Errorf("a cookie = %d %v", st, hdr)
	}
	if st, _, _ := s.davRequest("PROPFIND", "ghost/", s.token, http.Header{"Depth": {"1"}}, ""); st != http.StatusNotFound {
		t.Errorf("a missing distro = %d", st)
	}
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// brokenPut sends a PUT of /etc/passwd in distro tiny that announces 1 MiB,
// sends 10 bytes, waits until the agent's temporary file exists (so the
// write is under way) and hangs up; it returns once the temporary file is
// gone again.
func brokenPut(t *testing.T, s *server, path, auth string) {
	t.Helper()
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Length: 1048576\r\n\r\nten bytes!", path, s.addr, auth)
	temp := func() bool { return strings.Contains(s.sh("tiny", "ls -a /etc").Stdout, ".passwd.subsys-") }
	waitFor(t, 10*time.Second, "the temporary file of "+path, temp)
	conn.Close()
	waitFor(t, 10*time.Second, "the temporary file of "+path+" to go", func() bool { return !temp() })
}

// TestDAVRefusesBrowsers: a browser sends cached Basic credentials by
// itself, so every request that carries a browser's headers is refused,
// valid credentials and all, and changes nothing; the same requests
// without those headers go through, which proves the probes.
func TestDAVRefusesBrowsers(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))
	if r := s.sh("tiny", "mkdir -p /w/dir && echo keep > /w/keep && echo move > /w/move"); r.ExitCode != 0 {
		t.Fatal(r)
	}
	state := func() string { return s.sh("tiny", "ls -R /w; cat /w/keep").Stdout }
	before := state()
	browser := []http.Header{
		{"Origin": {"http://evil.example"}},
		{"Origin": {s.url}}, // even our own origin: the dashboard never uses /dav/
		{"Origin": {"null"}},
		{"Sec-Fetch-Site": {"cross-site"}},
		{"Sec-Fetch-Site": {"same-origin"}},
		{"Sec-Fetch-Site": {"none"}},
		{"Sec-Fetch-Mode": {"no-cors"}},
		{"Sec-Fetch-Dest": {"empty"}},
	}
	type attack struct {
		method, path string
		hdr          http.Header
		body         string
		ok           int // the status without browser headers
		check        string
	}
	attacks := []attack{
		{"PROPFIND", "tiny/w/", http.Header{"Depth": {"1"}}, "", 207, ""},
		{"PUT", "tiny/w/keep", nil, "overwritten", 201, "overwritten"},
		{"MOVE", "tiny/w/move", http.Header{"Destination": {s.url + "/dav/tiny/w/moved"}}, "", 201, "moved"},
		{"MKCOL", "tiny/w/newdir", nil, "", 201, "newdir"},
		{"DELETE", "tiny/w/dir", nil, "", 204, "-dir"},
		{"GET", "tiny/w/keep", nil, "", 200, ""},
	}
	for _, a := range attacks {
		for _, bh := range browser {
			h := http.Header{}
			for k, v := range a.hdr {
				h[k] = v
			}
			for k, v := range bh {
				h[k] = v
			}
			st, _, body := s.davRequest(a.method, a.path, s.token, h, a.body)
			if st != http.StatusForbidden || !strings.Contains(body, "forbidden_origin") {
				t.Errorf("%s %s with %v = %d %.200s, want 403 forbidden_origin", a.method, a.path, bh, st, body)
			}
		}
		if after := state(); after != before {
			t.Fatalf("refused %s requests changed the distro:\nbefore %q\nafter  %q", a.method, before, after)
		}
	}
	// Without the browser headers each request works.
	for _, a := range attacks {
		st, _, body := s.davRequest(a.method, a.path, s.token, a.hdr, a.body)
		if st != a.ok {
			t.Errorf("%s %s without browser headers = %d %.200s, want %d", a.method, a.path, st, body, a.ok)
		}
	}
	after := state()
	for _, want := range []string{"overwritten", "moved", "newdir"} {
		if !strings.Contains(after, want) {
			t.Errorf("after the plain requests the distro shows %q, want %q in it", after, want)
		}
	}
	if strings.Contains(after, "/w/dir:") {
		t.Errorf("DELETE left /w/dir: %q", after)
	}
	// The Host check (DNS rebinding) applies here as everywhere.
	req, _ := http.NewRequest("PROPFIND", s.url+"/dav/tiny/", nil)
	req.Host = "evil.example:80"
	req.SetBasicAuth("x", s.token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("Host evil.example = %d, want 403", resp.StatusCode)
		}
	}
}

// TestDAVSocket: over the CLI's unix socket the peer's credentials admit
// it, as for the API (the test runs as root).
func TestDAVSocket(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))
	sock := filepath.Join(s.data, client.SocketName)
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequest("PROPFIND", "http://localhost/dav/tiny/etc/", nil)
	req.Header.Set("Depth", "1")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 207 || !strings.Contains(string(raw), "passwd") {
		t.Fatalf("PROPFIND over the socket = %d %.300s", resp.StatusCode, raw)
	}
	req, _ = http.NewRequest("PROPFIND", "http://localhost/dav/tiny/etc/", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err = hc.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a browser header over the socket = %d, want 403", resp.StatusCode)
	}
}
