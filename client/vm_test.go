package client

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/api"
)

// TestVMConsole: the console's bytes come back exactly as the server sent
// them (escaping is the caller's, where it shows them); an error reply is an
// *api.Error; a reply too big to be a console is refused.
func TestVMConsole(t *testing.T) {
	hostile := []byte("\x1b]0;title\x07<img src=x onerror=alert(1)>\xff\x00\n")
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    []byte
		code    string // the *api.Error's code; "" for none
		errText string // a part of the error's text; "" for no error
	}{
		{"hostile bytes", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(hostile)
		}, hostile, "", ""},
		{"empty", func(w http.ResponseWriter, r *http.Request) {}, []byte{}, "", ""},
		{"refused", func(w http.ResponseWriter, r *http.Request) {
			reply(w, 401, api.ErrorBody{Error: api.Error{Code: api.CodeUnauthorized, Message: "no credential"}})
		}, nil, api.CodeUnauthorized, "no credential"},
		{"too big", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(w, io.LimitReader(zeros{}, maxConsole+10))
		}, nil, "", "over"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var path, method string
			c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
				path, method = r.URL.Path, r.Method
				tc.handler(w, r)
			})
			got, err := c.VMConsole(ctxT(t))
			if method != "GET" || path != "/api/v1/vm/console" {
				t.Errorf("sent %s %s", method, path)
			}
			if tc.errText == "" {
				if err != nil || !bytes.Equal(got, tc.want) {
					t.Errorf("VMConsole = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("VMConsole = %q, %v; want an error with %q", got, err, tc.errText)
			}
			var ae *api.Error
			if tc.code != "" && (!errors.As(err, &ae) || ae.Code != tc.code) {
				t.Errorf("VMConsole error %#v, want code %s", err, tc.code)
			}
		})
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestImportOptions: a version 2 import's disk size goes as `size`, and a raw
// image as its own content type, beside the usual parameters.
func TestImportOptions(t *testing.T) {
	tests := []struct {
		name      string
		opt       ImportOptions
		wantQuery string
		wantType  string
	}{
		{"tarball", ImportOptions{}, "name=d", "application/octet-stream"},
		{"version 2 with a size", ImportOptions{Version: 2, DiskSize: 256 << 30}, "name=d&size=274877906944&version=2", "application/octet-stream"},
		{"raw image", ImportOptions{RawImage: true, DiskSize: 1 << 30}, "name=d&size=1073741824", api.ContentTypeRawDiskImage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var query, ctype string
			c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				query, ctype = r.URL.RawQuery, r.Header.Get("Content-Type")
				reply(w, 202, api.Operation{ID: "o", Kind: api.KindImport, Distro: "d", Status: api.StatusSuccess})
			})
			if _, err := c.Import(ctxT(t), "d", strings.NewReader("body"), tc.opt); err != nil {
				t.Fatal(err)
			}
			if query != tc.wantQuery || ctype != tc.wantType {
				t.Errorf("query %q, Content-Type %q; want %q, %q", query, ctype, tc.wantQuery, tc.wantType)
			}
		})
	}
}

// TestSetVersion: the conversion is followed to its end, and a failed one is
// an *api.OperationError.
func TestSetVersion(t *testing.T) {
	polls := 0
	c := serveSocket(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/distros/deb/set-version":
			reply(w, 202, api.Operation{ID: "op1", Kind: api.KindSetVersion, Distro: "deb", Status: api.StatusRunning})
		case "/api/v1/operations/op1":
			polls++
			op := api.Operation{ID: "op1", Kind: api.KindSetVersion, Distro: "deb", Status: api.StatusRunning, Progress: api.Progress{Done: int64(polls), Total: 2}}
			if polls == 2 {
				op.Status, op.Error = api.StatusFailure, "no room for the image"
			}
			reply(w, 200, op)
		}
	})
	var seen []api.Operation
	op, err := c.SetVersion(ctxT(t), "deb", 2, func(o api.Operation) { seen = append(seen, o) })
	var oe *api.OperationError
	if !errors.As(err, &oe) || err.Error() != "set-version deb failed: no room for the image" || op.Status != api.StatusFailure {
		t.Errorf("SetVersion = %+v, %v", op, err)
	}
	if len(seen) != 2 || seen[0].Progress.Done != 1 {
		t.Errorf("progress reports %+v", seen)
	}
}
