package server

import (
	"bytes"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

func TestFileError(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("x: %w", vmm.ErrNotFound), 404, api.CodeDistroNotFound},
		{&agent.RemoteError{Code: "user_not_found"}, 404, api.CodeUserNotFound},
		{&agent.RemoteError{Code: "not_found"}, 404, api.CodeFileNotFound},
		{&agent.RemoteError{Code: "permission_denied"}, 403, api.CodePermissionDenied},
		{&agent.RemoteError{Code: "file_exists"}, 409, api.CodeFileExists},
		{&agent.RemoteError{Code: "directory_not_empty"}, 409, api.CodeDirectoryNotEmpty},
		{&agent.RemoteError{Code: "not_a_directory"}, 400, api.CodeNotADirectory},
		{&agent.RemoteError{Code: "is_a_directory"}, 400, api.CodeIsADirectory},
		{&agent.RemoteError{Code: "invalid_path"}, 400, api.CodeInvalidPath},
		{fmt.Errorf("%w: old agent", vmm.ErrUnsupported), 501, api.CodeUnsupported},
		{errors.New("boom"), 500, api.CodeInternal},
	} {
		status, code, _ := classify(fileError(tc.err))
		if status != tc.status || code != tc.code {
			t.Errorf("%v → %d %s, want %d %s", tc.err, status, code, tc.status, tc.code)
		}
	}
}

func TestFilePath(t *testing.T) {
	for _, tc := range []struct {
		url, want string
		ok        bool
	}{
		{"/files/", "/", true},
		{"/files/etc/passwd", "/etc/passwd", true},
		{"/files/etc/", "/etc", true},
		{"/files/a%20b/c%2Fd", "/a b/c/d", true},
		{"/files/a%23b", "/a#b", true},
		{"/files/a/%2E%2E/b", "", false},
		{"/files/a//b", "", false},
		{"/files/a%00b", "", false},
	} {
		r := chi.NewRouter()
		var got string
		var err error
		r.Get("/files/*", func(w http.ResponseWriter, req *http.Request) { got, err = filePath(req) })
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", tc.url, nil))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s → %q, %v", tc.url, got, err)
		}
	}
}

func TestBrowserRequest(t *testing.T) {
	for _, tc := range []struct {
		hdr  http.Header
		want bool
	}{
		{http.Header{}, false},
		{http.Header{"User-Agent": {"davfs2/1.7"}, "Authorization": {"Basic eDp5"}}, false},
		{http.Header{"Origin": {"http://evil.example"}}, true},
		{http.Header{"Origin": {""}}, true},
		{http.Header{"Sec-Fetch-Site": {"none"}}, true},
		{http.Header{"Sec-Fetch-Mode": {"navigate"}}, true},
		{http.Header{"Sec-Fetch-User": {"?1"}}, true},
	} {
		r := httptest.NewRequest("PROPFIND", "/dav/x/", nil)
		r.Header = tc.hdr
		if got := browserRequest(r); got != tc.want {
			t.Errorf("browserRequest(%v) = %v", tc.hdr, got)
		}
	}
}

// multipartOf is a body with one file part whose Content-Disposition
// filename is name, quoted as a client may send it.
func multipartOf(name string) (*multipart.Reader, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf("form-data; name=\"f\"; filename=%q", name))
	w, err := mw.CreatePart(h)
	if err != nil {
		return nil, err
	}
	w.Write([]byte("data"))
	mw.Close()
	return multipart.NewReader(&buf, mw.Boundary()), nil
}

func TestSpoolUploadNames(t *testing.T) {
	for name, ok := range map[string]bool{"a.txt": true, "a b": true, "../x": false, "a/b": false, ".": false, "..": false, `a\b`: true} {
		mr, err := multipartOf(name)
		if err != nil {
			t.Fatal(err)
		}
		parts, err := spoolUpload(mr)
		for _, p := range parts {
			p.file.Close()
		}
		if (err == nil) != ok {
			t.Errorf("upload of %q: %v", name, err)
		}
		if err == nil && (len(parts) != 1 || parts[0].name != name) {
			t.Errorf("upload of %q spooled %v", name, parts)
		}
	}
}

func FuzzSpoolUpload(f *testing.F) {
	for _, s := range []string{"a", "../a", "a/b", "..", "x\x00y", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		mr, err := multipartOf(name)
		if err != nil {
			return
		}
		parts, err := spoolUpload(mr)
		for _, p := range parts {
			p.file.Close()
			if !agent.ValidFileName(p.name) {
				t.Fatalf("spooled a part named %q", p.name)
			}
		}
		_ = err
	})
}
