package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseMessage(t *testing.T) {
	tests := []struct {
		line string
		kind int
		id   string
	}{
		{`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`, kindGreeting, ""},
		{`{"return": {}, "id": "subsys-1"}`, kindReturn, "subsys-1"},
		{`{"return": {"status": "running", "running": true}}` + "\r\n", kindReturn, ""},
		{`{"id": 7, "return": {}}`, kindReturn, ""},
		{`{"error": {"class": "CommandNotFound", "desc": "nope"}, "id": "subsys-2"}`, kindError, "subsys-2"},
		{`{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "SHUTDOWN", "data": {"guest": true}}`, kindEvent, ""},
	}
	for _, tt := range tests {
		m, err := parseMessage([]byte(tt.line))
		if err != nil {
			t.Errorf("parseMessage(%s): %v", tt.line, err)
			continue
		}
		if m.kind != tt.kind || m.id != tt.id {
			t.Errorf("parseMessage(%s) = kind %d id %q, want %d %q", tt.line, m.kind, m.id, tt.kind, tt.id)
		}
	}
	for _, bad := range []string{``, `[]`, `null`, `{}`, `{"id": "x"}`, `{"return": {}, "error": {"class": "a"}}`, `{"return": `, `"return"`} {
		if m, err := parseMessage([]byte(bad)); err == nil {
			t.Errorf("parseMessage(%s) = %+v, want an error", bad, m)
		}
	}
}

// FuzzParseMessage checks that no line from QEMU panics the parser and that
// what it accepts is exactly one kind of message with what that kind needs.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"QMP": {"version": {}, "capabilities": []}}`,
		`{"return": {}, "id": "subsys-1"}`,
		`{"error": {"class": "GenericError", "desc": "x"}, "id": "subsys-9"}`,
		`{"event": "SHUTDOWN", "data": {"guest": false}, "timestamp": {"seconds": -1, "microseconds": 2000000}}`,
		`{"return": null}`, `{"event": null}`, `{"error": null, "return": 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := parseMessage(line)
		if err != nil {
			return
		}
		switch m.kind {
		case kindGreeting:
			if m.greet == nil {
				t.Fatal("greeting without its object")
			}
		case kindReturn:
			if m.ret == nil || m.err != nil {
				t.Fatalf("return %+v", m)
			}
		case kindError:
			if m.err == nil || m.ret != nil {
				t.Fatalf("error %+v", m)
			}
		case kindEvent:
			if !json.Valid(line) {
				t.Fatal("event from invalid JSON")
			}
		default:
			t.Fatalf("kind %d", m.kind)
		}
	})
}

// fakeQEMU serves the QMP handshake on one end of a pipe and then hands each
// command to answer, which writes the reply lines.
func fakeQEMU(t *testing.T, answer func(cmd map[string]any, w func(string))) net.Conn {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	t.Cleanup(func() { server.Close(); <-done })
	go func() {
		defer close(done)
		w := func(s string) { server.Write([]byte(s + "\n")) }
		w(`{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}`)
		sc := bufio.NewScanner(server)
		for sc.Scan() {
			var cmd map[string]any
			if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
				t.Errorf("fake QEMU: %v", err)
				return
			}
			if cmd["execute"] == "qmp_capabilities" {
				w(`{"return": {}, "id": "` + cmd["id"].(string) + `"}`)
				continue
			}
			answer(cmd, w)
		}
	}()
	return client
}

func TestQMPClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := fakeQEMU(t, func(cmd map[string]any, w func(string)) {
		id := cmd["id"].(string)
		switch cmd["execute"] {
		case "query-status":
			// An event and a stray reply come first; neither is the answer.
			w(`{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 0}}`)
			w(`{"return": {"status": "paused"}, "id": "someone-else"}`)
			w(`not json`)
			w(`{"return": {"status": "running", "running": true}, "id": "` + id + `"}`)
		case "hang":
			// no reply
		default:
			w(`{"error": {"class": "CommandNotFound", "desc": "The command ` + cmd["execute"].(string) + ` has not been found"}, "id": "` + id + `"}`)
		}
	})
	c, err := newQMPClient(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	var s Status
	if err := c.Execute(ctx, "query-status", nil, &s); err != nil {
		t.Fatal(err)
	}
	if !s.Running || s.Status != "running" {
		t.Errorf("status %+v", s)
	}
	if ev := <-c.Events(); ev.Event != "RESUME" || ev.Time.Unix() != 1 {
		t.Errorf("event %+v", ev)
	}
	var qe *QMPError
	if err := c.Execute(ctx, "bogus", map[string]any{"a": 1}, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("bogus: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := c.Execute(short, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: %v", err)
	}
	c.Close()
	if err := c.Execute(ctx, "query-status", nil, nil); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("after Close: %v", err)
	}
}

func TestQMPGreetingHonoursContext(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := newQMPClient(ctx, client); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("newQMPClient with a silent peer: %v", err)
	}
}
