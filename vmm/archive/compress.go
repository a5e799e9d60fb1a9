package archive

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

const (
	blockSize = 512     // tar block
	bufSize   = 1 << 20 // read buffers and copy chunks
)

// maxWindow bounds the history a decoder may keep: the xz dictionary or the
// zstd window, which each decoder allocates whole when a stream starts.
// xz -9 uses 64 MiB and zstd --ultra -22 128 MiB (the zstd tool refuses more
// than 128 MiB by default), so no ordinary archive comes near it, while a
// few hundred bytes asking for gigabytes are refused before any allocation.
const maxWindow = 256 << 20

// notTarProbe is how much openTar decodes past a first block that is not a
// tar header, looking for a checksum error: a bzip2 block is at most 900 kB.
const notTarProbe = 4 << 20

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicBzip2 = []byte("BZh") // then the block size, '1' to '9'
)

// supportedHint ends every error about a format we cannot read.
const supportedHint = "use tar, tar.gz, tar.bz2, tar.xz or tar.zst"

// unsupported lists formats users hand us by mistake, by their leading
// bytes, so the error can name what the file is instead of saying it is not
// a tarball. Each is only tried on data that is not a tar archive.
var unsupported = []struct {
	magic []byte
	what  string
}{
	{[]byte{0x1f, 0x9d}, "compress (.Z) archives"},
	{[]byte("LZIP"), "lzip-compressed archives"},
	{[]byte{0x5d, 0x00, 0x00}, "lzma-compressed archives"},
	{[]byte{0x89, 'L', 'Z', 'O', 0x00, '\r', '\n', 0x1a, '\n'}, "lzop-compressed archives"},
	{[]byte{0x04, 0x22, 0x4d, 0x18}, "lz4-compressed archives"},
	{[]byte{0x02, 0x21, 0x4c, 0x18}, "lz4-compressed archives"}, // the legacy frame of lz4 -l
	{[]byte("PK\x03\x04"), "zip archives"},
	{[]byte("PK\x05\x06"), "zip archives"},
	{[]byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c}, "7-Zip archives"},
	{[]byte("Rar!\x1a\x07"), "RAR archives"},
	{[]byte("hsqs"), "squashfs images"},
	{[]byte("QFI\xfb"), "qcow2 disk images"},
	{[]byte("vhdxfile"), "VHDX disk images"},
}

// isZstdSkippable reports whether b starts with a zstd skippable frame
// (magic 0x184D2A50..0x184D2A5F, little endian), which may precede the data.
func isZstdSkippable(b []byte) bool {
	return len(b) >= 4 && b[0]&0xf0 == 0x50 && b[1] == 0x2a && b[2] == 0x4d && b[3] == 0x18
}

// sourceError marks an error returned by the caller's reader (a dropped upload,
// say), so that it is not mistaken for corrupt compressed data.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// sourceReader tags the errors of the caller's reader as sourceErrors.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

// warnings collects what a decoder accepted but a user should hear about.
// Decoders add to it from the readahead goroutine while the caller may read
// it from its own, hence the lock.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) add(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Contains(w.list, msg) {
		w.list = append(w.list, msg)
	}
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.list)
}

// trailingData looks at what follows the end of a complete compressed stream
// (without consuming it) and decides to stop there, as GNU tar does: zero
// bytes (the padding of tar -b, dd or a tape block) are dropped silently,
// anything else with a warning, like gzip's "decompression OK, trailing
// garbage ignored". Dropping it loses nothing: the stream before it passed
// its checksum, and if the tar archive were incomplete the tar reader would
// say so. Only an error of the source is returned.
func trailingData(br *bufio.Reader, kind string, w *warnings) error {
	b, err := br.Peek(4096)
	if len(b) < 4096 && err != io.EOF {
		return err
	}
	if slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) {
		w.add(fmt.Sprintf("ignored data after the end of the %s stream", kind))
	}
	return nil
}

// decodeErrors turns every error of a decoder, except io.EOF, errors of the
// source and errors already classified, into one wrapping ErrCorrupt or
// ErrFormat in words a user understands (see decodeError).
type decodeErrors struct {
	r    io.Reader
	kind string
}

func (d decodeErrors) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = decodeError(d.kind, err)
	}
	return n, err
}

// libraryPrefixes are how the decoders start their messages; decodeError
// drops them because it names the compression itself, once.
var libraryPrefixes = []string{"gzip: ", "flate: ", "xz: ", "lzma: ", "bzip2 data invalid: ", "invalid input: "}

