package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// sampleTarball is a small tarball, and with random > 0 a file of that many
// incompressible bytes, so the compressed forms span many chunks and blocks.
// With random == 0 it is the tarball the bzip2 fixtures below hold.
func sampleTarball(t testing.TB, random int) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1700000000, 0)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, ModTime: mt, Format: tar.FormatUSTAR})
	files := []struct{ name, body string }{{"etc/hostname", "subsys\n"}, {"etc/motd", strings.Repeat("welcome to subsys\n", 100)}}
	if random > 0 {
		b := make([]byte, random)
		rand.NewChaCha8([32]byte{1}).Read(b)
		files = append(files, struct{ name, body string }{"bin/blob", string(b)})
	}
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: mt, Format: tar.FormatUSTAR})
		tw.Write([]byte(f.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bzip2 fixtures, made with bzip2 -9 from sampleTarball(t, 0): Go has no
// bzip2 encoder. The second is the tarball's first 1024 bytes and the rest
// as two concatenated streams, as pbzip2 writes.
var (
	bzip2Sample      = mustBase64("QlpoOTFBWSZTWS9pYxkAAe9bkMmQQAD/hAREfkeeoAQAAUgwANmgwyNNNMjCZGCaAwRqT0TJoaGgNAAARSQCnptU9QaPQI8Ux6pc6aYTrLWh6QxeKFec/1ufYwkNrOPeHBQhXVEGTqCDmCD1bH4JyfmBC5yZAhphBQgEAiWgRuIjYYSDrN4fGRiE5LCw5iw1TEtLlY11WsIa7O6IMOwIMbog/wINPNNugIPfsCDVgiD2BB842tEQZt+P2CDREHZybJVggwiDR8KA3VIg8RP8XckU4UJAvaWMZA==")
	bzip2SampleTwice = mustBase64("QlpoOTFBWSZTWTrn+oAAAFXbkEmAQAD3hAQEakOeAAQAIAB0EqZMoZANADQSk9UekZAAGgibWK5xwCqfZWXxQOTxRaBAYgbiMMkMzEhQIa0YoIQog8xBSOcciSk3HL7LC543UYVxCHXod1OO28UqfVPhKmB+LuSKcKEgdc/1AEJaaDkxQVkmU1kvc7NiAAKW25DIEEAA/4QAQH4GnqAEAAFIMAC1gaJo1GhoB6gNACSUPUAAAAAKVUnpDRtIZMjR6ajyPg0Pw7JnEirZ6mJE6QyN0IFBuCBaggFtCR3GCWLgCZGMBgqq9pPe19DQhTFyIXMyBBbMiLZ2IsyLTmRdCLLyIvoi88/+Rb9fwi0kWWOO0iwkWn9QtcJF8juLuSKcKEgXudmxAA==")
)

func mustBase64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdOf(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

func xzOf(t testing.TB, b []byte, cfg xz.WriterConfig) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := cfg.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// xzBlock is one block for buildXz: its data, stored in uncompressed LZMA2
// chunks, and the dictionary size code its header claims.
type xzBlock struct {
	data     []byte
	dictCode byte
	sizes    bool // state the compressed and uncompressed sizes in the header
}

// buildXz writes an xz stream by hand, from the spec and independently of
// the code under test, so tests can ask for any dictionary in any block.
// check is 0 (none) or 1 (CRC32).
func buildXz(check byte, blocks ...xzBlock) []byte {
	varint := func(b []byte, x uint64) []byte {
		for x >= 0x80 {
			b = append(b, byte(x)|0x80)
			x >>= 7
		}
		return append(b, byte(x))
	}
	le32 := func(b []byte, x uint32) []byte { return binary.LittleEndian.AppendUint32(b, x) }
	out := append([]byte{}, magicXz...)
	flags := []byte{0, check}
	out = le32(append(out, flags...), crc32.ChecksumIEEE(flags))
	var index []byte
	for _, blk := range blocks {
		var lz []byte
		for i, d := 0, blk.data; len(d) > 0; i++ {
			n := min(len(d), 1<<16)
			ctl := byte(2)
			if i == 0 {
				ctl = 1 // dictionary reset, required first
			}
			lz = append(lz, ctl, byte((n-1)>>8), byte(n-1))
			lz = append(lz, d[:n]...)
			d = d[n:]
		}
		lz = append(lz, 0)
		hdr := []byte{0, 0}
		if blk.sizes {
			hdr[1] = 0xc0
			hdr = varint(hdr, uint64(len(lz)))
			hdr = varint(hdr, uint64(len(blk.data)))
		}
		hdr = append(hdr, xzFilterLZMA2, 1, blk.dictCode)
		for (len(hdr)+4)%4 != 0 {
			hdr = append(hdr, 0)
		}
		hdr[0] = byte((len(hdr)+4)/4 - 1)
		hdr = le32(hdr, crc32.ChecksumIEEE(hdr))
		out = append(append(out, hdr...), lz...)
		// The index counts the header, the LZMA2 data and the check, not
		// the block padding.
		unpadded := len(hdr) + len(lz)
		for len(lz)%4 != 0 {
			lz = append(lz, 0)
			out = append(out, 0)
		}
		if check == 1 {
			out = le32(out, crc32.ChecksumIEEE(blk.data))
			unpadded += 4
		}
		index = varint(index, uint64(unpadded))
		index = varint(index, uint64(len(blk.data)))
	}
	idx := varint([]byte{0}, uint64(len(blocks)))
	idx = append(idx, index...)
	for len(idx)%4 != 0 {
		idx = append(idx, 0)
	}
	idx = le32(idx, crc32.ChecksumIEEE(idx))
	out = append(out, idx...)
	foot := le32(nil, uint32(len(idx)/4-1))
	foot = append(foot, flags...)
	out = le32(out, crc32.ChecksumIEEE(foot))
	out = append(out, foot...)
	return append(out, 'Y', 'Z')
}

// openAll opens data with openTar and reads all of it, as Extract does.
func openAll(data []byte) ([]byte, []string, error) {
	d, err := openTar(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	b, err := io.ReadAll(d)
	return b, d.Warnings(), err
}

func TestSniff(t *testing.T) {
	tb := sampleTarball(t, 0)
	pad := func(b []byte, n int) []byte { return append(append([]byte{}, b...), make([]byte, n)...) }
	for _, c := range []struct {
		name string
		head []byte
		kind string // "" for an error
		msg  string // in the error
	}{
		{"empty", nil, "", "empty"},
		{"tar", tb[:blockSize], "tar", ""},
		{"empty tar", make([]byte, blockSize), "tar", ""},
		{"gzip", []byte{0x1f, 0x8b, 8, 0}, "gzip", ""},
		{"zstd", magicZstd, "zstd", ""},
		{"zstd skippable", []byte{0x5e, 0x2a, 0x4d, 0x18, 0, 0, 0, 0}, "zstd", ""},
		{"xz", magicXz, "xz", ""},
		{"bzip2", []byte("BZh91AY&SY"), "bzip2", ""},
		{"BZh without a level", pad([]byte("BZhello"), 600), "", "not a tar archive"},
		{"compress", pad([]byte{0x1f, 0x9d, 0x90}, 238), "", "compress (.Z) archives are not supported (use tar, tar.gz, tar.bz2, tar.xz or tar.zst)"},
		{"lzip", pad([]byte("LZIP\x01"), 236), "", "lzip-compressed archives are not supported"},
		{"lzma", pad([]byte{0x5d, 0, 0, 0x80, 0, 0xff, 0xff}, 234), "", "lzma-compressed archives are not supported"},
		{"lzop", pad([]byte{0x89, 'L', 'Z', 'O', 0, '\r', '\n', 0x1a, '\n'}, 232), "", "lzop-compressed archives are not supported"},
		{"lz4", pad([]byte{0x04, 0x22, 0x4d, 0x18, 0x64}, 236), "", "lz4-compressed archives are not supported (use tar, tar.gz, tar.bz2, tar.xz or tar.zst)"},
		{"lz4 legacy", pad([]byte{0x02, 0x21, 0x4c, 0x18}, 236), "", "lz4-compressed archives are not supported"},
		{"lz4 long", pad([]byte{0x04, 0x22, 0x4d, 0x18, 0x64}, 4000)[:blockSize], "", "lz4-compressed"},
		{"zip", []byte("PK\x03\x04"), "", "zip archives are not supported"},
		{"7z", []byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c, 0, 4}, "", "7-Zip archives"},
		{"rar", []byte("Rar!\x1a\x07\x01\x00"), "", "RAR archives"},
		{"squashfs", pad([]byte("hsqs"), 600)[:blockSize], "", "squashfs images"},
		{"qcow2", pad([]byte("QFI\xfb\x00\x00\x00\x03"), 600)[:blockSize], "", "qcow2 disk images"},
		{"vhdx", pad([]byte("vhdxfile"), 600)[:blockSize], "", "VHDX disk images"},
		{"short text", []byte("hello\n"), "", "6 bytes is shorter than one tar header"},
		{"text", []byte(strings.Repeat("not an archive\n", 40))[:blockSize], "", "not a tar archive, nor a gzip, bzip2, xz or zstd compressed one"},
		{"tar whose first name looks like lzma", func() []byte {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "]", Mode: 0o644})
			tw.Close()
			return buf.Bytes()[:blockSize]
		}(), "tar", ""},
	} {
		kind, err := sniff(c.head)
		if kind != c.kind {
			t.Errorf("%s: sniff = %q, %v; want %q", c.name, kind, err, c.kind)
			continue
		}
		switch {
		case c.kind != "" && err != nil:
			t.Errorf("%s: sniff = %q, %v; want no error", c.name, kind, err)
		case c.kind == "" && !errors.Is(err, ErrFormat):
			t.Errorf("%s: sniff = %v, want ErrFormat", c.name, err)
		case c.kind == "" && !strings.Contains(err.Error(), c.msg):
			t.Errorf("%s: sniff = %q, want it to say %q", c.name, err, c.msg)
		}
	}
}

// TestOpenTarUnsupported: a short file in a format we do not read is named,
// never called "not a tar archive (241 bytes)".
func TestOpenTarUnsupported(t *testing.T) {
	for _, u := range unsupported {
		data := append(append([]byte{}, u.magic...), bytes.Repeat([]byte{0x5a}, 241-len(u.magic))...)
		_, _, err := openAll(data)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), u.what+" are not supported") {
			t.Errorf("openTar(%s) = %v, want ErrFormat naming %q", u.what, err, u.what)
		}
	}
}

