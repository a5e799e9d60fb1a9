//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/api"
)

// curl runs the real curl against the server and returns the status code and
// the headers+body it printed. It sends exactly the headers given: like a
// browser tab on another localhost port, it has the cookie a browser would hold
// but not the dashboard's session header.
func curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-s", "-i", "--max-time", "10", "-w", "\n%{http_code}"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndexByte(s, '\n')
	var code int
	fmt.Sscan(s[i+1:], &code)
	return code, s[:i]
}

// TestHostilePageWithCurl is the browser attack of a page on another localhost
// port (a dev server inside a distro, say), made with curl: the cookie the old
// /login set, GETs with side effects, cross-origin POSTs, websockets and the
// event stream. Nothing runs, nothing is read, nothing changes; the same calls
// with the real credential do (so every probe could have seen it happen).
func TestHostilePageWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("needs curl (make deps installs it)")
	}
	s := startServer(t, "")
	s.importTar("victim", tinyRootfs(t))
	if st, raw := s.api("POST", "/distros/victim/start", nil, nil); st != 200 {
		t.Fatalf("start: %d %s", st, raw)
	}
	api := s.url + "/api/v1"
	cookie := "Cookie: subsys_token=" + s.token
	// The cookie alone: the Origin check is a second lock, tested below; here
	// the cookie must be refused on its own.
	hostile := []string{"-H", cookie}
	crossSite := []string{"-H", cookie, "-H", "Authorization: Bearer " + s.token, "-H", "Origin: http://localhost:5173", "-H", "Sec-Fetch-Site: same-site"}
	marker := func(name string) string { return "/tmp/pwned-" + name }
	cmdQ := func(name string) string { return url.QueryEscape("touch " + marker(name)) }

	// Control: with the token as a header, a command does run and its marker
	// shows — so the checks below would see a marker if an attack made one.
	s.sh("victim", "touch "+marker("control"))
	if r := s.sh("victim", "test -e "+marker("control")); r.ExitCode != 0 {
		t.Fatal("control marker not visible: the probe cannot see a command run")
	}

	attacks := []struct {
		name string
		args []string
		want int
	}{
		{"img GET of a terminal with the cookie", append([]string{api + "/distros/victim/terminal?user=root&command=" + cmdQ("img")}, hostile...), 401},
		{"GET terminal with the real token but no Upgrade", []string{"-H", "Authorization: Bearer " + s.token, api + "/distros/victim/terminal?user=root&command=" + cmdQ("noupgrade")}, 400},
		{"GET exec/ws with the real token but no Upgrade", []string{"-H", "Authorization: Bearer " + s.token, api + "/distros/victim/exec/ws?argv=touch&argv=" + url.QueryEscape(marker("execws"))}, 400},
		{"fetch POST exec with the cookie", append([]string{"-X", "POST", "-H", "Content-Type: application/json", "--data", `{"argv":["touch","` + marker("fetch") + `"]}`, api + "/distros/victim/exec"}, hostile...), 401},
		{"form POST exec with the cookie", append([]string{"-X", "POST", "-H", "Content-Type: application/x-www-form-urlencoded", "--data", "argv=touch", api + "/distros/victim/exec"}, hostile...), 401},
		{"form POST terminate with the cookie", append([]string{"-X", "POST", api + "/distros/victim/terminate"}, hostile...), 401},
		{"websocket to the terminal with the cookie", append([]string{"-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
			api + "/distros/victim/terminal?command=" + cmdQ("ws")}, hostile...), 401},
		{"EventSource with the cookie", append([]string{api + "/events"}, hostile...), 401},
		{"list with the cookie", append([]string{api + "/distros"}, hostile...), 401},
		{"GET export (no GET starts work)", []string{"-H", "Authorization: Bearer " + s.token, api + "/distros/victim/export"}, 405},
		{"a made-up ticket", []string{api + "/events?ticket=subsys_ticket_00"}, 401},
		// Even a page that somehow had the token cannot drive the server
		// from another origin.
		{"cross-site POST exec with the token", append([]string{"-X", "POST", "-H", "Content-Type: application/json", "--data", `{"argv":["touch","` + marker("xsite") + `"]}`, api + "/distros/victim/exec"}, crossSite...), 403},
	}
	for _, a := range attacks {
		code, out := curl(t, a.args...)
		if code != a.want {
			t.Errorf("%s: status %d, want %d\n%s", a.name, code, a.want, out)
		}
	}

	// A ticket is spent by its first use, and a websocket from another origin
	// is refused even with one.
	var tk struct{ Ticket string }
	if st, raw := s.api("POST", "/tickets", nil, &tk); st != 201 {
		t.Fatalf("ticket: %d %s", st, raw)
	}
	code, out := curl(t, "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
		"-H", "Origin: http://localhost:5173", api+"/distros/victim/terminal?ticket="+tk.Ticket+"&command="+cmdQ("ticketws"))
	if code != 403 {
		t.Errorf("cross-origin websocket with a ticket: %d, want 403\n%s", code, out)
	}

	// The old login URL hands out nothing.
	code, out = curl(t, s.url+"/login?token="+s.token)
	if strings.Contains(strings.ToLower(out), "set-cookie") {
		t.Errorf("GET /login?token= sets a cookie (%d):\n%s", code, out)
	}

	// Nothing ran, nothing changed.
	for _, m := range []string{"img", "noupgrade", "execws", "fetch", "ws", "ticketws", "xsite"} {
		if r := s.sh("victim", "test -e "+marker(m)); r.ExitCode == 0 {
			t.Errorf("attack %q ran its command", m)
		}
	}
	var d distro
	s.api("GET", "/distros/victim", nil, &d)
	if d.State != "Running" {
		t.Errorf("victim is %s after the attacks, want Running", d.State)
	}
	var terms []json.RawMessage
	s.api("GET", "/distros/victim/terminals", nil, &terms)
	if len(terms) != 0 {
		t.Errorf("the attacks left %d terminal sessions", len(terms))
	}
	// The token is never logged (the server's stderr is not a terminal here,
	// so it does not print the login URL either).
	if strings.Contains(s.log.String(), s.token) {
		t.Error("the server log holds the token")
	}
}

