package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/subsys-dev/subsys/api"
)

// Operation returns an operation as it is now.
func (c *Client) Operation(ctx context.Context, id string) (api.Operation, error) {
	return get[api.Operation](ctx, c, "/operations/"+url.PathEscape(id), nil)
}

// WaitOperation long-polls an operation until it ends, calling onProgress
// (when not nil) with each report, the last one included. A failed operation
// returns an *api.OperationError beside it. Cancelling ctx stops the waiting,
// not the operation.
func (c *Client) WaitOperation(ctx context.Context, id string, onProgress func(api.Operation)) (api.Operation, error) {
	// A one-second poll: each answer is a progress report.
	q := url.Values{"wait": {"1"}}
	for {
		op, err := get[api.Operation](ctx, c, "/operations/"+url.PathEscape(id), q)
		if err != nil {
			return op, err
		}
		if onProgress != nil {
			onProgress(op)
		}
		if op.Done() {
			return op, op.Err()
		}
		select {
		case <-ctx.Done():
			return op, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// CancelOperation cancels a running operation; what it made is removed. It
// returns the operation after cancelling.
func (c *Client) CancelOperation(ctx context.Context, id string) (api.Operation, error) {
	var op api.Operation
	err := c.call(ctx, http.MethodDelete, "/operations/"+url.PathEscape(id), nil, nil, &op)
	return op, err
}
