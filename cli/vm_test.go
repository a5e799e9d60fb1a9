package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // 0: refused
	}{
		{"1073741824", 1 << 30},
		{"256G", 256 << 30},
		{"256g", 256 << 30},
		{"256GB", 256 << 30},
		{"256GiB", 256 << 30},
		{"512M", 512 << 20},
		{"512 MiB", 512 << 20},
		{"1.5T", 3 << 39},
		{"64K", 64 << 10},
		{" 2G ", 2 << 30},
		{"", 0},
		{"G", 0},
		{"-1G", 0},
		{"0", 0},
		{"12X", 0},
		{"1e400", 0},
		{"NaN", 0},
		{"99999999999T", 0},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

// hostileConsole is what a guest may print on its serial console.
const hostileConsole = "[    0.000000] Linux version 6.1\r\n\x1b]0;pwned\x07\x1b[2J<img src=x onerror=alert(1)>\r\n\xff\xfe\u202egnp.exe\tX\x00\n\u009b31mred\n"

func TestWriteEscapedLines(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"CR LF lines", "a\r\nb\r\n", "a\nb\n"},
		{"no final newline", "a\nb", "a\nb\n"},
		{"escapes", "\x1b[2Jx\ty\x00", `\x1b[2Jx\x09y\x00` + "\n"},
		{"lone CR stays visible", "a\rb\n", `a\x0db` + "\n"},
		{"markup is text", "<b>x</b>\n", "<b>x</b>\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			writeEscapedLines(&b, []byte(tt.in))
			if b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}

// TestPrintVM: the VM's fields as people read them; the guest's strings escaped.
func TestPrintVM(t *testing.T) {
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		st   api.VMStatus
		want []string
	}{
		{"unavailable", api.VMStatus{State: api.VMStopped}, []string{"VM: not available"}},
		{"running", api.VMStatus{Available: true, State: api.VMRunning, Accel: "kvm", PID: 99, StartedAt: now.Add(-90 * time.Second),
			MemoryMiB: 2048, CPUs: 4, RSSBytes: 300 << 20, Kernel: "/k/vmlinuz", KernelRelease: "6.1.0-\x1b[31m", Distros: []string{"a", "b"}, IdleTimeoutS: 60},
			[]string{"VM: Running (kvm), up 1m30s, pid 99", "memory: 2048 MiB (QEMU resident: 300.0 MiB), CPUs: 4", `kernel: /k/vmlinuz (6.1.0-\x1b[31m)`,
				"version 2 distros running: 2", "idle timeout: 1m0s"}},
		{"failed", api.VMStatus{Available: true, State: api.VMFailed, Accel: "tcg", AccelNote: "no /dev/kvm", MemoryMiB: 1024, CPUs: 1, IdleTimeoutS: -1,
			Error: "no agent\x1b]0;x\x07"}, []string{"VM: Failed (tcg)", "note: no /dev/kvm", "idle timeout: none", `error: no agent\x1b]0;x\x07`}},
		{"host files fell back", api.VMStatus{Available: true, State: api.VMRunning, Network: "passt", HostFiles: "9p", HostFilesNote: "virtiofsd exited\x1b[2J"},
			[]string{"network: passt", "host files (/mnt/host): 9p", `host files note: virtiofsd exited\x1b[2J`}},
		{"guest memory", api.VMStatus{Available: true, State: api.VMRunning, MemoryReclaim: "gradual",
			Memory: &api.VMMemory{TotalBytes: 2 << 30, UsedBytes: 100 << 20, CachedBytes: 50 << 20, AvailableBytes: 1 << 30, ReclaimedBytes: 900 << 20}},
			[]string{"guest memory: 100.0 MiB used, 50.0 MiB cache, 1.0 GiB available of 2.0 GiB; reclaim (gradual) gave back 900.0 MiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printVM(&b, tt.st, now)
			out := b.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for i, line := range strings.Split(out, "\n") {
				checkPrintable(t, "line "+string(rune('0'+i)), line)
			}
		})
	}
}

// TestVMConsoleCommand: `vm console` prints the guest's bytes line by line,
// with nothing in them able to drive the terminal.
func TestVMConsoleCommand(t *testing.T) {
	dir := t.TempDir()
	serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, hostileConsole)
	})
	out, _, err := runCLI(t, "--data", dir, "vm", "console")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 || lines[0] != "[    0.000000] Linux version 6.1" || !strings.Contains(out, `\x1b]0;pwned\x07\x1b[2J<img src=x onerror=alert(1)>`) ||
		!strings.Contains(out, `\xff\xfe\u202egnp.exe\x09X\x00`) || !strings.Contains(out, `\x9b31mred`) {
		t.Errorf("vm console printed:\n%s", out)
	}
	for i, line := range lines {
		checkPrintable(t, "line "+string(rune('0'+i)), line)
	}
}