// TestBrowserSessionOverHTTP: the dashboard's flow with a plain HTTP client:
// token → session → ticket → event stream; logout ends the session.
func TestBrowserSessionOverHTTP(t *testing.T) {
	s := startServer(t, "")
	api := s.url + "/api/v1"
	code, out := curl(t, "-X", "POST", "-H", "Authorization: Bearer "+s.token, api+"/login")
	if code != 200 {
		t.Fatalf("login: %d %s", code, out)
	}
	body := out[strings.Index(out, "{"):]
	var ses struct {
		Session      string `json:"session"`
		IdleTimeoutS int    `json:"idle_timeout_s"`
	}
	if err := json.Unmarshal([]byte(body), &ses); err != nil || ses.Session == "" || ses.IdleTimeoutS != 12*3600 {
		t.Fatalf("login reply %q: %v", body, err)
	}
	auth := "Authorization: Bearer " + ses.Session
	if code, out := curl(t, "-H", auth, api+"/distros"); code != 200 {
		t.Fatalf("list with the session: %d %s", code, out)
	}
	code, out = curl(t, "-X", "POST", "-H", auth, api+"/tickets")
	if code != 201 {
		t.Fatalf("ticket: %d %s", code, out)
	}
	var tk struct{ Ticket string }
	json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &tk)
	// The event stream opens with the ticket (curl stops at --max-time; the
	// snapshot event arrived first).
	sse, _ := exec.Command("curl", "-s", "--max-time", "2", api+"/events?ticket="+tk.Ticket).Output()
	if !strings.Contains(string(sse), "event: snapshot") {
		t.Errorf("event stream with a ticket: %q", sse)
	}
	if code, _ := curl(t, api+"/events?ticket="+tk.Ticket); code != 401 {
		t.Errorf("the ticket worked twice: %d", code)
	}
	if code, _ := curl(t, "-X", "POST", "-H", auth, api+"/logout"); code != 204 {
		t.Errorf("logout: %d", code)
	}
	if code, _ := curl(t, "-H", auth, api+"/distros"); code != 401 {
		t.Errorf("session after logout: %d, want 401", code)
	}
}

// TestSocketRefusesOtherUsers: the CLI's socket admits root and the subsys
// group only. With the data directory opened up so that the socket itself is
// reachable, a process of another user (nobody) gets 403 from the peer check,
// while root over the same socket gets 200 — the probe can see success.
func TestSocketRefusesOtherUsers(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("needs setpriv (util-linux)")
	}
	s := startServer(t, "")
	sock := s.data + "/subsys.sock"
	get := func(asNobody bool) (int, string) {
		args := []string{"-s", "--unix-socket", sock, "-w", "\n%{http_code}", "http://localhost/api/v1/distros"}
		cmd := exec.Command("curl", args...)
		if asNobody {
			cmd = exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "curl"}, args...)...)
		}
		out, _ := cmd.CombinedOutput()
		s := strings.TrimRight(string(out), "\n")
		i := strings.LastIndexByte(s, '\n')
		var code int
		fmt.Sscan(s[i+1:], &code)
		return code, s
	}
	if code, out := get(false); code != 200 {
		t.Fatalf("root over the socket: %d %s", code, out)
	}
	// Reachable by path (the directory is 0700 or 0710 normally, which alone
	// keeps nobody out; open it so that the peer check is what is tested).
	for _, d := range []string{s.data, filepath.Dir(s.data)} { // t.TempDir's parent is 0700 too
		if err := exec.Command("chmod", "0711", d).Run(); err != nil {
			t.Fatal(err)
		}
	}
	if err := exec.Command("chmod", "0666", sock).Run(); err != nil {
		t.Fatal(err)
	}
	code, out := get(true)
	if code != 403 || !strings.Contains(out, "forbidden_peer") {
		t.Fatalf("nobody over the socket: %d %s, want 403 forbidden_peer", code, out)
	}
}

