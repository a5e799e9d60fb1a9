package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// gnuFromHeader reads a numeric field as GNU tar 1.34's from_header does
// (src/list.c), octal and base-256 only: one leading NUL skipped, then
// blanks, then digits up to the first non-digit, which must be a NUL or a
// blank. It is the reference numericField must agree with.
func gnuFromHeader(f []byte) (int64, bool) {
	isSpace := func(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }
	i, lim := 0, len(f)
	if f[0] == 0 {
		i++
	}
	for ; ; i++ {
		if i == lim {
			return 0, false // "Blanks in header where numeric value expected"
		}
		if !isSpace(f[i]) {
			break
		}
	}
	var v int64
	switch c := f[i]; {
	case c >= '0' && c <= '7':
		for {
			v += int64(f[i] - '0')
			i++
			if i == lim || f[i] < '0' || f[i] > '7' {
				break
			}
			v <<= 3
		}
	case (c == 0x80 || c == 0xff) && i <= lim-2:
		v = int64(c&0x3f) - int64(c&0x40)
		for i++; i < lim; i++ {
			v = v<<8 + int64(f[i])
		}
	case c == '+' || c == '-':
		return 0, false // base-64 of tar 1.13.6 to 1.13.11, not accepted here
	}
	if i != lim && f[i] != 0 && !isSpace(f[i]) {
		return 0, false
	}
	return v, true
}

// pythonNti reads a numeric field as Python's tarfile.nti does.
func pythonNti(f []byte) (int64, bool) {
	if f[0] == 0o200 || f[0] == 0o377 {
		var n int64
		for _, c := range f[1:] {
			n = n<<8 + int64(c)
		}
		if f[0] == 0o377 {
			n -= 1 << (8 * (len(f) - 1))
		}
		return n, true
	}
	s := strings.TrimSpace(cString(f))
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 8, 64)
	return n, err == nil
}

// goSize reads f as the size field of a header with archive/tar.
func goSize(f []byte) (int64, bool) {
	b := raw{name: "x", size: string(f)}.block()
	h, err := tar.NewReader(bytes.NewReader(append(b, make([]byte, 2*blockSize)...))).Next()
	if err != nil {
		return 0, false
	}
	return h.Size, true
}