// TestVMReclaimCommand: `vm reclaim` posts to /vm/reclaim (nothing else) and
// says what the VM gave back; a VM that does not run is the server's 409,
// said as it is.
func TestVMReclaimCommand(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reply   func(w http.ResponseWriter)
		want    string
		wantErr string
	}{
		{"running", func(w http.ResponseWriter) {
			writeJSONReply(w, 200, api.VMReclaim{DroppedBytes: 900 << 20, Memory: api.VMMemory{UsedBytes: 100 << 20, CachedBytes: 5 << 20}, RSSBytes: 1 << 30})
		}, "The VM dropped 900.0 MiB of page cache; it uses 100.0 MiB, caches 5.0 MiB. QEMU's resident memory (1.0 GiB now) falls over the next seconds.", ""},
		{"not running", func(w http.ResponseWriter) {
			writeJSONReply(w, 409, api.ErrorBody{Error: api.Error{Code: api.CodeNotRunning, Message: "the VM is not running"}})
		}, "", "the VM is not running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var got []string
			serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
				got = append(got, r.Method+" "+r.URL.Path)
				tc.reply(w)
			})
			out, stderr, err := runCLI(t, "--data", dir, "vm", "reclaim")
			if len(got) != 1 || got[0] != "POST /api/v1/vm/reclaim" {
				t.Errorf("requests = %q, want one POST /api/v1/vm/reclaim", got)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(stderr+err.Error(), tc.wantErr) {
					t.Errorf("vm reclaim = %q, %q, %v; want the error %q", out, stderr, err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.TrimSpace(out) != tc.want {
				t.Errorf("vm reclaim = %q, %v; want %q", out, err, tc.want)
			}
		})
	}
}

// TestStatusShowsVM: status adds the VM's lines, and still answers when the
// server has no /vm (an older one).
func TestStatusShowsVM(t *testing.T) {
	for _, tc := range []struct {
		name string
		vm   func(w http.ResponseWriter)
		want string
	}{
		{"running", func(w http.ResponseWriter) {
			writeJSONReply(w, 200, api.VMStatus{Available: true, State: api.VMRunning, Accel: "kvm", MemoryMiB: 512, CPUs: 2})
		}, "VM: Running (kvm)"},
		{"older server", func(w http.ResponseWriter) {
			writeJSONReply(w, 404, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: "no such API path: /api/v1/vm"}})
		}, "VM: unknown (no such API path: /api/v1/vm)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/api/v1/vm" {
					tc.vm(w)
					return
				}
				writeJSONReply(w, 200, api.Status{Version: "v", Distros: 1})
			})
			out, _, err := runCLI(t, "--data", dir, "status")
			if err != nil || !strings.Contains(out, "Distros: 1, running: 0") || !strings.Contains(out, tc.want) {
				t.Errorf("status = %q, %v; want %q", out, err, tc.want)
			}
		})
	}
}

// TestSetVersionCommand: `set-version NAME N` posts the version and waits
// for the operation; a version other than 1 or 2 is refused before any
// request, and a failed conversion says why.
func TestSetVersionCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		final    api.Operation // the operation's end as GET /operations reports it
		wantBody string        // "": no request at all
		wantErr  string        // "": success
	}{
		{"to version 2", []string{"set-version", "deb", "2"}, api.Operation{Status: api.StatusSuccess}, `{"version":2}`, ""},
		{"to version 1", []string{"set-version", "deb", "1"}, api.Operation{Status: api.StatusSuccess}, `{"version":1}`, ""},
		{"failed", []string{"set-version", "deb", "2"}, api.Operation{Status: api.StatusFailure, Error: "disk \x1b[2J full"}, `{"version":2}`, `disk \x1b[2J full`},
		{"bad version", []string{"set-version", "deb", "3"}, api.Operation{}, "", "1 or 2"},
		{"not a number", []string{"set-version", "deb", "two"}, api.Operation{}, "", "1 or 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var mu sync.Mutex
			var body string
			f := serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/api/v1/distros/deb/set-version":
					b, _ := io.ReadAll(r.Body)
					mu.Lock()
					body = strings.TrimSpace(string(b))
					mu.Unlock()
					writeJSONReply(w, 202, api.Operation{ID: "op", Kind: api.KindSetVersion, Distro: "deb", Status: api.StatusRunning})
				case "/api/v1/operations/op":
					op := tc.final
					op.ID, op.Kind, op.Distro = "op", api.KindSetVersion, "deb"
					writeJSONReply(w, 200, op)
				}
			})
			_, errOut, err := runCLI(t, append([]string{"--data", dir}, tc.args...)...)
			mu.Lock()
			defer mu.Unlock()
			if body != tc.wantBody {
				t.Errorf("sent %q, want %q", body, tc.wantBody)
			}
			if tc.wantBody == "" && len(f.requests()) != 0 {
				t.Errorf("a refused version still sent %d requests", len(f.requests()))
			}
			if tc.wantErr == "" {
				if err != nil || !strings.Contains(errOut, "Converted deb to version") {
					t.Errorf("set-version = %v, stderr %q", err, errOut)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("set-version error %v, want one with %q", err, tc.wantErr)
			}
		})
	}
}

