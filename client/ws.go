package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/subsys-dev/subsys/api"
)

// wsConn is one of the API's websockets, its writes serialised (gorilla
// allows one writer at a time) and its control frames encoded as api's.
type wsConn struct {
	*websocket.Conn
	wmu sync.Mutex
}

// send writes one frame. No deadline: a program that does not read its input
// holds the writer back, as a pipe would, and a timed-out write would break
// the socket for good.
func (c *wsConn) send(kind int, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.WriteMessage(kind, b)
}

// control sends a control frame.
func (c *wsConn) control(ctl api.Control) error {
	b, err := json.Marshal(ctl)
	if err != nil {
		return fmt.Errorf("encode %s frame: %w", ctl.Type, err)
	}
	if err := c.send(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("send %s: %w", ctl.Type, err)
	}
	return nil
}

// close closes the socket; closing it twice is no error.
func (c *wsConn) close() error {
	if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}
