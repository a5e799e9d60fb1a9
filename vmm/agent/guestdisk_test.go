package agent

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzReadUnpackEnd: the agent's answer to unpack-tree is untrusted (the
// VM is the guest's): whatever it sends, the client neither panics nor
// passes on negative counts, unbounded warnings, or control characters.
func FuzzReadUnpackEnd(f *testing.F) {
	frame := func(t frameType, p []byte) []byte {
		var b bytes.Buffer
		writeFrame(&b, t, p)
		return b.Bytes()
	}
	ok, _ := json.Marshal(dataEnd{Unpacked: &UnpackResult{Files: 3, Bytes: 4096, Warnings: []string{"skipped \x1b[31mred\x1b[0m", "\u202eevil"}}})
	bad, _ := json.Marshal(dataEnd{Error: &wireError{Code: codeBadArchive, Message: "unsafe"}})
	f.Add(frame(frameDataEnd, ok))
	f.Add(frame(frameDataEnd, bad))
	f.Add(append(frame(frameData, []byte("x")), frame(frameDataEnd, []byte(`{"unpacked":{"files":-1,"bytes":-5}}`))...))
	f.Add(frame(frameDataEnd, []byte(`{}`)))
	f.Add([]byte{0x18, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := readUnpackEnd(bytes.NewReader(b))
		if err != nil {
			return
		}
		if res.Files < 0 || res.Bytes < 0 || res.SkippedDevices < 0 || len(res.Warnings) > maxUnpackWarnings {
			t.Fatalf("result %+v", res)
		}
		for _, w := range res.Warnings {
			if len(w) > maxWarningBytes || !utf8.ValidString(w) {
				t.Fatalf("warning %q", w)
			}
			if i := strings.IndexFunc(w, func(c rune) bool { return unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c) }); i >= 0 {
				t.Fatalf("warning %q has a control character", w)
			}
		}
	})
}