func TestOpenTarFormats(t *testing.T) {
	small := sampleTarball(t, 0)
	big := sampleTarball(t, 100<<10)
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	half := len(big) / 2
	// ulikunitz/xz compresses slowly, under -race very: encode what
	// several cases share once.
	xzFirst, xzSecond := xzOf(t, big[:half], xz.WriterConfig{}), xzOf(t, big[half:], xz.WriterConfig{})
	for _, c := range []struct {
		name string
		data []byte
		want []byte
		kind string
	}{
		{"tar", big, big, "tar"},
		{"gzip", gzipOf(t, big), big, "gzip"},
		{"gzip members", cat(gzipOf(t, big[:half]), gzipOf(t, big[half:])), big, "gzip"},
		{"gzip with an empty member", cat(gzipOf(t, big), gzipOf(t, nil)), big, "gzip"},
		{"zstd", zstdOf(t, big), big, "zstd"},
		{"zstd frames", cat(zstdOf(t, big[:half]), zstdOf(t, big[half:])), big, "zstd"},
		{"bzip2", bzip2Sample, small, "bzip2"},
		{"bzip2 streams", bzip2SampleTwice, small, "bzip2"},
		{"xz", xzOf(t, big, xz.WriterConfig{}), big, "xz"},
		{"xz crc32", xzOf(t, small, xz.WriterConfig{CheckSum: xz.CRC32}), small, "xz"},
		{"xz sha256", xzOf(t, small, xz.WriterConfig{CheckSum: xz.SHA256}), small, "xz"},
		{"xz no check", xzOf(t, small, xz.WriterConfig{NoCheckSum: true}), small, "xz"},
		{"xz blocks", xzOf(t, big, xz.WriterConfig{BlockSize: 32 << 10}), big, "xz"},
		{"xz 256 MiB dictionary", buildXz(1, xzBlock{data: small, dictCode: 32}), small, "xz"},
		{"xz streams", cat(xzFirst, xzSecond), big, "xz"},
		{"xz streams with padding", cat(xzFirst, make([]byte, 8), xzSecond), big, "xz"},
		{"xz by hand", buildXz(1, xzBlock{data: big[:half], dictCode: 20}, xzBlock{data: big[half:], dictCode: 0, sizes: true}), big, "xz"},
		{"xz by hand, no check", buildXz(0, xzBlock{data: big, dictCode: 30}), big, "xz"},
	} {
		d, err := openTar(bytes.NewReader(c.data))
		if err != nil {
			t.Errorf("%s: openTar = %v", c.name, err)
			continue
		}
		got, err := io.ReadAll(d)
		d.Close()
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("%s: read %d bytes, %v; want %d bytes, nil", c.name, len(got), err, len(c.want))
		}
		if d.kind != c.kind {
			t.Errorf("%s: kind = %q, want %q", c.name, d.kind, c.kind)
		}
		if w := d.Warnings(); len(w) > 0 {
			t.Errorf("%s: warnings %q, want none", c.name, w)
		}
	}
}

