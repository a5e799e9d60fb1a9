package apispec

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

// fakeT records what Check reports, so a test can see it fail.
type fakeT struct {
	testing.TB
	errors int
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Errorf(string, ...any) { f.errors++ }

// TestCheck: a reply the document allows passes, and one it does not (wrong
// shape, unknown path, unlisted status) is reported.
func TestCheck(t *testing.T) {
	doc, err := os.ReadFile("../../server/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(doc)
	if err != nil {
		t.Fatal(err)
	}
	json := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
		bad                bool
	}{
		{"version", "GET", "/api/v1/version", 200, `{"version":"1"}`, false},
		{"version without its field", "GET", "/api/v1/version", 200, `{}`, true},
		{"error shape", "GET", "/api/v1/version", 401, `{"error":{"code":"unauthorized","message":"no"}}`, false},
		{"unknown path", "GET", "/api/v1/nothing-here", 200, `{}`, true},
	} {
		f := &fakeT{TB: t}
		s.Check(f, httptest.NewRequest(tc.method, tc.path, nil), tc.status, json, []byte(tc.body))
		if (f.errors > 0) != tc.bad {
			t.Errorf("%s: %d errors, want bad=%v", tc.name, f.errors, tc.bad)
		}
	}
	if _, err := Load([]byte("not: [an openapi document")); err == nil {
		t.Error("Load accepted a broken document")
	}
}
