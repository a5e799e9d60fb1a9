package agent

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Wire limits. Both sides reject anything bigger, so a confused or hostile peer
// cannot make the other allocate without bound.
const (
	// maxFrameSize bounds one frame's payload.
	maxFrameSize = 1 << 20
	// maxHeaderSize bounds one JSON header line, newline included.
	maxHeaderSize = 64 << 10
	// frameHeaderSize is [1 byte type][4 byte big-endian length].
	frameHeaderSize = 5
)

// frameType says what a frame's payload is. Client→agent and agent→client types
// use separate ranges so a frame sent the wrong way is easy to spot in a dump.
type frameType uint8

const (
	// Client → agent.
	frameStdin        frameType = 0x01 // raw stdin bytes
	frameStdinEOF     frameType = 0x02 // empty: no more stdin
	frameResize       frameType = 0x03 // JSON resizeMsg
	frameSignal       frameType = 0x04 // JSON signalMsg
	frameWindowStdout frameType = 0x05 // uint32: the client took this many stdout bytes
	frameWindowStderr frameType = 0x06 // uint32: the client took this many stderr bytes
	frameUpload       frameType = 0x07 // raw bytes of a file-write
	frameUploadEnd    frameType = 0x08 // JSON dataEnd: the file-write's data ended (an error aborts it)

	// Agent → client.
	frameStdout      frameType = 0x11 // raw stdout bytes (the terminal's output with a pty)
	frameStderr      frameType = 0x12 // raw stderr bytes
	frameExit        frameType = 0x13 // JSON ExitStatus, the last frame
	frameWindowStdin frameType = 0x14 // uint32: the agent took this many stdin bytes
	frameDetached    frameType = 0x15 // empty: another attachment took the session over; the last frame
	frameSession     frameType = 0x16 // JSON SessionInfo
	frameData        frameType = 0x17 // raw bytes of a data stream (export-tree)
	frameDataEnd     frameType = 0x18 // JSON dataEnd: the data stream's last frame
)

func (t frameType) String() string {
	switch t {
	case frameStdin:
		return "stdin"
	case frameStdinEOF:
		return "stdin-eof"
	case frameResize:
		return "resize"
	case frameSignal:
		return "signal"
	case frameWindowStdout:
		return "window-stdout"
	case frameWindowStderr:
		return "window-stderr"
	case frameUpload:
		return "upload"
	case frameUploadEnd:
		return "upload-end"
	case frameStdout:
		return "stdout"
	case frameStderr:
		return "stderr"
	case frameExit:
		return "exit"
	case frameWindowStdin:
		return "window-stdin"
	case frameDetached:
		return "detached"
	case frameSession:
		return "session"
	case frameData:
		return "data"
	case frameDataEnd:
		return "data-end"
	}
	return fmt.Sprintf("frame(0x%02x)", uint8(t))
}

// framePool holds writeFrame's buffers: a frame is copied into one and sent
// with a single Write, and a buffer per frame would cost an allocation (and
// its zeroing) for every 128 KiB of output.
var framePool = sync.Pool{New: func() any { return new([]byte) }}

// writeFrame writes one frame with a single Write call, so frames from several
// goroutines never interleave as long as callers serialize Write calls.
func writeFrame(w io.Writer, t frameType, p []byte) error {
	if len(p) > maxFrameSize {
		return fmt.Errorf("%w: %v frame of %d bytes exceeds %d", ErrProtocol, t, len(p), maxFrameSize)
	}
	bp := framePool.Get().(*[]byte)
	if cap(*bp) < frameHeaderSize+len(p) {
		*bp = make([]byte, frameHeaderSize+len(p))
	}
	frame := (*bp)[:frameHeaderSize+len(p)]
	copy(frame[frameHeaderSize:], p)
	err := writeFrameBuf(w, t, frame)
	// An io.Writer keeps no reference to what it was given, so the buffer is
	// free again (yamux copies it, or waits until it is written). One of a
	// rare frame bigger than any data frame is left to the collector rather
	// than kept.
	if cap(*bp) <= frameHeaderSize+dataChunk {
		framePool.Put(bp)
	}
	return err
}