// TestDiskActionsRefuseBrowserCredentials: move, resize, compact,
// snapshots and install start work as root on a distro's files, so what a browser sends by itself (the
// cookie, a form, a GET) or a page of another origin sends never starts
// them: the distro stays where it is and the chosen directory is never made.
// The same move with the token as a header does happen (the control, so the
// probe can see a move).
func TestDiskActionsRefuseBrowserCredentials(t *testing.T) {
	s := startServer(t, "")
	s.importTar("victim", tinyRootfs(t))
	home := s.getDistro("victim").Location
	target := filepath.Join(t.TempDir(), "stolen")
	cookie := map[string]string{"Cookie": "subsys_token=" + s.token}
	post := func(path, contentType, body string, hdr map[string]string) int {
		req, err := http.NewRequest("POST", s.url+"/api/v1"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	moveBody := `{"location":"` + target + `"}`
	for _, tc := range []struct {
		name, path, ct, body string
		hdr                  map[string]string
		want                 int
	}{
		{"fetch POST move with the cookie", "/distros/victim/move", "application/json", moveBody, cookie, 401},
		{"form POST move with the cookie", "/distros/victim/move", "application/x-www-form-urlencoded", "location=" + target, cookie, 401},
		{"cross-site POST move with the token", "/distros/victim/move", "application/json", moveBody,
			map[string]string{"Authorization": "Bearer " + s.token, "Origin": "http://localhost:5173", "Sec-Fetch-Site": "same-site"}, 403},
		{"POST resize with the cookie", "/distros/victim/resize", "application/json", `{"size":1073741824}`, cookie, 401},
		{"POST compact with the cookie", "/distros/victim/compact", "", "", cookie, 401},
		{"POST snapshot with the cookie", "/distros/victim/snapshots", "application/json", `{"name":"x"}`, cookie, 401},
		{"POST restore with the cookie", "/distros/victim/snapshots/x/restore", "", "", cookie, 401},
		{"form POST install with the cookie", "/distros/install", "application/x-www-form-urlencoded", "source=debian:bookworm", cookie, 401},
		{"cross-site POST install with the token", "/distros/install", "application/json", `{"source":"debian:bookworm"}`,
			map[string]string{"Authorization": "Bearer " + s.token, "Origin": "http://localhost:5173", "Sec-Fetch-Site": "same-site"}, 403},
	} {
		if st := post(tc.path, tc.ct, tc.body, tc.hdr); st != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, st, tc.want)
		}
	}
	// No GET starts work: not even with the token.
	req, _ := http.NewRequest("GET", s.url+"/api/v1/distros/victim/move?location="+url.QueryEscape(target), nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET move: %d, want 405", resp.StatusCode)
	}
	if d := s.getDistro("victim"); d.Location != home {
		t.Fatalf("a refused request moved the distro to %q", d.Location)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("a refused request made %s: %v", target, err)
	}
	var snaps []api.DistroSnapshot
	if st, raw := s.api("GET", "/distros/victim/snapshots", nil, &snaps); st != 200 || len(snaps) != 0 {
		t.Fatalf("a refused request took a snapshot: %d %s", st, raw)
	}
	if st, _ := s.api("GET", "/distros/debian", nil, nil); st != http.StatusNotFound {
		t.Fatalf("a refused request installed debian: %d", st)
	}
	// Control: with the token the same move happens.
	s.waitOp(s.postOp("/distros/victim/move", api.MoveRequest{Location: target}).ID)
	if d := s.getDistro("victim"); d.Location != target {
		t.Fatalf("control: the move with the token left the distro at %q", d.Location)
	}
	// Version 1 distros have no disk to resize or compact: a clear 400.
	var e api.ErrorBody
	if st, raw := s.api("POST", "/distros/victim/resize", api.ResizeRequest{Size: 1 << 30}, &e); st != http.StatusBadRequest || !strings.Contains(e.Error.Message, "version 2") {
		t.Errorf("resize of a version 1 distro: %d %s", st, raw)
	}
	if st, raw := s.api("POST", "/distros/victim/compact", nil, &e); st != http.StatusBadRequest || !strings.Contains(e.Error.Message, "version 2") {
		t.Errorf("compact of a version 1 distro: %d %s", st, raw)
	}
}
