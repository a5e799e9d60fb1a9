package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func intp(n int) *int { return &n }

func TestParseControl(t *testing.T) {
	tests := []struct {
		in      string
		want    Control
		wantErr bool
	}{
		{`{"type":"resize","cols":80,"rows":24}`, Control{Type: ControlResize, Cols: 80, Rows: 24}, false},
		{`{"type":"signal","name":"INT"}`, Control{Type: ControlSignal, Name: "INT"}, false},
		{`{"type":"eof"}`, Control{Type: ControlEOF}, false},
		{`{"type":"ack","bytes":0}`, Control{Type: ControlAck}, false},
		{`{"type":"ack","bytes":4096}`, Control{Type: ControlAck, Bytes: 4096}, false},
		{`{"type":"ack"}`, Control{Type: ControlAck}, false},
		// Unknown fields are ignored, as they always were.
		{`{"type":"resize","cols":1,"rows":2,"extra":true}`, Control{Type: ControlResize, Cols: 1, Rows: 2}, false},
		{`{"type":"ack","bytes":-1}`, Control{}, true},
		// Frames only the server sends.
		{`{"type":"exit"}`, Control{}, true},
		{`{"type":"started"}`, Control{}, true},
		{`{"type":"session","id":"x"}`, Control{}, true},
		{`{"type":"error"}`, Control{}, true},
		{`{"type":""}`, Control{}, true},
		{`{}`, Control{}, true},
		{`{"type":"RESIZE","cols":1}`, Control{}, true},
		{`{"type":"resize","cols":70000}`, Control{}, true},
		{`{"type":"resize","cols":-1}`, Control{}, true},
		{`not json`, Control{}, true},
		{``, Control{}, true},
		{`{"type":"eof","pad":"` + strings.Repeat("x", MaxControlFrame) + `"}`, Control{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 40)], func(t *testing.T) {
			got, err := ParseControl([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseControl(%.40q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseControl(%.40q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseControlLimit: a frame of exactly MaxControlFrame bytes is read, one
// byte more is refused before it is decoded.
func TestParseControlLimit(t *testing.T) {
	frame := func(n int) []byte {
		head, tail := `{"type":"eof","pad":"`, `"}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	if _, err := ParseControl(frame(MaxControlFrame)); err != nil {
		t.Errorf("ParseControl(%d bytes) = %v, want it accepted", MaxControlFrame, err)
	}
	if _, err := ParseControl(frame(MaxControlFrame + 1)); err == nil || !strings.Contains(err.Error(), "64 KiB") {
		t.Errorf("ParseControl(%d bytes) = %v, want over 64 KiB", MaxControlFrame+1, err)
	}
}

// TestControlWire: the frames the server sends encode exactly as they always
// have; the dashboard and scripts match on these bytes.
func TestControlWire(t *testing.T) {
	tests := []struct {
		c    Control
		want string
	}{
		{Control{Type: ControlStarted}, `{"type":"started"}`},
		{Control{Type: ControlSession, ID: "0123456789abcdef"}, `{"type":"session","id":"0123456789abcdef"}`},
		// The terminal's exit frame carries a code of 0; exec's leaves it out.
		{Control{Type: ControlExit, Code: intp(0)}, `{"type":"exit","code":0}`},
		{Control{Type: ControlExit}, `{"type":"exit"}`},
		{Control{Type: ControlExit, Code: intp(3), Signal: "KILL"}, `{"type":"exit","code":3,"signal":"KILL"}`},
		{Control{Type: ControlError, Error: &Error{Status: 404, Code: CodeNotFound, Message: "no distro"}},
			`{"type":"error","error":{"code":"not_found","message":"no distro"}}`},
		{Control{Type: ControlResize, Cols: 80, Rows: 24}, `{"type":"resize","cols":80,"rows":24}`},
		{Control{Type: ControlSignal, Name: "INT"}, `{"type":"signal","name":"INT"}`},
		{Control{Type: ControlAck, Bytes: 10}, `{"type":"ack","bytes":10}`},
		{Control{Type: ControlEOF}, `{"type":"eof"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.c)
		if err != nil || string(b) != tt.want {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tt.c, b, err, tt.want)
		}
	}
}

func TestExitCode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{{`{"type":"exit"}`, 0}, {`{"type":"exit","code":0}`, 0}, {`{"type":"exit","code":42}`, 42}} {
		var c Control
		if err := json.Unmarshal([]byte(tt.in), &c); err != nil {
			t.Fatal(err)
		}
		if got := c.ExitCode(); got != tt.want {
			t.Errorf("ExitCode of %s = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// FuzzParseControl: whatever a client sends, ParseControl accepts only the
// client's types within the limits, and what it accepts encodes again within
// them.
func FuzzParseControl(f *testing.F) {
	f.Add([]byte(`{"type":"resize","cols":80,"rows":24}`))
	f.Add([]byte(`{"type":"signal","name":"INT"}`))
	f.Add([]byte(`{"type":"ack","bytes":0}`))
	f.Add([]byte(`{"type":"eof"}`))
	f.Add([]byte(`{"type":"exit","code":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseControl(b)
		if err != nil {
			if !reflect.DeepEqual(c, Control{}) {
				t.Errorf("ParseControl(%q) failed (%v) but returned %+v", b, err, c)
			}
			return
		}
		switch c.Type {
		case ControlEOF, ControlResize, ControlSignal, ControlAck:
		default:
			t.Errorf("ParseControl(%q) accepted type %q", b, c.Type)
		}
		if len(b) > MaxControlFrame {
			t.Errorf("ParseControl accepted %d bytes", len(b))
		}
		if c.Bytes < 0 {
			t.Errorf("ParseControl(%q) accepted a negative ack", b)
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", c, err)
		}
		if c2, err := ParseControl(again); err != nil || !reflect.DeepEqual(c2.Type, c.Type) {
			t.Errorf("ParseControl(Marshal(%+v)) = %+v, %v", c, c2, err)
		}
	})
}

func TestErrorBody(t *testing.T) {
	var body ErrorBody
	if err := json.Unmarshal([]byte(`{"error":{"code":"busy","message":"distro \"d\" is busy"}}`), &body); err != nil {
		t.Fatal(err)
	}
	if body.Error.Code != CodeBusy || body.Error.Message != `distro "d" is busy` {
		t.Errorf("decoded %+v", body)
	}
	b, _ := json.Marshal(ErrorBody{Error: Error{Status: 409, Code: CodeBusy, Message: "m"}})
	if string(b) != `{"error":{"code":"busy","message":"m"}}` {
		t.Errorf("encoded %s: the status is no part of the body", b)
	}
	var err error = &Error{Status: 404, Code: CodeNotFound}
	var ae *Error
	if !errors.As(err, &ae) || err.Error() != "not_found (404 Not Found)" {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestOperationErr(t *testing.T) {
	op := Operation{Kind: KindClone, Distro: "d", Status: StatusFailure, Error: "disk full"}
	var oe *OperationError
	if err := op.Err(); !errors.As(err, &oe) || err.Error() != "clone d failed: disk full" {
		t.Errorf("Err() = %v", err)
	}
	for _, st := range []string{StatusRunning, StatusSuccess} {
		if err := (Operation{Status: st}).Err(); err != nil {
			t.Errorf("%s: Err() = %v, want nil", st, err)
		}
	}
	if (Operation{Status: StatusRunning}).Done() || !(Operation{Status: StatusSuccess}).Done() {
		t.Error("Done() is wrong")
	}
}

func TestExecResultBytes(t *testing.T) {
	r := ExecResult{Stdout: "aGk=", StdoutEncoding: EncodingBase64, Stderr: "héllo", StderrEncoding: EncodingUTF8}
	if b, err := r.StdoutBytes(); err != nil || string(b) != "hi" {
		t.Errorf("StdoutBytes = %q, %v", b, err)
	}
	if b, err := r.StderrBytes(); err != nil || string(b) != "héllo" {
		t.Errorf("StderrBytes = %q, %v", b, err)
	}
	if _, err := (ExecResult{Stdout: "!", StdoutEncoding: EncodingBase64}).StdoutBytes(); err == nil {
		t.Error("bad base64 decoded")
	}
	if _, err := (ExecResult{StdoutEncoding: "rot13"}).StdoutBytes(); err == nil {
		t.Error("unknown encoding decoded")
	}
}

func TestParseEvent(t *testing.T) {
	tests := []struct {
		name, data string
		check      func(Event) bool
	}{
		{"snapshot", `{"distros":[{"name":"d","state":"Running"}],"operations":[]}`,
			func(e Event) bool {
				return e.Snapshot != nil && len(e.Snapshot.Distros) == 1 && e.Snapshot.Distros[0].State == StateRunning
			}},
		{"distro", `{"name":"d","version":1}`, func(e Event) bool { return e.Distro != nil && e.Distro.Name == "d" }},
		{"distro-removed", `{"id":"i","name":"d"}`, func(e Event) bool { return e.Removed != nil && e.Removed.ID == "i" }},
		{"operation", `{"id":"o","status":"running","progress":{"done":1,"total":2}}`,
			func(e Event) bool { return e.Operation != nil && e.Operation.Progress.Total == 2 }},
		{"ports", `{"distro":"d","id":"i","ports":[{"proto":"tcp","port":80}]}`,
			func(e Event) bool { return e.Ports != nil && e.Ports.Ports[0].Port == 80 }},
	}
	for _, tt := range tests {
		e, err := ParseEvent(tt.name, []byte(tt.data))
		if err != nil || string(e.Type) != tt.name || !tt.check(e) {
			t.Errorf("ParseEvent(%s, %s) = %+v, %v", tt.name, tt.data, e, err)
		}
		if b, err := json.Marshal(e.Data()); err != nil || !json.Valid(b) {
			t.Errorf("Data() of %s does not encode: %v", tt.name, err)
		}
	}
	if _, err := ParseEvent("later", []byte(`{}`)); err == nil {
		t.Error("an unknown event parsed")
	}
	if _, err := ParseEvent("distro", []byte(`[`)); err == nil {
		t.Error("bad data parsed")
	}
}
