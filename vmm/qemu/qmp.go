package qemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// maxQMPLine bounds one QMP message: QEMU's largest reply, query-qmp-schema,
// is about 200 KiB, so 16 MiB leaves room and still stops a runaway peer.
const maxQMPLine = 16 << 20

// eventBuffer is how many events wait for a reader before new ones are
// dropped; the reader of the socket never waits for an event's reader.
const eventBuffer = 64

// QMPError is an error that QEMU answered to a command.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// Event is an asynchronous QMP event, such as SHUTDOWN.
type Event struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data,omitempty"`
	// Time is QEMU's timestamp of the event.
	Time time.Time `json:"-"`
}

// message kinds that parseMessage tells apart.
const (
	kindGreeting = iota + 1
	kindReturn
	kindError
	kindEvent
)

// message is one parsed line from QEMU.
type message struct {
	kind  int
	id    string // the id of a return or error; "" when absent or not a string
	ret   json.RawMessage
	err   *QMPError
	event Event
	greet json.RawMessage // the "QMP" object of the greeting
}

// parseMessage reads one QMP message, a JSON object on one line: a greeting
// ({"QMP": …}), a success ({"return": …}), a failure ({"error": …}) or an
// event ({"event": …}). It returns an error for anything else, so that a
// reply that means nothing is never taken for one that succeeded.
func parseMessage(line []byte) (message, error) {
	var raw struct {
		QMP       json.RawMessage `json:"QMP"`
		Return    json.RawMessage `json:"return"`
		Error     *QMPError       `json:"error"`
		Event     *string         `json:"event"`
		Data      json.RawMessage `json:"data"`
		ID        json.RawMessage `json:"id"`
		Timestamp *struct {
			Seconds      int64 `json:"seconds"`
			Microseconds int64 `json:"microseconds"`
		} `json:"timestamp"`
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return message{}, fmt.Errorf("qmp: message is not a JSON object: %.64q", line)
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return message{}, fmt.Errorf("qmp: bad message: %w", err)
	}
	var m message
	var id string
	if len(raw.ID) > 0 {
		// Only string ids are ours; another id is left empty and so matches
		// no command.
		_ = json.Unmarshal(raw.ID, &id)
	}
	n := 0
	if raw.QMP != nil {
		n++
		m = message{kind: kindGreeting, greet: raw.QMP}
	}
	if raw.Return != nil {
		n++
		m = message{kind: kindReturn, id: id, ret: raw.Return}
	}
	if raw.Error != nil {
		n++
		m = message{kind: kindError, id: id, err: raw.Error}
	}
	if raw.Event != nil {
		n++
		ev := Event{Event: *raw.Event, Data: raw.Data}
		if ts := raw.Timestamp; ts != nil && ts.Seconds >= 0 && ts.Microseconds >= 0 && ts.Microseconds < 1e6 {
			ev.Time = time.Unix(ts.Seconds, ts.Microseconds*1000)
		}
		m = message{kind: kindEvent, event: ev}
	}
	switch n {
	case 1:
		return m, nil
	case 0:
		return message{}, fmt.Errorf("qmp: message is neither greeting, return, error nor event: %.64q", line)
	default:
		return message{}, fmt.Errorf("qmp: message is more than one kind: %.64q", line)
	}
}

// readLine reads one line of at most maxQMPLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxQMPLine {
			return nil, fmt.Errorf("qmp: message longer than %d bytes", maxQMPLine)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

type qmpResult struct {
	ret json.RawMessage
	err error
}

// qmpClient is one QMP connection. Commands may run concurrently: each carries
// an id, and its reply is matched by it. The client owns one goroutine, the
// reader, which Close ends and waits for.
type qmpClient struct {
	conn       net.Conn
	greet      json.RawMessage
	events     chan Event
	readerDone chan struct{} // closed when the reader has ended

	wmu sync.Mutex // one command written at a time

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan qmpResult
	readErr error // why the reader ended, once it has
}