// TestOpenTarTrailing: data after a complete compressed stream is dropped,
// zeros silently and anything else with a warning, as GNU tar does for gzip.
func TestOpenTarTrailing(t *testing.T) {
	tb := sampleTarball(t, 100<<10)
	small := sampleTarball(t, 0)
	xzTb := xzOf(t, tb, xz.WriterConfig{})
	garbage := []byte("garbage appended by a careless upload\n")
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, c := range []struct {
		name string
		data []byte
		want []byte
		warn string // "" for none
	}{
		{"gzip garbage", cat(gzipOf(t, tb), garbage), tb, "ignored data after the end of the gzip stream"},
		{"gzip one byte", cat(gzipOf(t, tb), []byte{0x1f}), tb, "ignored data after the end of the gzip stream"},
		{"gzip members then garbage", cat(gzipOf(t, tb[:1000]), gzipOf(t, tb[1000:]), garbage), tb, "ignored data after the end of the gzip stream"},
		{"gzip zeros", cat(gzipOf(t, tb), make([]byte, 10000)), tb, ""},
		{"gzip odd zeros", cat(gzipOf(t, tb), make([]byte, 3)), tb, ""},
		{"bzip2 garbage", cat(bzip2Sample, garbage), small, "ignored data after the end of the bzip2 stream"},
		{"bzip2 zeros", cat(bzip2Sample, make([]byte, 512)), small, ""},
		{"xz garbage", cat(xzTb, garbage), tb, "ignored data after the end of the xz stream"},
		{"xz zeros", cat(xzTb, make([]byte, 512)), tb, ""},
		{"xz odd zeros", cat(xzTb, make([]byte, 7)), tb, ""},
		{"xz padding then garbage", cat(xzTb, make([]byte, 4), garbage), tb, "ignored data after the end of the xz stream"},
		{"zstd garbage", cat(zstdOf(t, tb), garbage), tb, "ignored data after the end of the zstd stream"},
		{"zstd zeros", cat(zstdOf(t, tb), make([]byte, 512)), tb, ""},
		{"zstd zeros then garbage", cat(zstdOf(t, tb), make([]byte, 4), garbage), tb, "ignored data after the end of the zstd stream"},
		{"zstd frames then garbage", cat(zstdOf(t, tb[:1000]), zstdOf(t, tb[1000:]), garbage), tb, "ignored data after the end of the zstd stream"},
		{"bzip2 zeros then garbage", cat(bzip2Sample, make([]byte, 2), garbage), small, "ignored data after the end of the bzip2 stream"},
	} {
		got, warns, err := openAll(c.data)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("%s: read %d bytes, %v; want %d bytes, nil", c.name, len(got), err, len(c.want))
			continue
		}
		want := []string{}
		if c.warn != "" {
			want = []string{c.warn}
		}
		if strings.Join(warns, "|") != strings.Join(want, "|") {
			t.Errorf("%s: warnings %q, want %q", c.name, warns, want)
		}
	}
}