// TestImportV2: what import sends for a version 2 distro: the size in bytes,
// a raw image as its content type, the location as WSL's second argument.
func TestImportV2(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		args      []string // after NAME; FILE is appended
		wantQuery map[string]string
		wantType  string
		wantErr   string
	}{
		{"tarball, server's default version", "r.tar", nil, map[string]string{"name": "d"}, "application/octet-stream", ""},
		{"version 2 with a size", "r.tar", []string{"--version", "2", "--size", "256G"},
			map[string]string{"name": "d", "version": "2", "size": "274877906944"}, "application/octet-stream", ""},
		{"an .img file is a raw image", "disk.img", []string{"--size", "512M"}, map[string]string{"name": "d", "size": "536870912"}, "application/x-raw-disk-image", ""},
		{"--vhd", "disk.raw", []string{"--vhd"}, map[string]string{"name": "d"}, "application/x-raw-disk-image", ""},
		{"location as an argument", "r.tar", []string{"/srv/distros/d"}, map[string]string{"name": "d", "location": "/srv/distros/d"}, "application/octet-stream", ""},
		{"an image is not version 1", "disk.img", []string{"--version", "1"}, nil, "", "version 2"},
		{"a bad size", "r.tar", []string{"--size", "lots"}, nil, "", "--size"},
		{"two locations", "r.tar", []string{"/a", "--location", "/b"}, nil, "", "not both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, tc.file)
			if err := os.WriteFile(src, []byte("image bytes"), 0o600); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var query map[string]string
			var ctype, got string
			f := serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				query = map[string]string{}
				for k, v := range r.URL.Query() {
					query[k] = v[0]
				}
				ctype, got = r.Header.Get("Content-Type"), string(b)
				mu.Unlock()
				writeJSONReply(w, 202, api.Operation{ID: "o", Kind: api.KindImport, Distro: "d", Status: api.StatusSuccess})
			})
			args := append(append([]string{"--data", dir, "import", "d"}, tc.args...), src)
			// A location argument sits before FILE.
			if len(tc.args) > 0 && strings.HasPrefix(tc.args[0], "/") {
				args = append([]string{"--data", dir, "import", "d", tc.args[0], src}, tc.args[1:]...)
			}
			_, _, err := runCLI(t, args...)
			mu.Lock()
			defer mu.Unlock()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || len(f.requests()) != 0 {
					t.Errorf("import = %v after %d requests; want an error with %q and none", err, len(f.requests()), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wq, _ := json.Marshal(tc.wantQuery)
			gq, _ := json.Marshal(query)
			if string(gq) != string(wq) || ctype != tc.wantType || got != "image bytes" {
				t.Errorf("sent query %s, Content-Type %q, body %q; want %s, %q", gq, ctype, got, wq, tc.wantType)
			}
		})
	}
}

// TestExportImage: a FILE ending in .img asks for the raw image.
func TestExportImage(t *testing.T) {
	dir := t.TempDir()
	f := serveSocket(t, dir, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ext4") })
	dst := filepath.Join(dir, "d.img")
	if _, _, err := runCLI(t, "--data", dir, "export", "d", dst); err != nil {
		t.Fatal(err)
	}
	if r := f.requests()[0]; r.URL.Query().Get("format") != "img" {
		t.Errorf("export asked for %s", r.URL)
	}
	if b, _ := os.ReadFile(dst); string(b) != "ext4" {
		t.Errorf("exported %q", b)
	}
}
