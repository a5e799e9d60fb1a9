package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/archive"
)

func TestClassifyErrors(t *testing.T) {
	full := &archive.InsufficientStorageError{Path: "/srv/d/.subsys-staging", MountPoint: "/srv", FSType: "ext4", Free: 12 << 20, Err: syscall.ENOSPC}
	reserve := &archive.InsufficientStorageError{Path: "/x", MountPoint: "/", Free: 1 << 30, Reserve: 2 << 30}
	tests := []struct {
		name    string
		err     error
		status  int
		code    string
		mention string
	}{
		{"not found", fmt.Errorf("get: %w", vmm.ErrNotFound), http.StatusNotFound, "not_found", ""},
		{"busy", &vmm.BusyError{Distro: "d", Op: vmm.OperationInfo{ID: "1", Kind: "import"}}, http.StatusConflict, "busy", "import"},
		{"invalid", fmt.Errorf("%w: location /x: /x belongs to uid 1000", vmm.ErrInvalid), http.StatusBadRequest, "invalid", "uid 1000"},
		{"disk full", fmt.Errorf("import d: %w: %w", vmm.ErrInsufficientStorage, full), http.StatusInsufficientStorage, "insufficient_storage", "/srv (ext4)"},
		{"reserve reached", fmt.Errorf("import d: %w: %w", vmm.ErrInsufficientStorage, reserve), http.StatusInsufficientStorage, "insufficient_storage", "reserve"},
		{"cancelled", fmt.Errorf("import: %w", context.Canceled), http.StatusConflict, "cancelled", ""},
		{"xz bomb", fmt.Errorf("%w: %w: xz data needs a 4.0 GiB dictionary", vmm.ErrInvalid, archive.ErrFormat), http.StatusBadRequest, "invalid_archive", "4.0 GiB"},
		{"damaged", fmt.Errorf("%w: %w: gzip data fails its checksum", vmm.ErrInvalid, archive.ErrCorrupt), http.StatusBadRequest, "invalid_archive", "checksum"},
		{"escape", fmt.Errorf("%w: %w: ../x", vmm.ErrInvalid, archive.ErrUnsafe), http.StatusBadRequest, "invalid_archive", "../x"},
		{"no version 1", fmt.Errorf("import d: %w", vmm.ErrNoVersion1), http.StatusBadRequest, "version1_needs_linux", "need a Linux host"},
		{"other", errors.New("boom"), http.StatusInternalServerError, "internal", "boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, code, msg := classify(tc.err)
			if status != tc.status || code != tc.code || !strings.Contains(msg, tc.mention) {
				t.Errorf("classify(%v) = %d %s %q, want %d %s mentioning %q", tc.err, status, code, msg, tc.status, tc.code, tc.mention)
			}
		})
	}
}
