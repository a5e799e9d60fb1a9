//go:build linux

package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/internal/testenv"
)

// TestDistroLifecycle walks one distro through the REST API: import, list, exec
// (which starts it), users, stdin, exit codes, binary output, terminate, export,
// re-import, clone, rename, default, unregister.
func TestDistroLifecycle(t *testing.T) {
	s := startServer(t, "")
	s.importTar("tiny", tinyRootfs(t))

	var list []api.Distro
	if st, raw := s.api("GET", "/distros", nil, &list); st != 200 || len(list) != 1 {
		t.Fatalf("GET /distros = %d %s, want one distro", st, raw)
	}
	d := list[0]
	if d.Name != "tiny" || d.Version != 1 || d.State != "Stopped" || !d.Default || d.DefaultUser != "root" || d.ID == "" || d.CreatedAt.IsZero() {
		t.Errorf("distro = %+v, want tiny v1 Stopped default root", d)
	}
	if _, err := os.Stat(filepath.Join(d.Location, "rootfs", "bin", "busybox")); err != nil {
		t.Errorf("rootfs not in place: %v", err)
	}
	if st, _ := s.api("GET", "/distros/nope", nil, nil); st != 404 {
		t.Errorf("GET unknown distro = %d, want 404", st)
	}

	// exec starts the distro.
	res := s.exec("tiny", api.ExecRequest{Argv: []string{"echo", "hello"}})
	if res.ExitCode != 0 || res.Stdout != "hello\n" || res.StdoutEncoding != "utf-8" {
		t.Errorf("exec echo = %+v, want hello", res)
	}
	var got api.Distro
	s.api("GET", "/distros/tiny", nil, &got)
	if got.State != "Running" {
		t.Errorf("state after exec = %s, want Running", got.State)
	}

	tests := []struct {
		name       string
		req        api.ExecRequest
		wantOut    string
		wantErrOut string
		wantCode   int
	}{
		{"hostname is the distro name", api.ExecRequest{Argv: []string{"hostname"}}, "tiny\n", "", 0},
		{"root by default", api.ExecRequest{Argv: []string{"id", "-u"}}, "0\n", "", 0},
		{"user by name", api.ExecRequest{Argv: []string{"id", "-u"}, User: "alice"}, "1000\n", "", 0},
		{"user by uid", api.ExecRequest{Argv: []string{"id", "-un"}, User: "1000"}, "alice\n", "", 0},
		{"supplementary groups", api.ExecRequest{Argv: []string{"id", "-G"}, User: "alice"}, "1000 50\n", "", 0},
		{"home is the default cwd", api.ExecRequest{Argv: []string{"pwd"}, User: "alice"}, "/home/alice\n", "", 0},
		{"cwd", api.ExecRequest{Argv: []string{"pwd"}, Cwd: "/etc"}, "/etc\n", "", 0},
		{"env", api.ExecRequest{Argv: []string{"sh", "-c", "echo $FOO"}, Env: []string{"FOO=bar"}}, "bar\n", "", 0},
		{"stdin", api.ExecRequest{Argv: []string{"cat"}, Stdin: base64.StdEncoding.EncodeToString([]byte("from stdin"))}, "from stdin", "", 0},
		{"exit code and stderr", api.ExecRequest{Argv: []string{"sh", "-c", "echo oops >&2; exit 3"}}, "", "oops\n", 3},
		{"pid 1 is the agent", api.ExecRequest{Argv: []string{"sh", "-c", "cat /proc/1/comm"}}, "subsys-agent\n", "", 0},
		{"only fds 0-2 are inherited", api.ExecRequest{Argv: []string{"ls", "/proc/self/fd"}}, "0\n1\n2\n3\n", "", 0},
		{"host root at /mnt/host", api.ExecRequest{Argv: []string{"sh", "-c", "test -e /mnt/host/etc/os-release && echo yes"}}, "yes\n", "", 0},
		{"dev nodes", api.ExecRequest{Argv: []string{"sh", "-c", "head -c 4 /dev/zero | wc -c; test -c /dev/null && test -c /dev/urandom && test -e /dev/ptmx && test -d /dev/pts && test -d /dev/shm && echo ok"}}, "4\nok\n", "", 0},
		{"killed by signal", api.ExecRequest{Argv: []string{"sh", "-c", "kill -9 $$"}}, "", "", 137},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := s.exec("tiny", tc.req)
			if res.Stdout != tc.wantOut || res.Stderr != tc.wantErrOut || res.ExitCode != tc.wantCode {
				t.Errorf("exec %v = code %d out %q err %q; want code %d out %q err %q", tc.req.Argv, res.ExitCode, res.Stdout, res.Stderr, tc.wantCode, tc.wantOut, tc.wantErrOut)
			}
		})
	}

	// Unknown user and bad cwd are clear errors.
	if st, raw := s.api("POST", "/distros/tiny/exec", map[string]any{"argv": []string{"id"}, "user": "nobody-here"}, nil); st != 400 || !strings.Contains(string(raw), "nobody-here") {
		t.Errorf("exec as unknown user = %d %s, want 400 naming the user", st, raw)
	}
	if st, raw := s.api("POST", "/distros/tiny/exec", map[string]any{"argv": []string{"/no/such/program"}}, nil); st != 400 {
		t.Errorf("exec of a missing program = %d %s, want 400", st, raw)
	}
	// Binary output comes back as base64.
	res = s.exec("tiny", api.ExecRequest{Argv: []string{"sh", "-c", "printf '\\377\\000\\001'"}})
	if raw, _ := base64.StdEncoding.DecodeString(res.Stdout); res.StdoutEncoding != "base64" || !bytes.Equal(raw, []byte{0xff, 0, 1}) {
		t.Errorf("binary output = %q (%s), want base64 of ff 00 01", res.Stdout, res.StdoutEncoding)
	}
	// A timeout kills the command.
	res = s.exec("tiny", api.ExecRequest{Argv: []string{"sleep", "30"}, TimeoutS: 0.5})
	if !res.TimedOut || res.ExitCode != 137 {
		t.Errorf("exec with timeout = %+v, want timed out, 137", res)
	}
	// A daemon outlives the exec call, with its output redirected or not. (Debian's
	// busybox has no nohup applet: TestDebianDistro checks nohup itself.)
	s.sh("tiny", "sleep 1000 </dev/null >/dev/null 2>&1 &")
	s.sh("tiny", "sleep 999 &")
	if res := s.sh("tiny", "ps -o args | grep -c -e '^sleep 1000$' -e '^sleep 999$'"); res.Stdout != "2\n" {
		t.Errorf("background daemons gone after exec returned: ps says %q", s.sh("tiny", "ps -o pid,args").Stdout)
	}
	// ps shows only the distro's processes.
	if res := s.sh("tiny", "ps -o pid | wc -l"); res.Stdout > "9" && len(res.Stdout) > 2 {
		t.Errorf("ps in the distro shows %s lines: the host's processes leak in", res.Stdout)
	}

	// Repeated start is idempotent; terminate stops it.
	for i := 0; i < 2; i++ {
		if st, raw := s.api("POST", "/distros/tiny/start", nil, &got); st != 200 || got.State != "Running" {
			t.Fatalf("start #%d = %d %s", i, st, raw)
		}
	}
	if st, raw := s.api("POST", "/distros/tiny/terminate", nil, &got); st != 200 || got.State != "Stopped" {
		t.Fatalf("terminate = %d %s, want Stopped", st, raw)
	}
	if res := s.sh("tiny", "ps -o comm | grep -c sleep"); res.Stdout != "0\n" {
		t.Errorf("processes survived terminate: %q", res.Stdout)
	}

	// Export in every format and import each back.
	for _, f := range []string{"tar", "tar.gz", "tar.zst", "tar.xz"} {
		st, raw := s.api("POST", "/distros/tiny/export?format="+f, nil, nil)
		if st != 200 {
			t.Fatalf("export %s = %d %s", f, st, raw)
		}
		name := "re-" + strings.ReplaceAll(f, ".", "")
		s.importTar(name, raw)
		if res := s.exec(name, api.ExecRequest{Argv: []string{"cat", "/etc/passwd"}}); !strings.Contains(res.Stdout, "alice:x:1000") {
			t.Errorf("re-imported %s: /etc/passwd = %q", f, res.Stdout)
		}
		if st, raw := s.api("DELETE", "/distros/"+name, nil, nil); st != 204 {
			t.Errorf("unregister %s = %d %s", name, st, raw)
		}
	}
	if st, raw := s.api("POST", "/distros/tiny/export?format=zip", nil, nil); st != 400 {
		t.Errorf("export format zip = %d %s, want 400", st, raw)
	}

	// Clone, then change the clone without touching the original.
	var op api.Operation
	if st, raw := s.api("POST", "/distros/tiny/clone", map[string]string{"name": "twin"}, &op); st != 202 {
		t.Fatalf("clone = %d %s", st, raw)
	}
	s.waitOp(op.ID)
	s.sh("twin", "echo changed > /etc/marker")
	if res := s.sh("tiny", "cat /etc/marker 2>/dev/null || echo absent"); res.Stdout != "absent\n" {
		t.Errorf("clone shares files with its source: %q", res.Stdout)
	}
	if st, _ := s.api("POST", "/distros/tiny/clone", map[string]string{"name": "twin"}, nil); st != 409 {
		t.Errorf("clone onto an existing name = %d, want 409", st)
	}

	// Rename, default user, default distro.
	if st, raw := s.api("PATCH", "/distros/twin", map[string]any{"name": "twin2", "default_user": "alice"}, &got); st != 200 || got.Name != "twin2" || got.DefaultUser != "alice" {
		t.Fatalf("PATCH = %d %s", st, raw)
	}
	if res := s.exec("twin2", api.ExecRequest{Argv: []string{"id", "-un"}}); res.Stdout != "alice\n" {
		t.Errorf("default user not applied: %q", res.Stdout)
	}
	if st, raw := s.api("PATCH", "/distros/twin2", map[string]any{"default": true}, &got); st != 200 || !got.Default {
		t.Fatalf("set default = %d %s", st, raw)
	}
	s.api("GET", "/distros/tiny", nil, &got)
	if got.Default {
		t.Errorf("old default still default")
	}
	if st, _ := s.api("PATCH", "/distros/twin2", map[string]any{"name": "tiny"}, nil); st != 409 {
		t.Errorf("rename onto an existing name = %d, want 409", st)
	}
	if st, _ := s.api("PATCH", "/distros/twin2", map[string]any{"name": "../x"}, nil); st != 400 {
		t.Errorf("rename to a bad name = %d, want 400", st)
	}
	if st, _ := s.api("PATCH", "/distros/twin2", map[string]any{"bogus": 1}, nil); st != 400 {
		t.Errorf("PATCH with an unknown field = %d, want 400", st)
	}

	// Unregister removes the row and every file, running or not.
	s.api("GET", "/distros/twin2", nil, &got)
	if st, raw := s.api("DELETE", "/distros/twin2", nil, nil); st != 204 {
		t.Fatalf("unregister = %d %s", st, raw)
	}
	if _, err := os.Stat(got.Location); !os.IsNotExist(err) {
		t.Errorf("files of the unregistered distro remain at %s: %v", got.Location, err)
	}
	if st, _ := s.api("GET", "/distros/twin2", nil, nil); st != 404 {
		t.Errorf("unregistered distro still listed")
	}
	s.api("GET", "/distros/tiny", nil, &got)
	if !got.Default {
		t.Errorf("after the default was unregistered, the remaining distro should become the default")
	}
}