// TestOpenTarDamage: damage is ErrCorrupt, said once, in words: no "gzip:
// gzip:", no Go package names.
func TestOpenTarDamage(t *testing.T) {
	tb := sampleTarball(t, 100<<10)
	damage := func(b []byte, at int) []byte {
		b = bytes.Clone(b)
		for i := at; i < at+8 && i < len(b); i++ {
			b[i] ^= 0x5a
		}
		return b
	}
	gz, zs, x := gzipOf(t, tb), zstdOf(t, tb), xzOf(t, tb, xz.WriterConfig{})
	for _, c := range []struct {
		name, data, kind string
		want             error
	}{
		{"gzip middle", string(damage(gz, len(gz)/2)), "gzip", ErrCorrupt},
		{"gzip checksum", string(damage(gz, len(gz)-8)), "gzip", ErrCorrupt},
		{"gzip truncated", string(gz[:len(gz)/2]), "gzip", ErrCorrupt},
		{"gzip header only", string(gz[:5]), "gzip", ErrCorrupt},
		{"gzip bad second member", string(gz) + "\x1f\x8b\x09garbage", "gzip", ErrCorrupt},
		{"zstd middle", string(damage(zs, len(zs)/2)), "zstd", ErrCorrupt},
		{"zstd truncated", string(zs[:len(zs)-10]), "zstd", ErrCorrupt},
		{"xz middle", string(damage(x, len(x)/2)), "xz", ErrCorrupt},
		{"xz block header", string(damage(x, 14)), "xz", ErrCorrupt},
		{"xz truncated", string(x[:len(x)-20]), "xz", ErrCorrupt},
		{"xz truncated in data", string(x[:len(x)/2]), "xz", ErrCorrupt},
		{"bzip2 middle", string(damage(bzip2Sample, len(bzip2Sample)/2)), "bzip2", ErrCorrupt},
		{"bzip2 truncated", string(bzip2Sample[:len(bzip2Sample)-10]), "bzip2", ErrCorrupt},
		{"bzip2 no symbols", "BZh91AY&SY" + strings.Repeat("\x00", 600), "bzip2", ErrCorrupt},
		{"gzip of text", string(gzipOf(t, []byte(strings.Repeat("hello\n", 1000)))), "gzip", ErrFormat},
		{"empty gzip", string(gzipOf(t, nil)), "gzip", ErrFormat},
	} {
		_, _, err := openAll([]byte(c.data))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
			continue
		}
		msg := err.Error()
		for _, bad := range []string{"gzip: gzip", "xz: xz", "flate:", "lzma:", "xz: ", "gzip: ", "bzip2 data invalid", "invalid input:", "unexpected EOF"} {
			if strings.Contains(msg, bad) {
				t.Errorf("%s: err = %q, which says %q", c.name, msg, bad)
			}
		}
		if !strings.Contains(msg, c.kind) {
			t.Errorf("%s: err = %q, want it to name %s", c.name, msg, c.kind)
		}
		if n := strings.Count(msg, ErrCorrupt.Error()) + strings.Count(msg, ErrFormat.Error()); n != 1 {
			t.Errorf("%s: err = %q, classified %d times", c.name, msg, n)
		}
	}
}

