// Package apispec checks replies of the REST API against its OpenAPI document
// (server/openapi.yaml), for tests: the e2e tests and the server's own
// handler tests validate every JSON reply with it, so the document stays the
// contract the code is held to. It takes the document's bytes, so it does not
// import the server.
package apispec

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Spec is a loaded, validated OpenAPI document.
type Spec struct {
	router routers.Router
}

// Load parses and validates an OpenAPI 3 document whose paths sit under
// /api/v1.
func Load(doc []byte) (*Spec, error) {
	d, err := openapi3.NewLoader().LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("load openapi document: %w", err)
	}
	if err := d.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate openapi document: %w", err)
	}
	d.Servers = openapi3.Servers{{URL: "http://127.0.0.1/api/v1"}}
	r, err := gorillamux.NewRouter(d)
	if err != nil {
		return nil, fmt.Errorf("route openapi document: %w", err)
	}
	return &Spec{router: r}, nil
}

// Has reports whether the document describes req's method and path.
func (s *Spec) Has(req *http.Request) bool {
	r := req.Clone(context.Background())
	r.URL.Scheme, r.URL.Host, r.Host = "http", "127.0.0.1", "127.0.0.1"
	_, _, err := s.router.FindRoute(r)
	return err == nil
}

// Check reports (t.Errorf) a reply of req that the document does not allow:
// an unknown path or method, a status it does not list, or a body that does
// not match the schema.
func (s *Spec) Check(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	// Route on a copy whose host matches the document's server.
	r := req.Clone(context.Background())
	r.URL.Scheme, r.URL.Host, r.Host = "http", "127.0.0.1", "127.0.0.1"
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		t.Errorf("%s %s: not in openapi.yaml: %v", req.Method, req.URL.Path, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, ExcludeRequestBody: true}}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s → %d does not match openapi.yaml: %v\nbody: %.300s", req.Method, req.URL.Path, status, err, body)
	}
}
