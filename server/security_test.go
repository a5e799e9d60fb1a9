package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm"
)

func TestAllowedHost(t *testing.T) {
	tests := []struct {
		host  string
		extra []string
		want  bool
	}{
		{"localhost", nil, true},
		{"localhost:7070", nil, true},
		{"LOCALHOST:1", nil, true},
		{"localhost.", nil, true},
		{"app.localhost:7070", nil, true},
		{"127.0.0.1", nil, true},
		{"127.0.0.1:7070", nil, true},
		{"[::1]:7070", nil, true},
		{"[::1]", nil, true},
		{"127.0.0.2:7070", nil, false},
		{"evil.example", nil, false},
		{"localhost.evil.example", nil, false},
		{"evillocalhost", nil, false},
		{"", nil, false},
		{"box.lan:7070", []string{"box.lan"}, true},
		{"other.lan:7070", []string{"box.lan"}, false},
	}
	for _, tc := range tests {
		if got := AllowedHost(tc.host, tc.extra); got != tc.want {
			t.Errorf("AllowedHost(%q, %v) = %v, want %v", tc.host, tc.extra, got, tc.want)
		}
	}
}

func FuzzAllowedHost(f *testing.F) {
	for _, s := range []string{"localhost:1", "[::1]:2", "a.localhost", "evil", "127.0.0.1", "[fe80::1%25eth0]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if AllowedHost(host, nil) {
			// Whatever is allowed must be a loopback name.
			h := strings.ToLower(host)
			if !strings.Contains(h, "localhost") && !strings.Contains(h, "127.0.0.1") && !strings.Contains(h, "::1") {
				t.Errorf("AllowedHost(%q) = true for a non-loopback name", host)
			}
		}
	})
}

// FuzzDecodeExec feeds arbitrary bodies to the exec request decoder: it must
// answer with an error or a request, never panic, and never accept trailing data.
func FuzzDecodeExec(f *testing.F) {
	f.Add(`{"argv":["true"]}`)
	f.Add(`{"argv":["cat"],"stdin":"aGk=","timeout_s":1.5,"env":["A=B"]}`)
	f.Add(`{"argv":[]} {}`)
	f.Add(`{"argv":["x"],"unknown":1}`)
	s := New(Config{Token: "t", MaxJSONBytes: 4096})
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		w := httptest.NewRecorder()
		var req api.ExecRequest
		if err := s.decodeJSON(w, r, &req); err == nil {
			if !json.Valid([]byte(strings.TrimSpace(body))) {
				t.Errorf("decodeJSON accepted invalid JSON %q", body)
			}
		}
	})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("x: %w", vmm.ErrNotFound), 404, "not_found"},
		{fmt.Errorf("x: %w", vmm.ErrExists), 409, "already_exists"},
		{&vmm.BusyError{Distro: "d", Op: vmm.OperationInfo{ID: "1", Kind: "import"}}, 409, "busy"},
		{fmt.Errorf("x: %w", vmm.ErrInvalid), 400, "invalid"},
		{fmt.Errorf("x: %w", vmm.ErrTooLarge), 413, "too_large"},
		{&http.MaxBytesError{Limit: 1}, 413, "too_large"},
		{errors.New("boom"), 500, "internal"},
	}
	for _, tc := range tests {
		st, code, msg := classify(tc.err)
		if st != tc.status || code != tc.code || msg == "" {
			t.Errorf("classify(%v) = %d %s %q, want %d %s", tc.err, st, code, msg, tc.status, tc.code)
		}
	}
}

// TestMiddleware checks the security chain on a server without a manager: only
// paths that are refused before reaching a handler are used.
func TestMiddleware(t *testing.T) {
	s := New(Config{Token: "secret"})
	tests := []struct {
		name   string
		method string
		host   string
		hdr    map[string]string
		want   int
	}{
		{"no token", "GET", "localhost", nil, 401},
		{"bad host", "GET", "evil.example", map[string]string{"Authorization": "Bearer secret"}, 403},
		{"bad origin", "POST", "localhost:7070", map[string]string{"Authorization": "Bearer secret", "Origin": "http://evil.example"}, 403},
		{"origin of another port", "POST", "localhost:7070", map[string]string{"Authorization": "Bearer secret", "Origin": "http://localhost:8080"}, 403},
		{"version with token", "GET", "localhost", map[string]string{"Authorization": "Bearer secret"}, 200},
		{"same origin POST reaches routing", "POST", "localhost:7070", map[string]string{"Authorization": "Bearer secret", "Origin": "http://localhost:7070"}, 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/api/v1/version", nil)
			r.Host = tc.host
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d (%s)", w.Code, tc.want, w.Body)
			}
			if w.Code >= 400 {
				var body api.ErrorBody
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code == "" || body.Error.Message == "" {
					t.Errorf("error body %q is not the JSON error shape", w.Body)
				}
			}
		})
	}
}

// TestFlowAckBeforeCount: acknowledgements never get lost, whatever the order in
// which a frame is counted and acknowledged, and wait blocks only above the mark.
func TestFlowAckBeforeCount(t *testing.T) {
	f := &flow{}
	f.cond = sync.NewCond(&f.mu)
	for i := 0; i < 100; i++ {
		f.sent(128 << 10)
		f.ack(128 << 10)
	}
	if f.unacked != 0 {
		t.Fatalf("unacked = %d after every byte was acknowledged, want 0", f.unacked)
	}
	f.sent(highWater)
	done := make(chan bool)
	go func() { done <- f.wait() }()
	select {
	case <-done:
		t.Fatal("wait returned while the browser was a full window behind")
	case <-time.After(50 * time.Millisecond):
	}
	f.ack(highWater)
	if ok := <-done; !ok {
		t.Fatal("wait reported closed")
	}
}