// allocDuring returns the bytes allocated while f runs. Tests using it must
// not run in parallel.
func allocDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocBudget is what opening and failing an archive may allocate: openTar's
// read buffers (about 5 MiB) with room to spare, and far below maxWindow.
const allocBudget = 32 << 20

// TestXzDictionaryBomb: an xz file of a few hundred bytes whose block header
// asks for a 4 GiB dictionary is refused as ErrFormat before the decoder
// allocates the dictionary, in any block of any stream.
func TestXzDictionaryBomb(t *testing.T) {
	small := sampleTarball(t, 0)
	big := sampleTarball(t, 100<<10)
	for _, c := range []struct {
		name string
		data []byte
		dict string
	}{
		{"4 GiB", buildXz(1, xzBlock{data: small, dictCode: 40}), "4.0 GiB"},
		{"1 GiB, sizes in header", buildXz(1, xzBlock{data: small, dictCode: 36, sizes: true}), "1 GiB"},
		{"384 MiB", buildXz(0, xzBlock{data: small, dictCode: 33}), "384 MiB"},
		{"second block", buildXz(1, xzBlock{data: big[:50<<10], dictCode: 18}, xzBlock{data: big[50<<10:], dictCode: 40}), "4.0 GiB"},
		{"second stream", append(xzOf(t, big[:50<<10], xz.WriterConfig{}), buildXz(1, xzBlock{data: big[50<<10:], dictCode: 38})...), "2 GiB"},
		{"library's own writer, patched", patchXzDict(t, xzOf(t, small, xz.WriterConfig{}), 40), "4.0 GiB"},
	} {
		var err error
		alloc := allocDuring(func() { _, _, err = openAll(c.data) })
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "xz data needs a "+c.dict+" dictionary, over the 256 MiB limit") {
			t.Errorf("%s (%d bytes): err = %v, want ErrFormat about a %s dictionary", c.name, len(c.data), err, c.dict)
		}
		if alloc > allocBudget {
			t.Errorf("%s: allocated %d MiB, want under %d MiB", c.name, alloc>>20, allocBudget>>20)
		}
	}
	if n := len(buildXz(1, xzBlock{data: make([]byte, 100), dictCode: 40})); n > 200 {
		t.Errorf("the smallest bomb is %d bytes; the point is that it is tiny", n)
	}
}

