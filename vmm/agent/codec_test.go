package agent

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func frameBytes(t frameType, n uint32, payload string) []byte {
	b := []byte{byte(t), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	return append(b, payload...)
}

func TestReadFrame(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		typ     frameType
		payload string
		err     error
	}{
		{"stdout", frameBytes(frameStdout, 5, "hello"), frameStdout, "hello", nil},
		{"empty payload", frameBytes(frameStdinEOF, 0, ""), frameStdinEOF, "", nil},
		{"trailing bytes stay", frameBytes(frameStdin, 2, "hiXX"), frameStdin, "hi", nil},
		{"clean end", nil, 0, "", io.EOF},
		{"cut header", []byte{0x11, 0, 0}, 0, "", io.ErrUnexpectedEOF},
		{"cut payload", frameBytes(frameStdout, 10, "abc"), 0, "", io.ErrUnexpectedEOF},
		{"max size header only", frameBytes(frameStdout, maxFrameSize, ""), 0, "", io.ErrUnexpectedEOF},
		{"too large", frameBytes(frameStdout, maxFrameSize+1, ""), 0, "", ErrProtocol},
		{"huge", frameBytes(frameStdout, 0xffffffff, ""), 0, "", ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, payload, err := readFrame(bytes.NewReader(tt.in), nil)
			if !errors.Is(err, tt.err) {
				t.Fatalf("readFrame(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if err != nil {
				return
			}
			if typ != tt.typ || string(payload) != tt.payload {
				t.Errorf("readFrame(%q) = %v %q, want %v %q", tt.in, typ, payload, tt.typ, tt.payload)
			}
		})
	}
}

func TestWriteFrameRoundTrip(t *testing.T) {
	tests := []struct {
		typ     frameType
		payload []byte
	}{
		{frameStdin, []byte("data")},
		{frameStdinEOF, nil},
		{frameExit, []byte(`{"code":3}`)},
		{frameStdout, bytes.Repeat([]byte{0xff}, maxFrameSize)},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := writeFrame(&buf, tt.typ, tt.payload); err != nil {
			t.Fatalf("writeFrame(%v) = %v", tt.typ, err)
		}
		typ, payload, err := readFrame(&buf, make([]byte, 16))
		if err != nil || typ != tt.typ || !bytes.Equal(payload, tt.payload) {
			t.Errorf("round trip of %v (%d bytes) = %v, %d bytes, %v", tt.typ, len(tt.payload), typ, len(payload), err)
		}
	}
	if err := writeFrame(io.Discard, frameStdout, make([]byte, maxFrameSize+1)); !errors.Is(err, ErrProtocol) {
		t.Errorf("writeFrame(too large) = %v, want ErrProtocol", err)
	}
}

func TestWriteFrameBuf(t *testing.T) {
	payload := []byte("straight from the terminal")
	var want bytes.Buffer
	writeFrame(&want, frameStdout, payload)
	frame := append(make([]byte, frameHeaderSize), payload...)
	var got bytes.Buffer
	if err := writeFrameBuf(&got, frameStdout, frame); err != nil || !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("writeFrameBuf = %q, %v, want %q as writeFrame writes it", got.Bytes(), err, want.Bytes())
	}
	if err := writeFrameBuf(io.Discard, frameStdout, make([]byte, frameHeaderSize+maxFrameSize+1)); !errors.Is(err, ErrProtocol) {
		t.Errorf("writeFrameBuf(too large) = %v, want ErrProtocol", err)
	}
}