// decodeError classifies err, an error of the decoder for kind, and says
// what it means. Errors of the source and errors that already wrap a
// sentinel pass unchanged, so nothing is wrapped twice.
func decodeError(kind string, err error) error {
	var se *sourceError
	var ce flate.CorruptInputError
	switch {
	case errors.As(err, &se), errors.Is(err, ErrFormat), errors.Is(err, ErrCorrupt):
		return err
	case errors.Is(err, io.ErrUnexpectedEOF), err == io.EOF:
		return fmt.Errorf("%w: %s data is truncated", ErrCorrupt, kind)
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return fmt.Errorf("%w: zstd data needs a window over the %s limit of this server (recompress without --long, or with --long=27 or less)",
			ErrFormat, humanSize(maxWindow))
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, zstd.ErrCRCMismatch):
		return fmt.Errorf("%w: %s data fails its checksum (the file is damaged)", ErrCorrupt, kind)
	case errors.Is(err, gzip.ErrHeader):
		return fmt.Errorf("%w: gzip header is invalid", ErrCorrupt)
	case errors.As(err, &ce):
		return fmt.Errorf("%w: gzip data is damaged near compressed byte %d", ErrCorrupt, int64(ce))
	}
	msg := err.Error()
	for _, p := range libraryPrefixes {
		msg = strings.TrimPrefix(msg, p)
	}
	return fmt.Errorf("%w: %s data is damaged: %s", ErrCorrupt, kind, msg)
}

// openError is decodeError for a decoder that failed to start (reading its
// header): there openTar, not the extractor, reports a failure of the source.
func openError(kind string, err error) error {
	var se *sourceError
	if errors.As(err, &se) {
		return fmt.Errorf("read archive: %w", se.err)
	}
	return decodeError(kind, err)
}

// decompressor is an opened, possibly decompressing, tar stream.
type decompressor struct {
	io.Reader
	kind  string   // "tar", "gzip", "bzip2", "xz" or "zstd"
	close []func() // releases decoder goroutines and readahead
	warn  *warnings
}

// Close stops the decoder and its readahead goroutine.
func (d *decompressor) Close() {
	for i := len(d.close) - 1; i >= 0; i-- {
		d.close[i]()
	}
}

// Warnings returns what the decoder accepted but a user should know, one
// line each, for the import's result (Extract adds them to Stats.Warnings):
// today only "ignored data after the end of the gzip stream" (or bzip2, xz,
// zstd), where GNU tar also extracts and warns. Trailing zero padding is not
// worth a warning. It may be called at any time, also from another goroutine
// than the reader's; it is complete once the reader has returned io.EOF.
func (d *decompressor) Warnings() []string {
	return d.warn.all()
}

// sniff names the compression of data starting with head (up to a tar block
// of it; less only if the input is shorter): "tar" for an uncompressed
// tarball, else "gzip", "bzip2", "xz" or "zstd". For anything else it returns
// an error wrapping ErrFormat that says what the data is, where it can tell.
// Only content counts, never a file name: an upload has none worth trusting.
func sniff(head []byte) (string, error) {
	switch {
	case len(head) == 0:
		return "", fmt.Errorf("%w: the archive is empty", ErrFormat)
	case bytes.HasPrefix(head, magicGzip):
		return "gzip", nil
	case bytes.HasPrefix(head, magicZstd) || isZstdSkippable(head):
		return "zstd", nil
	case bytes.HasPrefix(head, magicXz):
		return "xz", nil
	case bytes.HasPrefix(head, magicBzip2) && len(head) > 3 && head[3] >= '1' && head[3] <= '9':
		return "bzip2", nil
	case len(head) >= blockSize && (isZeroBlock(head) || isTarHeader(head)):
		return "tar", nil
	}
	for _, u := range unsupported {
		if bytes.HasPrefix(head, u.magic) {
			return "", fmt.Errorf("%w: %s are not supported (%s)", ErrFormat, u.what, supportedHint)
		}
	}
	if len(head) < blockSize {
		return "", fmt.Errorf("%w: not a tar archive: %d bytes is shorter than one tar header (%s)", ErrFormat, len(head), supportedHint)
	}
	return "", fmt.Errorf("%w: not a tar archive, nor a gzip, bzip2, xz or zstd compressed one", ErrFormat)
}

