//go:build !linux

package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/yamux"
)

// handleFile: the file operations need Linux's per-thread credentials.
func (s *Server) handleFile(ctx context.Context, st *yamux.Stream, br *bufio.Reader, req request) {
	s.replyError(st, req.Op, fmt.Errorf("%w: file operations", errors.ErrUnsupported))
}