// A data frame costs no allocation on either side: output flows at some
// thousands of frames a second.
func TestFrameAllocs(t *testing.T) {
	payload := make([]byte, dataChunk)
	if n := testing.AllocsPerRun(100, func() { writeFrame(io.Discard, frameStdout, payload) }); n != 0 {
		t.Errorf("writeFrame allocates %v times a frame, want 0", n)
	}
	var wire bytes.Buffer
	writeFrame(&wire, frameStdout, payload)
	r := bytes.NewReader(wire.Bytes())
	buf := make([]byte, dataChunk)
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(wire.Bytes())
		readFrame(r, buf)
	}); n != 0 {
		t.Errorf("readFrame allocates %v times a frame, want 0", n)
	}
}

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in   []byte
		want int
		ok   bool
	}{
		{windowPayload(1), 1, true},
		{windowPayload(initialWindow), initialWindow, true},
		{windowPayload(0), 0, false},
		{windowPayload(maxWindow + 1), 0, false},
		{[]byte{1, 2, 3}, 0, false},
		{nil, 0, false},
	}
	for _, tt := range tests {
		got, err := parseWindow(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseWindow(%v) = %d, %v, want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestReadHeader(t *testing.T) {
	long := `{"op":"exec","argv":["` + strings.Repeat("a", maxHeaderSize) + `"]}` + "\n"
	exact := `{"op":"` + strings.Repeat("b", maxHeaderSize-10) + `"}` + "\n"
	tests := []struct {
		name string
		in   string
		op   string
		argv []string
		err  error
	}{
		{"hello", `{"op":"hello"}` + "\n", "hello", nil, nil},
		{"exec", `{"op":"exec","argv":["ls","-l"],"tty":true}` + "\n", "exec", []string{"ls", "-l"}, nil},
		{"unknown fields ignored", `{"op":"hello","future":1}` + "\n", "hello", nil, nil},
		{"no newline", `{"op":"hello"}`, "", nil, io.ErrUnexpectedEOF},
		{"empty", "", "", nil, io.EOF},
		{"blank line", "\n", "", nil, ErrProtocol},
		{"not json", "hello\n", "", nil, ErrProtocol},
		{"too long", long, "", nil, ErrProtocol},
		{"at the limit", exact, strings.Repeat("b", maxHeaderSize-10), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req request
			err := readHeader(bufio.NewReader(strings.NewReader(tt.in)), &req)
			if !errors.Is(err, tt.err) {
				t.Fatalf("readHeader error = %v, want %v", err, tt.err)
			}
			if err == nil && (req.Op != tt.op || strings.Join(req.Argv, " ") != strings.Join(tt.argv, " ")) {
				t.Errorf("readHeader = %q %q, want %q %q", req.Op, req.Argv, tt.op, tt.argv)
			}
		})
	}
}

func TestReadHeaderLeavesFrames(t *testing.T) {
	var buf bytes.Buffer
	writeHeader(&buf, request{Op: opExec, ExecRequest: ExecRequest{Argv: []string{"a\nb"}}})
	writeFrame(&buf, frameStdin, []byte("x"))
	br := bufio.NewReader(&buf)
	var req request
	if err := readHeader(br, &req); err != nil || req.Argv[0] != "a\nb" {
		t.Fatalf("readHeader = %+v, %v", req, err)
	}
	typ, p, err := readFrame(br, nil)
	if err != nil || typ != frameStdin || string(p) != "x" {
		t.Errorf("frame after header = %v %q %v, want stdin \"x\"", typ, p, err)
	}
}

func TestWriteHeaderTooLarge(t *testing.T) {
	req := request{Op: opExec, ExecRequest: ExecRequest{Argv: []string{strings.Repeat("a", maxHeaderSize)}}}
	if err := writeHeader(io.Discard, req); !errors.Is(err, ErrProtocol) {
		t.Errorf("writeHeader(too large) = %v, want ErrProtocol", err)
	}
}

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want signalMsg
		ok   bool
	}{
		{"KILL", signalMsg{Name: "KILL"}, true},
		{"SIGTERM", signalMsg{Name: "TERM"}, true},
		{"int", signalMsg{Name: "INT"}, true},
		{"9", signalMsg{Number: 9}, true},
		{"0", signalMsg{}, false},
		{"65", signalMsg{}, false},
		{"NOPE", signalMsg{}, false},
		{"", signalMsg{}, false},
	}
	for _, tt := range tests {
		got, err := parseSignal(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSignal(%q) = %+v, %v, want %+v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(frameBytes(frameStdout, 5, "hello"))
	f.Add(frameBytes(frameExit, 10, `{"code":0}`))
	f.Add(frameBytes(frameWindowStdout, 4, "\x00\x01\x00\x00"))
	f.Add(frameBytes(frameStdout, maxFrameSize+1, ""))
	f.Add([]byte{0x11, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			typ, p, err := readFrame(r, nil)
			if err != nil {
				return
			}
			if len(p) > maxFrameSize {
				t.Fatalf("readFrame returned %d bytes, over the limit", len(p))
			}
			// What was read must write back the same.
			var buf bytes.Buffer
			if err := writeFrame(&buf, typ, p); err != nil {
				t.Fatalf("writeFrame of a read frame: %v", err)
			}
			typ2, p2, err := readFrame(&buf, nil)
			if err != nil || typ2 != typ || !bytes.Equal(p, p2) {
				t.Fatalf("round trip changed the frame")
			}
			switch typ {
			case frameWindowStdin, frameWindowStdout, frameWindowStderr:
				if n, err := parseWindow(p); err == nil && (n <= 0 || n > maxWindow) {
					t.Fatalf("parseWindow accepted %d", n)
				}
			}
		}
	})
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte(`{"op":"hello"}` + "\n"))
	f.Add([]byte(`{"op":"exec","argv":["sh","-c","echo hi"],"env":["A=b"],"tty":true,"cols":80,"rows":24}` + "\n"))
	f.Add([]byte(`{"ok":false,"error":{"code":"not_found","message":"x"}}` + "\n"))
	f.Add([]byte(`{"op":"open-session","argv":["sh"],"user":"alice","scrollback":1048576,"detach_timeout_ns":300000000000}` + "\n"))
	f.Add([]byte(`{"op":"attach-session","id":"0123456789abcdef"}` + "\n"))
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"op":` + strings.Repeat("[", 1000)))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		line, err := readHeaderLine(br)
		if err == nil && len(line) >= maxHeaderSize {
			t.Fatalf("readHeaderLine returned %d bytes, over the limit", len(line))
		}
		if err == nil && bytes.IndexByte(line, '\n') >= 0 {
			t.Fatalf("line holds a newline")
		}
		var req request
		if err := readHeader(bufio.NewReader(bytes.NewReader(in)), &req); err != nil {
			return
		}
		// A request that decoded must encode and decode to the same op.
		var buf bytes.Buffer
		if err := writeHeader(&buf, req); err != nil {
			return // re-encoding may grow past the limit (escapes)
		}
		var again request
		if err := readHeader(bufio.NewReader(&buf), &again); err != nil || again.Op != req.Op || len(again.Argv) != len(req.Argv) ||
			again.ID != req.ID || again.Scrollback != req.Scrollback || again.DetachTimeout != req.DetachTimeout {
			t.Fatalf("round trip: %+v -> %+v, %v", req, again, err)
		}
	})
}