// patchXzDict sets the dictionary code of the first block of an xz stream
// and fixes the header's CRC32, as an attacker would.
func patchXzDict(t testing.TB, b []byte, code byte) []byte {
	b = bytes.Clone(b)
	hdr := b[xzHeaderLen : xzHeaderLen+(int(b[xzHeaderLen])+1)*4]
	i := bytes.Index(hdr[2:], []byte{xzFilterLZMA2, 1})
	if i < 0 {
		t.Fatal("no LZMA2 filter in the first block header")
	}
	hdr[2+i+2] = code
	binary.LittleEndian.PutUint32(hdr[len(hdr)-4:], crc32.ChecksumIEEE(hdr[:len(hdr)-4]))
	return b
}

// TestZstdWindowBomb: a zstd frame asking for a huge window, by its window
// descriptor or as a single-segment frame by its content size, is refused as
// ErrFormat without allocating it.
func TestZstdWindowBomb(t *testing.T) {
	content := sampleTarball(t, 0)
	frame := func(fhd byte, desc []byte) []byte {
		f := append(append([]byte{}, magicZstd...), fhd)
		f = append(f, desc...)
		// One raw block, the last: bit 0 last, bits 1-2 type 0, size << 3.
		bh := uint32(len(content))<<3 | 1
		f = append(f, byte(bh), byte(bh>>8), byte(bh>>16))
		return append(f, content...)
	}
	fcs := func(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }
	// A window descriptor is exponent<<3 | mantissa, for 1 << (10+exponent).
	for _, c := range []struct {
		name string
		data []byte
		ok   bool
	}{
		{"1 MiB window", frame(0x00, []byte{10 << 3}), true},
		{"256 MiB window", frame(0x00, []byte{18 << 3}), true},
		{"single segment", frame(0xe0, fcs(uint64(len(content)))), true},
		{"4 GiB window", frame(0x00, []byte{22 << 3}), false},
		{"2 TiB window", frame(0x00, []byte{31<<3 | 7}), false},
		{"single segment of 4 GiB", frame(0xe0, fcs(4<<30)), false},
	} {
		var got []byte
		var err error
		alloc := allocDuring(func() { got, _, err = openAll(c.data) })
		if c.ok {
			if err != nil || !bytes.Equal(got, content) {
				t.Errorf("%s: read %d bytes, %v; want the content", c.name, len(got), err)
			}
			continue
		}
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "zstd data needs a window over the 256 MiB limit") {
			t.Errorf("%s: err = %v, want ErrFormat about the window", c.name, err)
		}
		if alloc > allocBudget {
			t.Errorf("%s: allocated %d MiB, want under %d MiB", c.name, alloc>>20, allocBudget>>20)
		}
	}
}