// openTar detects the compression of r from its first bytes (never from a
// name), wraps r in the matching decoder and checks that what comes out starts
// with a tar header. Decoding runs ahead in its own goroutine, as `tar -xz`
// runs gzip in its own process, so that decompression overlaps file creation.
// Decoders are bounded to maxWindow bytes of history; data after the end of a
// complete compressed stream is dropped, with a warning (see Warnings) unless
// it is zeros.
func openTar(r io.Reader) (*decompressor, error) {
	br := bufio.NewReaderSize(sourceReader{r}, bufSize)
	head, err := br.Peek(blockSize)
	var se *sourceError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("read archive: %w", se.err)
	}
	kind, err := sniff(head)
	if err != nil {
		return nil, err
	}
	d := &decompressor{kind: kind, warn: &warnings{}}
	if kind == "tar" {
		d.Reader = br
		return d, nil
	}
	var dr io.Reader
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, openError(kind, err)
		}
		// One member at a time, to tell another member from trailing data.
		zr.Multistream(false)
		dr = &gzipMembers{br: br, zr: zr, warn: d.warn}
	case "bzip2":
		src := &byteTail{r: br}
		dr = &bzip2Stream{r: bzip2.NewReader(src), src: src, warn: d.warn}
	case "zstd":
		// Concurrency 0 lets the decoder use GOMAXPROCS goroutines. The
		// window cap is checked against each frame's header before its
		// window is allocated, for a frame with a window descriptor and for
		// a single-segment frame (whose window is its content size) alike.
		src := &byteTail{r: br}
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxWindow(maxWindow))
		if err != nil {
			return nil, openError(kind, err)
		}
		d.close = append(d.close, zr.Close)
		dr = &zstdStream{r: zr, src: src, warn: d.warn}
	case "xz":
		// ulikunitz/xz has no maximum dictionary (ReaderConfig.DictCap is
		// a minimum), so xzGuard refuses large ones before it sees them.
		zr, err := xz.NewReader(newXzGuard(br, maxWindow, d.warn))
		if err != nil {
			return nil, openError(kind, err)
		}
		dr = zr
	}
	ra := newReadahead(decodeErrors{dr, kind}, 4, bufSize)
	d.close = append(d.close, ra.Close)
	dbr := bufio.NewReaderSize(ra, 64<<10)
	d.Reader = dbr
	// The first block must be a tar header (or the zero block that ends an
	// empty archive); anything else is reported as a format error, not as a
	// corrupt tarball, because it is most likely not a tarball at all.
	first, err := dbr.Peek(blockSize)
	if len(first) < blockSize {
		d.Close()
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("read archive: %w", se.err)
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrFormat):
			return nil, err
		case len(first) == 0:
			return nil, fmt.Errorf("%w: the %s data decompresses to nothing", ErrFormat, kind)
		}
		return nil, fmt.Errorf("%w: the %s data is not a tar archive (it decompresses to %d bytes)", ErrFormat, kind, len(first))
	}
	if !isZeroBlock(first) && !isTarHeader(first) {
		// Damage shows as garbage before the decoder reaches the checksum
		// that proves it (the end of a bzip2 block, of a gzip member), so
		// read on a little before calling a damaged tarball no tarball.
		_, err := io.CopyN(io.Discard, dbr, notTarProbe)
		d.Close()
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("read archive: %w", se.err)
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrFormat):
			return nil, err
		}
		return nil, fmt.Errorf("%w: the %s data is not a tar archive", ErrFormat, kind)
	}
	return d, nil
}

// gzipMembers decodes one gzip member after another, as gzip -d does, and
// ends at data after a member that is not another member (see trailingData).
type gzipMembers struct {
	br   *bufio.Reader // what zr reads from: it reads no further than a member
	zr   *gzip.Reader
	warn *warnings
	done bool
}