// TestImportErrors covers bad names, duplicates and bad archives through the API:
// each is a clear error and leaves nothing behind.
func TestImportErrors(t *testing.T) {
	s := startServer(t, "")
	s.importTar("base", tinyRootfs(t))
	sentinel := filepath.Join(t.TempDir(), "host-file")
	os.WriteFile(sentinel, []byte("host"), 0o644)

	cases := []struct {
		name    string
		query   string
		body    []byte
		status  int
		mention string
	}{
		{"bad name", "name=../evil", tinyRootfs(t), 400, "name"},
		{"duplicate name", "name=BASE", tinyRootfs(t), 409, "already exists"},
		{"bad version", "name=v3&version=3", tinyRootfs(t), 400, "version"},
		{"not an archive", "name=junk", []byte("this is not a tarball at all, just some text that goes on for a while............................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................"), 400, ""},
		{"empty", "name=empty", []byte{}, 400, ""},
		{"truncated", "name=trunc", tinyRootfs(t)[:2000], 400, ""},
		{"dotdot", "name=dotdot", tarOf(t, tarEntry{tar.Header{Name: "../../escape", Typeflag: tar.TypeReg}, "x"}), 400, "../../escape"},
		{"absolute", "name=abs", tarOf(t, tarEntry{tar.Header{Name: "/etc/evil", Typeflag: tar.TypeReg}, "x"}), 400, "/etc/evil"},
		{"symlink escape", "name=symesc", tarOf(t, tarEntry{tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../../../../etc"}, ""}), 400, "link"},
		{"write through planted symlink", "name=planted", tarOf(t,
			tarEntry{tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: filepath.Dir(sentinel)}, ""},
			tarEntry{tar.Header{Name: "evil/host-file", Typeflag: tar.TypeReg}, "pwned"}), 400, "evil/host-file"},
		{"hard link to a host file", "name=hardln", tarOf(t, tarEntry{tar.Header{Name: "ln", Typeflag: tar.TypeLink, Linkname: "../../../../../" + sentinel}, ""}), 400, "ln"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e api.ErrorBody
			st, raw := s.api("POST", "/distros?"+tc.query, tc.body, &e)
			if st != tc.status || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("import = %d %s, want %d with a JSON error", st, raw, tc.status)
			}
			if tc.mention != "" && !strings.Contains(e.Error.Message, tc.mention) {
				t.Errorf("error %q does not mention %q", e.Error.Message, tc.mention)
			}
		})
	}
	var list []api.Distro
	s.api("GET", "/distros", nil, &list)
	if len(list) != 1 {
		t.Errorf("failed imports left distros behind: %+v", list)
	}
	if b, _ := os.ReadFile(sentinel); string(b) != "host" {
		t.Errorf("host file changed: %q", b)
	}
	var st syscallStat
	if n := linkCount(t, sentinel, &st); n != 1 {
		t.Errorf("host file gained a link: nlink %d", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.data, "tmp")); len(entries) != 0 {
		t.Errorf("staging area not cleaned: %v", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.data, "distros")); len(entries) != 1 {
		t.Errorf("distros dir has %d entries, want 1", len(entries))
	}

	// Limits: an archive over the entry limit is refused with 413.
	// (The server's limits are large by default; the archive package tests the small ones.)

	// Server-side path import, and its errors.
	path := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	os.WriteFile(path, tinyRootfs(t), 0o644)
	var op api.Operation
	if st, raw := s.api("POST", "/distros", map[string]any{"name": "frompath", "version": 1, "source": map[string]string{"path": path}}, &op); st != 202 {
		t.Fatalf("path import = %d %s", st, raw)
	}
	s.waitOp(op.ID)
	if st, _ := s.api("POST", "/distros", map[string]any{"name": "nofile", "source": map[string]string{"path": "/no/such.tar"}}, nil); st != 400 {
		t.Errorf("path import of a missing file = %d, want 400", st)
	}
	if st, _ := s.api("POST", "/distros", map[string]any{"name": "relpath", "source": map[string]string{"path": "rel.tar"}}, nil); st != 400 {
		t.Errorf("path import of a relative path = %d, want 400", st)
	}
	// Custom location.
	loc := filepath.Join(t.TempDir(), "custom")
	if st, raw := s.api("POST", "/distros?name=located&location="+loc, tinyRootfs(t), &op); st != 202 {
		t.Fatalf("import with location = %d %s", st, raw)
	}
	if _, err := os.Stat(filepath.Join(loc, "rootfs", "bin", "busybox")); err != nil {
		t.Errorf("import with location: %v", err)
	}
	if st, _ := s.api("POST", "/distros?name=located2&location="+loc, tinyRootfs(t), nil); st != 400 {
		t.Errorf("import into a non-empty location = %d, want 400", st)
	}
	s.api("DELETE", "/distros/located", nil, nil)
	if _, err := os.Stat(loc); !os.IsNotExist(err) {
		t.Errorf("unregister left the location behind: %v", err)
	}
}

