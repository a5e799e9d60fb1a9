package client

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/subsys-dev/subsys/api"
)

// maxConsole bounds what VMConsole reads: the server keeps at most 1 MiB, so
// more than that is not a console.
const maxConsole = 4 << 20

// VM returns the utility VM of version 2 distros: its state, accelerator,
// memory, CPUs and kernel. Available is false on a server without version 2.
// Asking never boots it.
func (c *Client) VM(ctx context.Context) (api.VMStatus, error) {
	return get[api.VMStatus](ctx, c, "/vm", nil)
}

// ReclaimVM has the running utility VM give its page cache back to the host
// now; a *Error with code not_running when it does not run.
func (c *Client) ReclaimVM(ctx context.Context) (api.VMReclaim, error) {
	var r api.VMReclaim
	err := c.call(ctx, http.MethodPost, "/vm/reclaim", nil, nil, &r)
	return r, err
}

// VMConsole returns the last bytes of the utility VM's serial console, as
// the guest wrote them: they may hold terminal escape sequences and invalid
// UTF-8, so escape them before showing them.
func (c *Client) VMConsole(ctx context.Context) ([]byte, error) {
	req, err := c.request(ctx, http.MethodGet, "/vm/console", nil, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, fmt.Errorf("vm console: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxConsole+1))
	if err != nil {
		return nil, fmt.Errorf("vm console: %w", c.reachError(err))
	}
	if len(b) > maxConsole {
		return nil, fmt.Errorf("vm console: the reply is over %d bytes", maxConsole)
	}
	return b, nil
}