func (g *gzipMembers) Read(p []byte) (int, error) {
	for !g.done {
		n, err := g.zr.Read(p)
		if err != io.EOF {
			return n, err
		}
		// The member ended and its CRC and length were right.
		if err := g.next(); err != nil {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, io.EOF
}

// next starts the member after the current one, or marks the end.
func (g *gzipMembers) next() error {
	head, err := g.br.Peek(len(magicGzip))
	switch {
	case len(head) == 0 && err == io.EOF:
		g.done = true
		return nil
	case len(head) < len(magicGzip) && err != io.EOF:
		return err // the source failed
	case bytes.Equal(head, magicGzip):
		// From here a bad header is damage, not trailing data.
		if err := g.zr.Reset(g.br); err != nil {
			return err
		}
		g.zr.Multistream(false)
		return nil
	}
	g.done = true
	return trailingData(g.br, "gzip", g.warn)
}

// byteTail is a decoder's source that remembers the last bytes read. At the
// end of a stream the bzip2 and zstd decoders read a few bytes (exactly: 2,
// and 4) looking for another stream; if those are not one, they are out of
// reach of trailingData, so byteTail says whether they were zeros.
type byteTail struct {
	r    *bufio.Reader
	last [4]byte
}

func (t *byteTail) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.record(p[:n])
	return n, err
}

// ReadByte makes byteTail an io.ByteReader, which compress/bzip2 reads
// through instead of adding a buffer of its own that would read past the
// end of the stream.
func (t *byteTail) ReadByte() (byte, error) {
	c, err := t.r.ReadByte()
	if err == nil {
		t.last = [4]byte{t.last[1], t.last[2], t.last[3], c}
	}
	return c, err
}

func (t *byteTail) record(b []byte) {
	if len(b) >= len(t.last) {
		copy(t.last[:], b[len(b)-len(t.last):])
		return
	}
	copy(t.last[:], t.last[len(b):])
	copy(t.last[len(t.last)-len(b):], b)
}

// zeros reports whether the last n bytes read were all zero.
func (t *byteTail) zeros(n int) bool {
	return !slices.ContainsFunc(t.last[len(t.last)-n:], func(c byte) bool { return c != 0 })
}

// endAt ends a decoder's data at trailing bytes, n of which the decoder has
// already read: silently if they and what follows are zeros, else with a
// warning (see trailingData).
func (t *byteTail) endAt(n int, kind string, w *warnings) error {
	if !t.zeros(n) {
		w.add(fmt.Sprintf("ignored data after the end of the %s stream", kind))
		return nil
	}
	return trailingData(t.r, kind, w)
}

// errBzip2Trailing is what compress/bzip2 says when the two bytes after a
// complete stream (its CRC checked) do not start another stream.
var errBzip2Trailing = bzip2.StructuralError("bad magic value in continuation file")

// bzip2Stream decodes concatenated bzip2 streams (as pbzip2 and lbzip2 write)
// and ends at data after them that is not another stream (see trailingData).
type bzip2Stream struct {
	r    io.Reader
	src  *byteTail
	warn *warnings
	done bool
}

func (b *bzip2Stream) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if err == errBzip2Trailing {
		b.done = true
		if err := b.src.endAt(2, "bzip2", b.warn); err != nil {
			return n, err
		}
		return n, io.EOF
	}
	return n, err
}

// zstdStream ends the data at whatever follows a complete zstd frame and is
// neither a frame nor a skippable frame (see trailingData).
type zstdStream struct {
	r    *zstd.Decoder
	src  *byteTail // the decoder reads exactly, never past the 4-byte magic
	warn *warnings
	out  int64 // bytes decoded; a mismatch after some is after a frame
	done bool
}

func (z *zstdStream) Read(p []byte) (int, error) {
	if z.done {
		return 0, io.EOF
	}
	n, err := z.r.Read(p)
	z.out += int64(n)
	if errors.Is(err, zstd.ErrMagicMismatch) && z.out > 0 {
		// The decoder only checks the magic between frames, so every frame
		// before this one was complete and matched its checksum.
		z.done = true
		if err := z.src.endAt(4, "zstd", z.warn); err != nil {
			return n, err
		}
		return n, io.EOF
	}
	return n, err
}

// humanSize writes n bytes the way xz --list does: in the largest binary
// unit that keeps it readable.
func humanSize(n int64) string {
	units := []string{"bytes", "KiB", "MiB", "GiB", "TiB"}
	i, v := 0, float64(n)
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d bytes", n)
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %s", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

func isZeroBlock(b []byte) bool {
	for _, c := range b[:blockSize] {
		if c != 0 {
			return false
		}
	}
	return true
}

// isTarHeader reports whether b starts with a tar header block whose checksum
// is right. The checksum is the sum of the header's bytes with the checksum
// field read as spaces; historic tars summed signed bytes, so accept both.
func isTarHeader(b []byte) bool {
	field := bytes.Trim(b[148:156], " \x00")
	want, err := strconv.ParseInt(string(field), 8, 64)
	if err != nil {
		return false
	}
	var unsigned, signed int64
	for i, c := range b[:blockSize] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return want == unsigned || want == signed
}

// compressor wraps w in the encoder for f. close flushes and ends the
// compressed stream; it does not close w.
func compressor(w io.Writer, f Format) (io.Writer, func() error, error) {
	switch f {
	case Tar:
		bw := bufio.NewWriterSize(w, bufSize)
		return bw, bw.Flush, nil
	case TarGz:
		zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
		if err != nil {
			return nil, nil, err
		}
		return zw, zw.Close, nil
	case TarZst:
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
		if err != nil {
			return nil, nil, err
		}
		return zw, zw.Close, nil
	case TarXz:
		// ulikunitz/xz is single threaded and slow; buffer its input so that the
		// tar writer's 512-byte headers do not each go through the encoder.
		zw, err := xz.NewWriter(w)
		if err != nil {
			return nil, nil, err
		}
		bw := bufio.NewWriterSize(zw, bufSize)
		return bw, func() error {
			if err := bw.Flush(); err != nil {
				return err
			}
			return zw.Close()
		}, nil
	}
	return nil, nil, fmt.Errorf("%w: %q", ErrFormat, string(f))
}
