package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// MaxControlFrame bounds a control frame (a websocket text frame); the server
// refuses larger ones.
const MaxControlFrame = 64 << 10

// ControlType says what a control frame is.
type ControlType string

// Control frame types. Clients send eof, resize, signal and ack; the server
// sends started, session, exit and error.
const (
	// ControlEOF (exec, client): close the process's standard input.
	ControlEOF ControlType = "eof"
	// ControlResize (client): the terminal is now Cols × Rows.
	ControlResize ControlType = "resize"
	// ControlSignal (client): send the signal Name ("INT", "TERM") to the program.
	ControlSignal ControlType = "signal"
	// ControlAck (terminal, client): Bytes more bytes of output were consumed.
	// The first ack, even of 0 bytes, opts the client in to acknowledgement
	// pacing: the server then keeps at most 256 KiB unacknowledged.
	ControlAck ControlType = "ack"
	// ControlStarted (exec, server): the command runs; stream away.
	ControlStarted ControlType = "started"
	// ControlSession (terminal, server, first frame): ID names the session, to
	// reattach with ?session=ID.
	ControlSession ControlType = "session"
	// ControlExit (server, last frame): the program ended with Code, or by
	// Signal (exec).
	ControlExit ControlType = "exit"
	// ControlError (exec, server): the command could not run; Error says why.
	ControlError ControlType = "error"
)

// Control is a JSON text frame of the exec and terminal websockets, in either
// direction; which fields are set depends on Type. Binary frames carry the
// bytes (on exec/ws after a channel byte, see ChannelStdin).
//
// The field order is the wire's: encoding a Control gives the frames the
// dashboard (web/src/terminal.ts) and scripts have always seen.
type Control struct {
	// Type says what the frame is: one of the Control constants.
	Type ControlType `json:"type"`
	// ID names the terminal session (session).
	ID string `json:"id,omitempty"`
	// Cols and Rows are the terminal size (resize).
	Cols uint16 `json:"cols,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	// Name is the signal to send, without "SIG" (signal).
	Name string `json:"name,omitempty"`
	// Bytes is how many more output bytes were consumed (ack).
	Bytes int64 `json:"bytes,omitempty"`
	// Code is the exit code (exit). It is a pointer because the two sockets
	// have always differed: the terminal's exit frame carries a code of 0,
	// exec's leaves it out. ExitCode reads it either way.
	Code *int `json:"code,omitempty"`
	// Signal names the signal that ended the process (exit, exec).
	Signal string `json:"signal,omitempty"`
	// Error says why the command could not run (error).
	Error *Error `json:"error,omitempty"`
}

// ExitCode returns Code, 0 when it is absent.
func (c Control) ExitCode() int {
	if c.Code == nil {
		return 0
	}
	return *c.Code
}

// ParseControl decodes one control frame a client sent, refusing what the
// server refuses: frames over MaxControlFrame, malformed JSON or values (a size
// over 65535), a type a client does not send, and a negative ack. Which of the
// valid types a socket acts on is the socket's business (exec has no acks, a
// terminal no eof).
func ParseControl(b []byte) (Control, error) {
	var c Control
	if len(b) > MaxControlFrame {
		return Control{}, fmt.Errorf("control frame over %d KiB", MaxControlFrame>>10)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Control{}, fmt.Errorf("control frame: %w", err)
	}
	switch c.Type {
	case ControlEOF, ControlResize, ControlSignal:
		return c, nil
	case ControlAck:
		if c.Bytes < 0 {
			return Control{}, errors.New("control frame: negative ack")
		}
		return c, nil
	}
	return Control{}, errors.New("control frame: unknown type " + strconv.Quote(string(c.Type)))
}
