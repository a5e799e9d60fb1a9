package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "nginx: worker", "nginx: worker"},
		{"empty", "", ""},
		{"unicode kept", "café ü 日本 🚀", "café ü 日本 🚀"},
		{"ESC clear screen", "x\x1b[2J\x1b[H", `x\x1b[2J\x1b[H`},
		{"OSC title with BEL", "\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},
		{"OSC 52 clipboard", "\x1b]52;c;cm0gLXJmIH4K\x1b\\", `\x1b]52;c;cm0gLXJmIH4K\x1b\`},
		{"tab and newline", "a\tb\nc\rd", `a\x09b\x0ac\x0dd`},
		{"NUL", "a\x00b", `a\x00b`},
		{"DEL", "a\x7fb", `a\x7fb`},
		{"C1 CSI as UTF-8", "a\u009b2Jb", `a\x9b2Jb`},
		{"C1 NEL", "a\u0085b", `a\x85b`},
		{"raw C1 byte is invalid UTF-8", "a\x9b2Jb", `a\x9b2Jb`},
		{"invalid UTF-8", "a\xff\xfeb", `a\xff\xfeb`},
		{"truncated UTF-8", "caf\xc3", `caf\xc3`},
		{"U+FFFD itself is fine", "a\ufffdb", "a\ufffdb"},
		{"NBSP is printable", "a\u00a0b", "a\u00a0b"},
		{"RLO", "evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"LRE PDF", "\u202aa\u202c", `\u202aa\u202c`},
		{"isolates", "\u2066\u2067\u2068\u2069", `\u2066\u2067\u2068\u2069`},
		{"marks", "\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"line separators", "a\u2028b\u2029", `a\u2028b\u2029`},
		{"neighbours of bidi kept", "\u2029\u202f\u2065\u206a", `\u2029` + "\u202f\u2065\u206a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sanitize(tt.in); got != tt.want {
				t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRow(t *testing.T) {
	var b bytes.Buffer
	row(&b, "tcp", "0.0.0.0", 8080, "nc\tEXTRA\nFAKE\tROW", "x\x1b[31m")
	want := "tcp\t0.0.0.0\t8080\t" + `nc\x09EXTRA\x0aFAKE\x09ROW` + "\t" + `x\x1b[31m` + "\n"
	if b.String() != want {
		t.Errorf("row = %q, want %q", b.String(), want)
	}
}

func TestEscapeJSON(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"plain", map[string]string{"process": "nginx"}, `{"process":"nginx"}`},
		{"C0 by the encoder", map[string]string{"p": "a\x1bb"}, `{"p":"a\u001bb"}`},
		{"DEL", map[string]string{"p": "a\x7fb"}, `{"p":"a\u007fb"}`},
		{"C1", map[string]string{"p": "a\u009bb"}, `{"p":"a\u009bb"}`},
		{"bidi", map[string]string{"p": "a\u202eb"}, `{"p":"a\u202eb"}`},
		{"unicode kept", map[string]string{"p": "café"}, `{"p":"café"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got := escapeJSON(raw)
			if string(got) != tt.want {
				t.Errorf("escapeJSON(%s) = %s, want %s", raw, got, tt.want)
			}
			var back, orig any
			json.Unmarshal(raw, &orig)
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("escaped JSON does not parse: %v", err)
			}
			if a, b := mustJSON(t, orig), mustJSON(t, back); a != b {
				t.Errorf("escaped JSON means %s, want %s", b, a)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkPrintable fails when s holds anything a terminal would act on.
func checkPrintable(t *testing.T, what, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("%s is not valid UTF-8: %q", what, s)
	}
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			t.Fatalf("%s holds control or bidi character %U: %q", what, r, s)
		}
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[2J", "\x1b]0;t\x07", "\u009b", "\x9b", "\xff", "\u202e", "\u2066x\u2069", "a\tb\n", "caf\xc3", `\x1b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := sanitize(s)
		checkPrintable(t, "sanitize output", out)
		if again := sanitize(out); again != out {
			t.Fatalf("sanitize is not idempotent: %q → %q → %q", s, out, again)
		}
		clean := utf8.ValidString(s)
		for _, r := range s {
			clean = clean && !unsafeRune(r)
		}
		if clean && out != s {
			t.Fatalf("sanitize changed a clean string: %q → %q", s, out)
		}
		if !clean && out == s {
			t.Fatalf("sanitize kept an unsafe string: %q", s)
		}
		// A cell never adds a column or a line to a table.
		var b bytes.Buffer
		row(&b, s, s)
		if strings.Count(b.String(), "\t") != 1 || strings.Count(b.String(), "\n") != 1 {
			t.Fatalf("row(%q) = %q: the cell split the table", s, b.String())
		}
		// JSON output stays the same JSON and prints safely.
		raw, _ := json.Marshal(map[string]string{"s": s})
		esc := escapeJSON(raw)
		checkPrintable(t, "escapeJSON output", string(esc))
		var a, z map[string]string
		json.Unmarshal(raw, &a)
		if err := json.Unmarshal(esc, &z); err != nil || a["s"] != z["s"] {
			t.Fatalf("escapeJSON changed the meaning: %s → %s (%v)", raw, esc, err)
		}
	})
}
