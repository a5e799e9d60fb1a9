//go:build !linux

package agent

import (
	"errors"
	"fmt"
)

func (s *Server) startProcess(req ExecRequest) (process, error) {
	return nil, fmt.Errorf("exec: %w", errors.ErrUnsupported)
}
