//go:build linux

package e2e

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/internal/testutil"
)

func newCLI(bin string, args ...string) *exec.Cmd { return exec.Command(bin, args...) }

// TestRestartReadoptsRunningDistros: distros keep running across a server restart
// (even kill -9), show as Running again, and exec works on them at once.
func TestRestartReadoptsRunningDistros(t *testing.T) {
	s := startServer(t, "")
	s.importTar("keep", tinyRootfs(t))
	s.sh("keep", "sleep 1000 </dev/null >/dev/null 2>&1 &")
	before := s.sh("keep", "pidof sleep").Stdout

	s.kill9()
	s.start()
	var d api.Distro
	s.api("GET", "/distros/keep", nil, &d)
	if d.State != "Running" {
		t.Fatalf("after kill -9 and restart, state = %s, want Running\n%s", d.State, s.log)
	}
	if after := s.sh("keep", "pidof sleep").Stdout; after != before || after == "" {
		t.Errorf("daemon pid %q before restart, %q after: it did not survive", before, after)
	}
	s.restart()
	if after := s.sh("keep", "pidof sleep").Stdout; after != before {
		t.Errorf("daemon pid after graceful restart = %q, want %q", after, before)
	}
	// A distro killed behind the server's back shows as Stopped and starts again.
	pidfiles, _ := filepath.Glob(filepath.Join(s.data, "run", "*.pid"))
	if len(pidfiles) != 1 {
		t.Fatalf("pid files in run/: %v, want one", pidfiles)
	}
	raw, _ := os.ReadFile(pidfiles[0])
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("pid file %s: %q", pidfiles[0], raw)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, 5*time.Second, "state Stopped after the agent died", func() bool {
		s.api("GET", "/distros/keep", nil, &d)
		return d.State == "Stopped"
	})
}

// slowReader hands out data in small pieces, slowly, so that an import is in
// flight when the server is killed.
type slowReader struct {
	data []byte
	sent chan struct{}
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), 4096, len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	if r.sent != nil {
		close(r.sent)
		r.sent = nil
	}
	time.Sleep(20 * time.Millisecond) // the pace of the upload: slow enough that the import is in flight when killed
	return n, nil
}

// TestKillDuringImport: kill -9 of the server in the middle of an import leaves,
// after a restart, no distro, an empty staging area and a sound database.
func TestKillDuringImport(t *testing.T) {
	s := startServer(t, "")
	body := &slowReader{data: tinyRootfs(t), sent: make(chan struct{})}
	sent := body.sent
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "POST", s.url+"/api/v1/distros?name=crashy", body)
		req.Header.Set("Authorization", "Bearer "+s.token)
		req.Header.Set("Content-Type", "application/octet-stream")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-sent
	waitFor(t, 10*time.Second, "the import to show as Installing", func() bool {
		var d api.Distro
		st, _ := s.api("GET", "/distros/crashy", nil, &d)
		return st == 200 && d.State == "Installing"
	})
	// Kill it once the import has left something to clean up in the staging
	// area, so that the checks below can see the cleanup happen.
	// (A staging directory alone is not enough: it is made before the
	// operation is recorded; files in it are written after.)
	waitFor(t, 10*time.Second, "the import to write into the staging area", func() bool {
		entries, _ := os.ReadDir(filepath.Join(s.data, "tmp"))
		for _, e := range entries {
			if files, _ := os.ReadDir(filepath.Join(s.data, "tmp", e.Name())); len(files) > 0 {
				return true
			}
		}
		return false
	})
	s.kill9()
	s.start()
	if st, raw := s.api("GET", "/distros/crashy", nil, nil); st != 404 {
		t.Errorf("after a crash mid-import, GET = %d %s, want 404 (absent)", st, raw)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.data, "tmp")); len(entries) != 0 {
		t.Errorf("staging area not cleaned: %v", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.data, "distros")); len(entries) != 0 {
		t.Errorf("distros directory not cleaned: %v", entries)
	}
	db, err := sql.Open("sqlite3", filepath.Join(s.data, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Errorf("integrity_check = %q, %v", res, err)
	}
	var status, msg string
	if err := db.QueryRow("SELECT status, error FROM operations WHERE kind = 'import'").Scan(&status, &msg); err != nil || status != "failure" || !strings.Contains(msg, "server stopped") {
		t.Errorf("interrupted operation = %q %q %v, want failure", status, msg, err)
	}
	// The name is free again.
	s.importTar("crashy", tinyRootfs(t))
}