func TestNumericField(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"00000001000\x00", 512, true},
		{"00000001000 ", 512, true},
		{"     1000\x00\x00\x00", 512, true},
		{"1000 \x00\x00\x00\x00\x00\x00\x00", 512, true},
		{"1000\x00\x00\x00\x00\x00\x00\x00\x00", 512, true},
		{"777777777777", 0o777777777777, true}, // all digits, no terminator
		{"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 0, true},
		{"  \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 0, true},
		{"\x80\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00", 2 << 32, true},
		{"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe", -2, true},
		// What readers disagree on.
		{"\x00\x00\x00\x00\x00\x00\x00\x001000", 0, false},             // GNU 0, Go 512
		{"\x0000000001000", 0, false},                                  // GNU and Go 512, Python 0
		{"  \x00 1000\x00\x00\x00\x00", 0, false},                      // GNU 0, Go 512
		{"1000 7\x00\x00\x00\x00\x00\x00", 0, false},                   // GNU 512, Go an error
		{"\t1000\x00\x00\x00\x00\x00\x00\x00", 0, false},               // GNU 512, Go an error
		{"            ", 0, false},                                     // GNU refuses blanks
		{"1_000\x00\x00\x00\x00\x00\x00\x00", 0, false},                // Python 512
		{"+1000\x00\x00\x00\x00\x00\x00\x00", 0, false},                // GNU base-64
		{"\x81\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 0, false}, // Go base-256, GNU an error
		{"1000x\x00\x00\x00\x00\x00\x00\x00", 0, false},
		{"8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 0, false},
	} {
		got, ok := numericField([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("numericField(%q) = %d, %v, want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzNumericField checks numericField against GNU tar's, Python's and
// archive/tar's readings of a size field: whatever it accepts, all three
// must read as the same number.
//
//	go test -run ^$ -fuzz FuzzNumericField -fuzztime 60s ./vmm/archive/
func FuzzNumericField(f *testing.F) {
	for _, s := range []string{"00000001000\x00", "\x00\x00\x00\x00\x00\x00\x00\x001000", "  1 \x00 ", "\x80\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe", "\x00 1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		field := make([]byte, 12)
		copy(field, b)
		v, ok := numericField(field)
		if !ok {
			return
		}
		gnu, gok := gnuFromHeader(field)
		py, pok := pythonNti(field)
		if !gok || !pok || gnu != v || py != v {
			t.Errorf("numericField(%q) = %d; GNU tar reads %d, %v; Python %d, %v", field, v, gnu, gok, py, pok)
		}
		if v >= 0 {
			if g, gok := goSize(field); !gok || g != v {
				t.Errorf("numericField(%q) = %d; archive/tar reads %d, %v", field, v, g, gok)
			}
		}
	})
}

func TestCheckHeader(t *testing.T) {
	star := raw{name: "f", magic: "ustar\x0000"}.block()
	copy(star[fieldPrefix.off:], strings.Repeat("p", 131))
	copy(star[fieldTrailer.off:], "tar\x00")
	noVersion := raw{name: "f", magic: "ustar\x00xx"}.block()
	copy(noVersion[fieldPrefix.off:], "dir")
	fix := func(b []byte) []byte {
		copy(b[148:156], "        ")
		sum, _ := checksums(b)
		copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
		return b
	}
	for _, tt := range []struct {
		name string
		b    []byte
		why  string // part of the reason; "" for a good header
	}{
		{"plain", raw{name: "f"}.block(), ""},
		{"gnu magic", raw{name: "f", magic: "ustar  \x00"}.block(), ""},
		{"v7", raw{name: "f", magic: "\x00\x00\x00\x00\x00\x00\x00\x00"}.block(), ""},
		{"device numbers of a file are not read", raw{name: "f", devmajor: "\x00\x001\x00\x00\x00\x00\x00"}.block(), ""},
		{"device numbers of a device are", raw{name: "d", typ: tar.TypeChar, devmajor: "\x00\x001\x00\x00\x00\x00\x00"}.block(), "devmajor"},
		{"garbage device numbers", raw{name: "f", devmajor: "zz"}.block(), "devmajor"},
		{"size", raw{name: "f", size: "\x00\x00\x00\x00\x00\x00\x00\x001000"}.block(), "size"},
		{"negative size", raw{name: "f", size: "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe"}.block(), "negative"},
		{"negative mtime is fine", raw{name: "f", mtime: "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe"}.block(), ""},
		{"mode", raw{name: "f", mode: "\x00\x004755\x00\x00"}.block(), "mode"},
		{"gid", raw{name: "f", gid: "1 2\x00\x00\x00\x00\x00"}.block(), "gid"},
		{"star prefix without NUL", fix(star), "star"},
		{"prefix without version", fix(noVersion), "version"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if why := checkChecksum(tt.b); why != "" {
				t.Fatalf("checkChecksum = %q", why)
			}
			why := checkHeader(tt.b)
			if (tt.why == "") != (why == "") || !strings.Contains(why, tt.why) {
				t.Errorf("checkHeader = %q, want %q", why, tt.why)
			}
		})
	}
	bad := raw{name: "f"}.block()
	bad[0] = 'g'
	if why := checkChecksum(bad); !strings.Contains(why, "checksum") {
		t.Errorf("checkChecksum(damaged) = %q, want a checksum mismatch", why)
	}
	nuls := raw{name: "f", chksumRepr: "\x00\x00%05o\x00"}.block()
	if why := checkChecksum(nuls); why == "" {
		t.Errorf("checkChecksum(leading NULs) = %q, want a refusal: GNU tar skips such a header", why)
	}
}

func TestCheckEntry(t *testing.T) {
	for _, tt := range []struct {
		name string
		hdr  tar.Header
		why  string
	}{
		{"plain", tar.Header{Name: "f"}, ""},
		{"PAX size with a plus", tar.Header{Name: "f", PAXRecords: map[string]string{"size": "+5"}}, "decimal"},
		{"PAX uid with a blank", tar.Header{Name: "f", PAXRecords: map[string]string{"uid": " 5"}}, "decimal"},
		{"SCHILY device numbers differ", tar.Header{Name: "d", Devmajor: 1, PAXRecords: map[string]string{"SCHILY.devmajor": "8"}}, "devmajor"},
		{"SCHILY device numbers agree", tar.Header{Name: "d", Devmajor: 1, Devminor: 3, PAXRecords: map[string]string{"SCHILY.devmajor": "1", "SCHILY.devminor": "3"}}, ""},
		{"path and sparse name", tar.Header{Name: "a", PAXRecords: map[string]string{"path": "a", "GNU.sparse.name": "b"}}, "names"},
		{"path and same sparse name", tar.Header{Name: "a", PAXRecords: map[string]string{"path": "a", "GNU.sparse.name": "a"}}, ""},
	} {
		if why := checkEntry(&tt.hdr, nil, nil); (tt.why == "") != (why == "") || !strings.Contains(why, tt.why) {
			t.Errorf("%s: checkEntry = %q, want %q", tt.name, why, tt.why)
		}
	}
}

// listTar reads data with tarReader, as Extract does: names, sizes and the
// data of entries that are not sparse.
func listTar(data []byte) ([]string, error) {
	var out []string
	tr := newTarReader(bytes.NewReader(data), func(string) {})
	for {
		e, err := tr.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		line := fmt.Sprintf("%q %c %d", e.Name, e.Typeflag, e.Size)
		if e.sparse == nil {
			b, err := io.ReadAll(tr)
			if err != nil {
				return out, err
			}
			line += fmt.Sprintf(" %q", b)
		}
		out = append(out, line)
	}
}

// listGo is listTar with archive/tar alone.
func listGo(data []byte) ([]string, error) {
	var out []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		line := fmt.Sprintf("%q %c %d", h.Name, h.Typeflag, h.Size)
		if !isSparse(h) {
			b, err := io.ReadAll(tr)
			if err != nil {
				return out, err
			}
			line += fmt.Sprintf(" %q", b)
		}
		out = append(out, line)
	}
}

func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// FuzzTarReader checks tarReader's framing against archive/tar's: whatever
// archive both read to the end without an error, they must read alike,
// entry for entry and byte for byte. (They differ by design where
// archive/tar fails: a lone zero block, which ends an archive for GNU tar
// and tarReader.)
//
//	go test -run ^$ -fuzz FuzzTarReader -fuzztime 60s ./vmm/archive/
func FuzzTarReader(f *testing.F) {
	for _, c := range differentialCases() {
		f.Add(c.data)
	}
	for _, c := range hostileCases() {
		f.Add(c.tar(f, &sandbox{}))
	}
	f.Add(sparseOld("s", 2048, []fragment{{0, 512}, {1536, 3}}, strings.Repeat("a", 512)+"bcd", nil))
	f.Add(blocks(pax(tar.TypeXHeader, "GNU.sparse.major", "1", "GNU.sparse.minor", "0", "GNU.sparse.name", "s", "GNU.sparse.realsize", "100", "size", "514"),
		raw{name: "x", size: oct(514, 12)}, "1\n0\n2\n"+strings.Repeat("\x00", 506)+"ab", zeroBlocks))
	f.Fuzz(func(t *testing.T, data []byte) {
		mine, err := listTar(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("tarReader: %v, want ErrCorrupt (or a truncated entry)", err)
			}
			return
		}
		theirs, gerr := listGo(data)
		if gerr != nil {
			return
		}
		if strings.Join(mine, "\n") != strings.Join(theirs, "\n") {
			t.Errorf("tarReader reads\n%s\narchive/tar reads\n%s", strings.Join(mine, "\n"), strings.Join(theirs, "\n"))
		}
	})
}