func TestLzma2DictSize(t *testing.T) {
	for _, c := range []struct {
		code byte
		want int64
	}{
		{0, 4 << 10}, {1, 6 << 10}, {18, 2 << 20}, {22, 8 << 20}, {26, 32 << 20},
		{28, 64 << 20}, {32, 256 << 20}, {33, 384 << 20}, {39, 3 << 30}, {40, 1<<32 - 1},
	} {
		if got, err := lzma2DictSize(c.code); got != c.want || err != nil {
			t.Errorf("lzma2DictSize(%d) = %d, %v; want %d", c.code, got, err, c.want)
		}
	}
	for _, code := range []byte{41, 63, 0x40, 0x80 | 22} {
		if _, err := lzma2DictSize(code); !errors.Is(err, ErrCorrupt) {
			t.Errorf("lzma2DictSize(%#x) = %v, want ErrCorrupt", code, err)
		}
	}
}

func TestParseXzBlockHeader(t *testing.T) {
	// header builds a block header from its body after the size byte,
	// padding it and adding the size and the CRC32.
	header := func(body ...byte) []byte {
		h := append([]byte{0}, body...)
		for (len(h)+4)%4 != 0 {
			h = append(h, 0)
		}
		h[0] = byte((len(h)+4)/4 - 1)
		return binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(h))
	}
	badCRC := header(0x00, 0x21, 0x01, 22)
	badCRC[len(badCRC)-1] ^= 1
	for _, c := range []struct {
		name string
		b    []byte
		dict int64
		want error
		msg  string
	}{
		{"8 MiB", header(0x00, 0x21, 0x01, 22), 8 << 20, nil, ""},
		{"with sizes", header(0xc0, 0x80, 0x01, 0x05, 0x21, 0x01, 22), 8 << 20, nil, ""},
		{"limit", header(0x00, 0x21, 0x01, 32), 256 << 20, nil, ""},
		{"padded more than the spec says", header(0x00, 0x21, 0x01, 22, 0, 0, 0, 0, 0), 8 << 20, nil, ""},
		{"over the limit", header(0x00, 0x21, 0x01, 33), 0, ErrFormat, "384 MiB dictionary"},
		{"4 GiB", header(0x00, 0x21, 0x01, 40), 0, ErrFormat, "4.0 GiB dictionary"},
		{"bad CRC", badCRC, 0, ErrCorrupt, "damaged"},
		{"truncated", header(0x00, 0x21, 0x01, 22)[:8], 0, ErrCorrupt, "truncated"},
		{"index indicator", []byte{0}, 0, ErrCorrupt, ""},
		{"reserved flags", header(0x04, 0x21, 0x01, 22), 0, ErrFormat, "unknown flags"},
		{"x86 filter first", header(0x01, 0x04, 0x00, 0x21, 0x01, 22), 0, ErrFormat, "x86 BCJ filter"},
		{"delta filter", header(0x00, 0x03, 0x01, 0x00), 0, ErrFormat, "delta filter"},
		{"two LZMA2", header(0x01, 0x21, 0x01, 22, 0x21, 0x01, 22), 0, ErrCorrupt, "last filter"},
		{"props size 2", header(0x00, 0x21, 0x02, 22, 0), 0, ErrCorrupt, "property bytes"},
		{"props overrun", header(0x00, 0x21, 0x7f, 22), 0, ErrCorrupt, "overrun"},
		{"bad dict code", header(0x00, 0x21, 0x01, 41), 0, ErrCorrupt, "dictionary size code"},
		{"huge filter id", header(0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), 0, ErrCorrupt, ""},
	} {
		h, err := parseXzBlockHeader(c.b, maxWindow)
		switch {
		case c.want == nil && (err != nil || h.dict != c.dict || h.size != len(c.b)):
			t.Errorf("%s: parseXzBlockHeader = %+v, %v; want dict %d, size %d", c.name, h, err, c.dict, len(c.b))
		case c.want != nil && (!errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg)):
			t.Errorf("%s: parseXzBlockHeader = %v, want %v saying %q", c.name, err, c.want, c.msg)
		}
	}
}

