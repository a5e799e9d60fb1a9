//go:build linux

package e2e

import (
	"net/http"
	"os"
	"sync"
	"testing"

	"github.com/subsys-dev/subsys/internal/apispec"
)

var (
	specOnce sync.Once
	spec     *apispec.Spec
	specErr  error
)

// openAPISpec loads server/openapi.yaml, the contract every reply is checked against.
func openAPISpec() (*apispec.Spec, error) {
	specOnce.Do(func() {
		raw, err := os.ReadFile("../server/openapi.yaml")
		if err != nil {
			specErr = err
			return
		}
		spec, specErr = apispec.Load(raw)
	})
	return spec, specErr
}

// checkAgainstSpec validates one JSON reply of the API against openapi.yaml.
func checkAgainstSpec(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	s, err := openAPISpec()
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	s.Check(t, req, status, header, body)
}

// TestOpenAPIDocument: the document parses and validates as OpenAPI 3.
func TestOpenAPIDocument(t *testing.T) {
	if _, err := openAPISpec(); err != nil {
		t.Fatal(err)
	}
}
