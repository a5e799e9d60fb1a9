package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/subsys-dev/subsys/api"
)

// EventStream is the server's live changes (GET /events), reconnected when
// the connection drops. The server sends a snapshot on every connect, so
// after a reconnect the next event is an api.EventSnapshot that replaces
// whatever the consumer knew: nothing missed in between is lost for good.
type EventStream struct {
	// C delivers the events in order. It is closed when the stream ends:
	// ctx ended, Close was called, or the server refused it for good (Err).
	C <-chan api.Event

	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// Reconnection delays: the server's retry (1 s) at first, doubling while the
// server stays away, up to maxRetry.
const (
	defaultRetry = time.Second
	maxRetry     = 30 * time.Second
)

// Events subscribes to the server's events. The first connection is made
// before it returns, so a wrong credential or a server that is not running
// is its error; later the stream reconnects by itself until ctx ends or
// Close is called. A consumer that falls behind is dropped by the server,
// and so reconnects and starts from a new snapshot too.
func (c *Client) Events(ctx context.Context) (*EventStream, error) {
	body, err := c.openEvents(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan api.Event)
	s := &EventStream{C: ch, cancel: cancel, done: make(chan struct{})}
	go s.run(ctx, c, body, ch)
	return s, nil
}

// Err returns why the stream ended, once C is closed: nil after Close or
// the end of ctx, else the server's refusal (an *api.Error).
func (s *EventStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the stream and waits until C is closed.
func (s *EventStream) Close() error {
	s.cancel()
	<-s.done
	return nil
}

func (c *Client) openEvents(ctx context.Context) (io.ReadCloser, error) {
	req, err := c.request(ctx, http.MethodGet, "/events", nil, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func (s *EventStream) run(ctx context.Context, c *Client, body io.ReadCloser, ch chan<- api.Event) {
	defer close(s.done)
	defer close(ch)
	retry, delay := defaultRetry, defaultRetry
	for {
		if body != nil {
			stop := context.AfterFunc(ctx, func() { body.Close() })
			got, r := readEvents(ctx, body, ch)
			stop()
			body.Close()
			if r > 0 {
				retry = r
			}
			if got {
				delay = retry // it worked for a while: back to the server's pace
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		var err error
		body, err = c.openEvents(ctx)
		var ae *api.Error
		switch {
		case ctx.Err() != nil:
			if body != nil {
				body.Close()
			}
			return
		case errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500:
			// A credential that no longer works (the token was rotated) or a
			// server without events: retrying cannot help.
			s.mu.Lock()
			s.err = fmt.Errorf("events: %w", err)
			s.mu.Unlock()
			return
		case err != nil:
			body, delay = nil, min(delay*2, maxRetry)
		}
	}
}

// readEvents passes on the events of one connection until it ends. It
// reports whether any came, and the server's retry delay if it sent one.
// Events of a kind this client does not know are skipped.
func readEvents(ctx context.Context, body io.Reader, ch chan<- api.Event) (bool, time.Duration) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // a snapshot of many distros is one line
	var name string
	var data strings.Builder
	got, retry := false, time.Duration(0)
	for sc.Scan() {
		line := sc.Text()
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			if name == "" && data.Len() == 0 {
				continue
			}
			e, err := api.ParseEvent(name, []byte(data.String()))
			name = ""
			data.Reset()
			if err != nil {
				continue
			}
			select {
			case ch <- e:
				got = true
			case <-ctx.Done():
				return got, retry
			}
		case field == "event":
			name = value
		case field == "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
		case field == "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms > 0 {
				retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	return got, retry
}