// TestSecurityChecks: token, Host allow-list, Origin, headers, body limits.
func TestSecurityChecks(t *testing.T) {
	s := startServer(t, "")
	do := func(method, path, host string, hdr map[string]string, body string) *http.Response {
		req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
		if host != "" {
			req.Host = host
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	auth := map[string]string{"Authorization": "Bearer " + s.token}
	cases := []struct {
		name   string
		method string
		path   string
		host   string
		hdr    map[string]string
		body   string
		want   int
	}{
		{"no token", "GET", "/api/v1/distros", "", nil, "", 401},
		{"wrong token", "GET", "/api/v1/distros", "", map[string]string{"Authorization": "Bearer nope"}, "", 401},
		{"token", "GET", "/api/v1/distros", "", auth, "", 200},
		{"localhost host", "GET", "/api/v1/distros", "localhost:1234", auth, "", 200},
		{"sub.localhost host", "GET", "/api/v1/distros", "app.localhost", auth, "", 200},
		{"ipv6 loopback host", "GET", "/api/v1/distros", "[::1]:7070", auth, "", 200},
		{"rebound host", "GET", "/api/v1/distros", "evil.example:7070", auth, "", 403},
		{"rebound host with matching origin", "POST", "/api/v1/shutdown", "evil.example", map[string]string{"Authorization": auth["Authorization"], "Origin": "http://evil.example"}, "", 403},
		{"cross-site origin on POST", "POST", "/api/v1/shutdown", "", map[string]string{"Authorization": auth["Authorization"], "Origin": "http://evil.example"}, "", 403},
		{"cross-site fetch metadata", "POST", "/api/v1/shutdown", "", map[string]string{"Authorization": auth["Authorization"], "Sec-Fetch-Site": "cross-site"}, "", 403},
		{"websocket from another origin", "GET", "/api/v1/distros/x/exec/ws", "", map[string]string{"Authorization": auth["Authorization"], "Origin": "http://evil.example", "Upgrade": "websocket", "Connection": "Upgrade"}, "", 403},
		{"websocket without token", "GET", "/api/v1/distros/x/exec/ws", "", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade"}, "", 401},
		{"huge JSON body", "POST", "/api/v1/distros/x/exec", "", map[string]string{"Authorization": auth["Authorization"], "Content-Type": "application/json"}, `{"argv":["` + strings.Repeat("a", 2<<20) + `"]}`, 413},
		{"bad login token", "POST", "/api/v1/login", "", map[string]string{"Authorization": "Bearer nope"}, "", 401},
		{"the token as a cookie", "GET", "/api/v1/distros", "", map[string]string{"Cookie": "subsys_token=" + s.token}, "", 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(tc.method, tc.path, tc.host, tc.hdr, tc.body)
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("CSP = %q, want frame-ancestors 'none'", csp)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("X-Content-Type-Options missing")
			}
		})
	}
	// The token is traded for a session of the browser's own, which then works
	// alone as a header; the old cookie login sets nothing.
	var ses api.Login
	if st, raw := s.api("POST", "/login", nil, &ses); st != 200 || ses.Session == "" || ses.Session == s.token {
		t.Fatalf("login = %d %s, want a session that is not the token", st, raw)
	}
	resp := do("GET", "/api/v1/distros", "", map[string]string{"Authorization": "Bearer " + ses.Session}, "")
	if resp.StatusCode != 200 {
		t.Errorf("request with the session = %d, want 200", resp.StatusCode)
	}
	if resp := do("GET", "/login?token="+s.token, "", nil, ""); len(resp.Cookies()) != 0 {
		t.Errorf("GET /login?token= sets cookies %v", resp.Cookies())
	}
	fi, err := os.Stat(filepath.Join(s.data, "token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// TestImportLocationSafety: a distro's files are out of reach of the host's
// other users. A custom location is made with mode 0700 (as the data
// directory's distros are), so no host user runs its setuid programs or opens
// its device nodes; a location that another user could swap (a directory of
// theirs above it) is refused with 400 and leaves nothing behind.
func TestImportLocationSafety(t *testing.T) {
	s := startServer(t, "")
	base := t.TempDir()
	os.Chmod(base, 0o755)
	loc := filepath.Join(base, "vms", "custom")
	var op api.Operation
	if st, raw := s.api("POST", "/distros?name=located&location="+loc, tinyRootfs(t), &op); st != 202 {
		t.Fatalf("import with location = %d %s", st, raw)
	}
	s.waitOp(op.ID)
	s.importTar("inside", tinyRootfs(t))
	var d api.Distro
	s.api("GET", "/distros/inside", nil, &d)
	for _, p := range []string{loc, d.Location, filepath.Join(s.data, "distros")} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, %v; want 0700, so host users cannot reach the distro", p, fi.Mode().Perm(), err)
		}
	}

	home := filepath.Join(base, "home")
	os.Mkdir(home, 0o755)
	os.Chown(home, 1000, 1000)
	var e api.ErrorBody
	st, raw := s.api("POST", "/distros?name=swappable&location="+filepath.Join(home, "distro"), tinyRootfs(t), &e)
	if st != 400 || e.Error.Code != "invalid" || !strings.Contains(e.Error.Message, home) || !strings.Contains(e.Error.Message, "uid 1000") {
		t.Errorf("import under a user's directory = %d %s, want 400 naming %s and its owner", st, raw, home)
	}
	if st, _ := s.api("GET", "/distros/swappable", nil, nil); st != 404 {
		t.Errorf("refused import left a distro")
	}
	if _, err := os.Lstat(filepath.Join(home, "distro")); !os.IsNotExist(err) {
		t.Errorf("refused import left its location: %v", err)
	}
}

// TestImportDiskFull: an import onto a file system too small for it answers
// 507 insufficient_storage naming the file system and its free space (it was
// 500 internal), and leaves nothing behind: no distro, no files, no staging.
func TestImportDiskFull(t *testing.T) {
	s := startServer(t, "")
	mnt := filepath.Join(t.TempDir(), "small")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.SkipOrFailf(t, "mount tmpfs: %v: %s", err, out)
	}
	defer exec.Command("umount", "-l", mnt).Run()
	big := tarOf(t, tarEntry{tar.Header{Name: "big", Typeflag: tar.TypeReg}, strings.Repeat("subsys", 8<<20/6)})
	var e api.ErrorBody
	st, raw := s.api("POST", "/distros?name=big&location="+filepath.Join(mnt, "distro"), big, &e)
	if st != http.StatusInsufficientStorage || e.Error.Code != "insufficient_storage" || !strings.Contains(e.Error.Message, mnt) || !strings.Contains(e.Error.Message, "free") {
		t.Fatalf("import onto a full file system = %d %s, want 507 insufficient_storage naming %s and its free space", st, raw, mnt)
	}
	if st, _ := s.api("GET", "/distros/big", nil, nil); st != 404 {
		t.Errorf("failed import left a distro")
	}
	if entries, _ := os.ReadDir(mnt); len(entries) != 0 {
		t.Errorf("failed import left files: %v", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.data, "tmp")); len(entries) != 0 {
		t.Errorf("failed import left staging: %v", entries)
	}
}

// TestImportUnregisterCycles: an import that has succeeded for its client has
// let go of the distro, so a DELETE right after it is never busy (it was in 2
// of 200); and import/start/unregister cycles leave nothing in the data
// directory: no distro, staging or run file (every cycle left run/<id>.log).
func TestImportUnregisterCycles(t *testing.T) {
	s := startServer(t, "")
	tarball := tinyRootfs(t)
	const cycles = 60
	for i := range cycles {
		var op api.Operation
		if st, raw := s.api("POST", "/distros?name=cycle", tarball, &op); st != 202 {
			t.Fatalf("cycle %d: import = %d %s", i, st, raw)
		}
		s.waitOp(op.ID)
		if i%10 == 0 {
			s.sh("cycle", "true") // starts it: the agent writes its log
		}
		if st, raw := s.api("DELETE", "/distros/cycle", nil, nil); st != 204 {
			t.Fatalf("cycle %d: unregister right after the import succeeded = %d %s", i, st, raw)
		}
	}
	for _, dir := range []string{"distros", "tmp", "run"} {
		entries, _ := os.ReadDir(filepath.Join(s.data, dir))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if len(names) != 0 {
			t.Errorf("%s/ after %d import/unregister cycles holds %v", dir, cycles, names)
		}
	}
}

// TestImportResultSkippedDevices: the import operation says how many device
// nodes it did not make (those outside /dev), and warns of them.
func TestImportResultSkippedDevices(t *testing.T) {
	s := startServer(t, "")
	tarball := tarOf(t,
		tarEntry{tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		tarEntry{tar.Header{Name: "etc/hda", Typeflag: tar.TypeBlock, Mode: 0o600, Devmajor: 3, Devminor: 0}, ""},
		tarEntry{tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg}, "root:x:0:0:root:/root:/bin/sh\n"},
	)
	var op api.Operation
	if st, raw := s.api("POST", "/distros?name=devs", tarball, &op); st != 202 {
		t.Fatalf("import = %d %s", st, raw)
	}
	s.waitOp(op.ID)
	if st, raw := s.api("GET", "/operations/"+op.ID, nil, &op); st != 200 || op.Result == nil {
		t.Fatalf("GET operation = %d %s, want a result", st, raw)
	}
	if r := op.Result; r.Entries != 3 || r.SkippedDevices != 1 || len(r.Warnings) == 0 {
		t.Errorf("import result = %+v, want 3 entries, 1 skipped device node and a warning", *r)
	}
}

// TestRelativeDataDir: `subsys serve --data mydata` (a relative path) starts
// distros; every start failed with "fork/exec mydata/bin/…/subsys-agent: no
// such file" before, since the agent runs in /.
func TestRelativeDataDir(t *testing.T) {
	requireRoot(t)
	cwd := t.TempDir()
	s := &server{t: t, data: filepath.Join(cwd, "mydata"), addr: freePort(t), log: &bytes.Buffer{}, level: "debug"}
	s.url = "http://" + s.addr
	s.cmd = exec.Command(subsysBin, "serve", "--data", "mydata", "--listen", s.addr, "--log-level", s.level)
	s.cmd.Dir = cwd
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if os.Getenv("SUBSYS_BIN") == "" {
		s.cmd.Env = append(os.Environ(), "SUBSYS_AGENT="+filepath.Join(filepath.Dir(subsysBin), "subsys-agent"))
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.api("POST", "/shutdown", nil, nil)
		s.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", s.log.String())
		}
	})
	waitFor(t, 20*time.Second, "the server", func() bool {
		b, err := os.ReadFile(filepath.Join(s.data, "token"))
		if err != nil {
			return false
		}
		s.token = strings.TrimSpace(string(b))
		st, _ := s.api("GET", "/version", nil, nil)
		return st == 200
	})
	s.importTar("rel", tinyRootfs(t))
	if res := s.sh("rel", "echo started"); res.Stdout != "started\n" {
		t.Errorf("exec in a distro of a relative data directory = %+v", res)
	}
	var d api.Distro
	s.api("GET", "/distros/rel", nil, &d)
	if !filepath.IsAbs(d.Location) {
		t.Errorf("location %q is relative", d.Location)
	}
}