func TestParseXzStreamHeader(t *testing.T) {
	header := func(flags ...byte) []byte {
		h := append(append([]byte{}, magicXz...), flags...)
		return binary.LittleEndian.AppendUint32(h, crc32.ChecksumIEEE(flags))
	}
	for _, c := range []struct {
		name  string
		b     []byte
		check int
		want  error
	}{
		{"none", header(0, 0), 0, nil},
		{"crc32", header(0, 1), 4, nil},
		{"crc64", header(0, 4), 8, nil},
		{"sha256", header(0, 10), 32, nil},
		{"reserved check", header(0, 2), 0, ErrFormat},
		{"reserved flags", header(1, 1), 0, ErrFormat},
		{"bad crc", append(header(0, 1)[:11], 0), 0, ErrCorrupt},
		{"short", magicXz, 0, ErrCorrupt},
	} {
		n, err := parseXzStreamHeader(c.b)
		if n != c.check || !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: parseXzStreamHeader = %d, %v; want %d, %v", c.name, n, err, c.check, c.want)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{
		100: "100 bytes", 4 << 10: "4 KiB", 384 << 20: "384 MiB", 1<<32 - 1: "4.0 GiB", 3 << 29: "1.5 GiB",
	} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// FuzzXzGuard feeds arbitrary bytes through xzGuard and the decoder behind
// it. The guard must never panic, never change a byte it passes on (what the
// decoder reads is a prefix of the input), and always end; whatever the
// decoder makes of it, it never needs a dictionary over the limit, because
// xzGuard saw every block header first (a 1 MiB limit makes that cheap to
// check: an unguarded 4 GiB dictionary would show in the allocations).
//
//	go test -run ^$ -fuzz FuzzXzGuard -fuzztime 60s ./vmm/archive/
func FuzzXzGuard(f *testing.F) {
	small := sampleTarball(f, 0)
	f.Add(buildXz(1, xzBlock{data: small, dictCode: 10}))
	f.Add(buildXz(0, xzBlock{data: small[:1000], dictCode: 0, sizes: true}, xzBlock{data: small[1000:], dictCode: 40}))
	f.Add(xzOf(f, small, xz.WriterConfig{DictCap: 1 << 20}))
	f.Add(append(xzOf(f, small, xz.WriterConfig{DictCap: 1 << 20, BlockSize: 1024}), 0, 0, 0, 0, 'x'))
	f.Add(patchXzDict(f, xzOf(f, small, xz.WriterConfig{DictCap: 1 << 20}), 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		w := &warnings{}
		g := newXzGuard(bufio.NewReaderSize(bytes.NewReader(data), 4096), 1<<20, w)
		passed, err := io.ReadAll(g)
		if !bytes.HasPrefix(data, passed) {
			t.Fatalf("guard passed %x, not a prefix of the input", passed)
		}
		if err != nil && !errors.Is(err, ErrFormat) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("guard = %v, want an error wrapping a sentinel", err)
		}
		var derr error
		alloc := allocDuring(func() {
			zr, err := xz.NewReader(newXzGuard(bufio.NewReaderSize(bytes.NewReader(data), 4096), 1<<20, w))
			if err == nil {
				_, derr = io.Copy(io.Discard, io.LimitReader(zr, 16<<20))
			}
		})
		if alloc > 64<<20 {
			t.Fatalf("decoding behind the guard allocated %d MiB (%v)", alloc>>20, derr)
		}
	})
}

// FuzzSniff checks that sniff never panics and that everything it does not
// name as a compression is either a tar archive or an ErrFormat.
func FuzzSniff(f *testing.F) {
	f.Add(sampleTarball(f, 0)[:blockSize])
	for _, u := range unsupported {
		f.Add(u.magic)
	}
	f.Add(magicXz)
	f.Add([]byte("BZh9"))
	f.Fuzz(func(t *testing.T, head []byte) {
		kind, err := sniff(head)
		switch {
		case err != nil && (kind != "" || !errors.Is(err, ErrFormat)):
			t.Fatalf("sniff = %q, %v", kind, err)
		case err == nil && kind == "tar" && len(head) < blockSize:
			t.Fatalf("sniff called %d bytes a tar archive", len(head))
		case err == nil && kind == "":
			t.Fatal("sniff returned neither a kind nor an error")
		}
	})
}