// writeFrameBuf writes the frame whose payload is already in place after
// frameHeaderSize reserved bytes at the start of frame, which it fills in:
// one Write and no copy, for a sender that reads its data straight into a
// frame.
func writeFrameBuf(w io.Writer, t frameType, frame []byte) error {
	n := len(frame) - frameHeaderSize
	if n > maxFrameSize {
		return fmt.Errorf("%w: %v frame of %d bytes exceeds %d", ErrProtocol, t, n, maxFrameSize)
	}
	frame[0] = byte(t)
	binary.BigEndian.PutUint32(frame[1:frameHeaderSize], uint32(n))
	_, err := w.Write(frame)
	return err
}

// readFrame reads one frame. It reuses buf for the payload when it is big
// enough; the payload is only valid until the next call. A clean end of stream
// between frames is io.EOF; a stream cut inside a frame is io.ErrUnexpectedEOF.
func readFrame(r io.Reader, buf []byte) (frameType, []byte, error) {
	// The header goes through buf too: an array of its own would escape to
	// the heap, an allocation per frame.
	if cap(buf) < frameHeaderSize {
		buf = make([]byte, frameHeaderSize)
	}
	hdr := buf[:frameHeaderSize]
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, nil, err
	}
	t, n := frameType(hdr[0]), binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrameSize {
		return 0, nil, fmt.Errorf("%w: %v frame of %d bytes exceeds %d", ErrProtocol, t, n, maxFrameSize)
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return t, buf, nil
}

// windowPayload encodes a flow-control grant.
func windowPayload(n int) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	return b[:]
}

// parseWindow decodes a flow-control grant.
func parseWindow(p []byte) (int, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("%w: window frame of %d bytes, want 4", ErrProtocol, len(p))
	}
	n := binary.BigEndian.Uint32(p)
	if n == 0 || n > maxWindow {
		return 0, fmt.Errorf("%w: window grant of %d bytes", ErrProtocol, n)
	}
	return int(n), nil
}

// writeHeader writes v as one JSON line. encoding/json escapes newlines inside
// strings, so the only newline is the terminator.
func writeHeader(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode header: %w", err)
	}
	if len(b)+1 > maxHeaderSize {
		return fmt.Errorf("%w: header of %d bytes exceeds %d", ErrProtocol, len(b)+1, maxHeaderSize)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// readHeaderLine reads one header line without the newline. It reads no byte
// past the newline, so the frames that follow stay in r.
func readHeaderLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > maxHeaderSize {
			return nil, fmt.Errorf("%w: header line exceeds %d bytes", ErrProtocol, maxHeaderSize)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// readHeader reads one header line and decodes it into v. Unknown fields are
// allowed so that a newer peer can add fields without breaking an older one.
func readHeader(r *bufio.Reader, v any) error {
	line, err := readHeaderLine(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("%w: bad header: %v", ErrProtocol, err)
	}
	return nil
}

// decodeSessionInfo decodes a session frame. The id must look like one the
// agent makes, since callers put it in URLs and file names.
func decodeSessionInfo(p []byte) (SessionInfo, error) {
	var info SessionInfo
	if err := json.Unmarshal(p, &info); err != nil {
		return SessionInfo{}, fmt.Errorf("%w: bad session frame: %v", ErrProtocol, err)
	}
	if !validSessionID(info.ID) {
		return SessionInfo{}, fmt.Errorf("%w: bad session id %q", ErrProtocol, info.ID)
	}
	return info, nil
}

// validSessionID accepts what is safe in a URL path segment and a file name:
// 1 to maxSessionID characters of [0-9a-zA-Z_-].
func validSessionID(id string) bool {
	if id == "" || len(id) > maxSessionID {
		return false
	}
	for _, r := range id {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}