// newQMPClient reads QEMU's greeting from conn, starts the reader and
// negotiates capabilities. ctx bounds the whole handshake; on failure conn is
// closed.
func newQMPClient(ctx context.Context, conn net.Conn) (_ *qmpClient, err error) {
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	br := bufio.NewReader(conn)
	// The greeting is read here, before the reader exists, so a cancelled ctx
	// must unblock the read itself.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	line, err := readLine(br)
	if !stop() {
		return nil, fmt.Errorf("qmp: greeting: %w", context.Cause(ctx))
	}
	if err != nil {
		return nil, fmt.Errorf("qmp: greeting: %w", err)
	}
	m, err := parseMessage(line)
	if err != nil {
		return nil, fmt.Errorf("qmp: greeting: %w", err)
	}
	if m.kind != kindGreeting {
		return nil, fmt.Errorf("qmp: expected a greeting, got %.64q", line)
	}
	c := &qmpClient{
		conn:       conn,
		greet:      m.greet,
		events:     make(chan Event, eventBuffer),
		readerDone: make(chan struct{}),
		pending:    map[string]chan qmpResult{},
	}
	go c.read(br)
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("qmp: negotiating capabilities: %w", err)
	}
	return c, nil
}

// read hands each reply to the command waiting for it and each event to the
// events channel until the connection ends; then it fails every command
// still waiting.
func (c *qmpClient) read(br *bufio.Reader) {
	defer close(c.readerDone)
	defer close(c.events)
	var err error
	for {
		var line []byte
		line, err = readLine(br)
		if err != nil {
			break
		}
		m, perr := parseMessage(line)
		if perr != nil {
			// A line we cannot read is not a reply to anyone: skipping it
			// keeps the connection, and the command it may have answered
			// ends by its context.
			continue
		}
		switch m.kind {
		case kindEvent:
			select {
			case c.events <- m.event:
			default: // nobody reads events now: drop rather than stall replies
			}
		case kindReturn, kindError:
			c.mu.Lock()
			ch := c.pending[m.id]
			delete(c.pending, m.id)
			c.mu.Unlock()
			if ch != nil {
				r := qmpResult{ret: m.ret}
				if m.err != nil {
					r.err = m.err
				}
				ch <- r // buffered: never blocks
			}
		}
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("qmp: QEMU closed the connection")
	} else {
		err = fmt.Errorf("qmp: reading: %w", err)
	}
	c.mu.Lock()
	c.readErr = err
	for id, ch := range c.pending {
		ch <- qmpResult{err: err}
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// Execute runs command with args (nil for none) and decodes its return value
// into out (nil to ignore it). An error QEMU answers is a *QMPError. When ctx
// ends first, Execute returns; QEMU's late reply is then dropped.
func (c *qmpClient) Execute(ctx context.Context, command string, args, out any) error {
	c.mu.Lock()
	if c.readErr != nil {
		err := c.readErr
		c.mu.Unlock()
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	c.nextID++
	id := "subsys-" + strconv.FormatUint(c.nextID, 10)
	ch := make(chan qmpResult, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id}
	b, err := json.Marshal(req)
	if err != nil {
		forget()
		return fmt.Errorf("qmp: %s: encoding arguments: %w", command, err)
	}
	b = append(b, '\n')
	if err := c.write(ctx, b); err != nil {
		forget()
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("qmp: %s: %w", command, r.err)
		}
		if out != nil {
			if err := json.Unmarshal(r.ret, out); err != nil {
				return fmt.Errorf("qmp: %s: decoding its return: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("qmp: %s: %w", command, context.Cause(ctx))
	}
}

// write sends one command line; a cancelled ctx interrupts a write that
// blocks (QEMU not reading), which leaves the stream broken, so the
// connection is closed then.
func (c *qmpClient) write(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetWriteDeadline(time.Unix(1, 0)) })
	_, err := c.conn.Write(b)
	if !stop() {
		c.conn.Close()
		return context.Cause(ctx)
	}
	return err
}

// Events returns the channel of QMP events, closed when the connection ends.
// Events that arrive while the channel is full are dropped.
func (c *qmpClient) Events() <-chan Event { return c.events }

// Close closes the connection and waits for the reader to end.
func (c *qmpClient) Close() error {
	err := c.conn.Close()
	<-c.readerDone
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
