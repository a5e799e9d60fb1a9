package cli

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// unsafeRune reports whether r must not reach a terminal as it is: a control
// character (C0 U+0000–U+001F, tab and newline included; DEL; C1 U+0080–U+009F),
// a bidirectional formatting character (U+061C, U+200E, U+200F, U+202A–U+202E,
// U+2066–U+2069) or a line or paragraph separator (U+2028, U+2029). Control
// characters start escape sequences that move the cursor, rewrite the screen or
// the window title, or answer back into the input; bidi characters reorder what
// the admin reads.
func unsafeRune(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r == 0x2028, r == 0x2029:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// sanitize returns s fit to print on a terminal: every character unsafeRune
// names is replaced by a visible escape (`\x1b` below U+00A0, `\u202e` above),
// and every byte that is not part of valid UTF-8 by its `\xff` form. A string
// without any comes back unchanged, so sanitize(sanitize(s)) == sanitize(s).
//
// Everything the CLI prints that the server, or a distro through it, supplied
// goes through sanitize: table cells, error messages, operation errors.
func sanitize(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0xa0 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// row writes one line of a tab-separated table (for text/tabwriter): each cell
// is formatted with fmt.Sprint and sanitized, so a cell can neither reach the
// terminal's escape sequences nor add a column or a line.
func row(w io.Writer, cells ...any) {
	var b strings.Builder
	for i, c := range cells {
		if i > 0 {
			b.WriteByte('\t')
		}
		b.WriteString(sanitize(fmt.Sprint(c)))
	}
	b.WriteByte('\n')
	io.WriteString(w, b.String())
}

// escapeJSON makes encoded JSON safe for a terminal without changing what it
// means: encoding/json already escapes C0 characters inside strings and
// replaces invalid UTF-8, but writes DEL, C1 and bidi characters as they are.
// Those can only occur inside strings, where `\uXXXX` stands for the same
// character. The layout's own newlines and spaces stay.
func escapeJSON(b []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			out.WriteString(`\ufffd`)
		case r >= 0x20 && unsafeRune(r):
			fmt.Fprintf(&out, `\u%04x`, r)
		default:
			out.Write(b[i : i+n])
		}
		i += n
	}
	return out.Bytes()
}