// TestCancelImportAndBusy: DELETE on an operation cancels it and cleans up; a
// distro held by an operation refuses conflicting ones with 409 naming it.
func TestCancelImportAndBusy(t *testing.T) {
	s := startServer(t, "")
	body := &slowReader{data: tinyRootfs(t), sent: make(chan struct{})}
	sent := body.sent
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", s.url+"/api/v1/distros?name=slow", body)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-sent
	var d api.Distro
	waitFor(t, 10*time.Second, "Installing", func() bool {
		st, _ := s.api("GET", "/distros/slow", nil, &d)
		return st == 200 && d.State == "Installing"
	})
	// Busy: unregister, start, clone of a distro being imported → 409.
	// The row is Installing a moment before its operation is registered; in
	// that moment the refusal cannot name the operation yet.
	var e api.ErrorBody
	waitFor(t, 10*time.Second, "unregister during the import refused naming it", func() bool {
		st, _ := s.api("DELETE", "/distros/slow", nil, &e)
		if st != 409 {
			t.Fatalf("unregister during import = %d %q, want 409", st, e.Error.Message)
		}
		return strings.Contains(e.Error.Message, "(import)")
	})
	if st, _ := s.api("POST", "/distros/slow/start", nil, nil); st != 409 {
		t.Errorf("start during import = %d, want 409", st)
	}
	// Find the operation id from the busy error and cancel it.
	msg := e.Error.Message
	i := strings.Index(msg, "operation ")
	if i < 0 {
		t.Fatalf("busy message %q names no operation", msg)
	}
	id := strings.Fields(msg[i+len("operation "):])[0]
	var op api.Operation
	if st, raw := s.api("DELETE", "/operations/"+id, nil, &op); st != 200 || op.Status != "failure" || !strings.Contains(op.Error, "cancel") {
		t.Errorf("cancel = %d %s", st, raw)
	}
	if st := <-done; st != 400 && st != 500 && st != 0 {
		t.Logf("cancelled upload answered %d", st)
	}
	if st, _ := s.api("GET", "/distros/slow", nil, nil); st != 404 {
		t.Errorf("cancelled import left the distro")
	}
	if entries, _ := os.ReadDir(filepath.Join(s.data, "tmp")); len(entries) != 0 {
		t.Errorf("cancelled import left staging files: %v", entries)
	}
}

// TestCancelStalledImport: cancelling an import whose upload has stalled ends
// it at once, instead of waiting for bytes that never come (the cancel answers
// with the operation failed, not still running), and leaves nothing behind.
func TestCancelStalledImport(t *testing.T) {
	s := startServer(t, "")
	body := testutil.NewStalledReader(tinyRootfs(t))
	defer close(body.Release)
	sent := body.Sent
	go func() {
		req, _ := http.NewRequest("POST", s.url+"/api/v1/distros?name=stalled", body)
		req.Header.Set("Authorization", "Bearer "+s.token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-sent
	// The row is Installing a moment before its operation is registered; in
	// that moment the refusal cannot name the operation yet.
	var e api.ErrorBody
	waitFor(t, 10*time.Second, "the import to hold the distro, refusing by its operation", func() bool {
		st, _ := s.api("DELETE", "/distros/stalled", nil, &e)
		return st == 409 && strings.Contains(e.Error.Message, "(import)")
	})
	msg := e.Error.Message
	i := strings.Index(msg, "operation ")
	if i < 0 {
		t.Fatalf("busy message %q names no operation", msg)
	}
	id := strings.Fields(msg[i+len("operation "):])[0]
	start := time.Now()
	var op api.Operation
	if st, raw := s.api("DELETE", "/operations/"+id, nil, &op); st != 200 || op.Status != "failure" || !strings.Contains(op.Error, "cancel") {
		t.Fatalf("cancel of a stalled import = %d %s (after %v), want it failed as cancelled", st, raw, time.Since(start))
	}
	if st, _ := s.api("GET", "/distros/stalled", nil, nil); st != 404 {
		t.Errorf("the cancelled import left the distro")
	}
	if entries, _ := os.ReadDir(filepath.Join(s.data, "tmp")); len(entries) != 0 {
		t.Errorf("the cancelled import left staging files: %v", entries)
	}
}
