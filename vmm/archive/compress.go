package archive

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

const (
	blockSize = 512     // tar block
	bufSize   = 1 << 20 // read buffers and copy chunks
)

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicBzip2 = []byte("BZh")
	magicLz4   = []byte{0x04, 0x22, 0x4d, 0x18}
)

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

// corruptReader turns every error of a decompressor, except io.EOF and errors
// of the source, into one wrapping ErrCorrupt that names the compression.
type corruptReader struct {
	r    io.Reader
	kind string
}

func (c corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		var se *sourceError
		if !errors.As(err, &se) {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%w: %s data is truncated", ErrCorrupt, c.kind)
			} else {
				err = fmt.Errorf("%w: %s: %v", ErrCorrupt, c.kind, err)
			}
		}
	}
	return n, err
}

// decompressor is an opened, possibly decompressing, tar stream.
type decompressor struct {
	io.Reader
	kind  string   // "tar", "gzip", "zstd", "xz"
	close []func() // releases decoder goroutines and readahead
}

func (d *decompressor) Close() {
	for i := len(d.close) - 1; i >= 0; i-- {
		d.close[i]()
	}
}

// openTar detects the compression of r from its first bytes (never from a
// name), wraps r in the matching decoder and checks that what comes out starts
// with a tar header. Decoding runs ahead in its own goroutine, as `tar -xz`
// runs gzip in its own process, so that decompression overlaps file creation.
func openTar(r io.Reader) (*decompressor, error) {
	br := bufio.NewReaderSize(sourceReader{r}, bufSize)
	head, err := br.Peek(6)
	if len(head) == 0 {
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		return nil, fmt.Errorf("%w: empty input", ErrFormat)
	}
	d := &decompressor{kind: "tar"}
	var dr io.Reader
	switch {
	case bytes.HasPrefix(head, magicGzip):
		d.kind = "gzip"
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, gzipOpenError(err)
		}
		dr = zr
	case bytes.HasPrefix(head, magicZstd) || isZstdSkippable(head):
		d.kind = "zstd"
		// Concurrency 0 lets the decoder use GOMAXPROCS goroutines, and the
		// window cap bounds its memory against a frame asking for gigabytes
		// (the zstd tool itself refuses windows over 128 MiB by default).
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxWindow(256<<20))
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		d.close = append(d.close, zr.Close)
		dr = zr
	case bytes.HasPrefix(head, magicXz):
		d.kind = "xz"
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: xz: %v", ErrCorrupt, err)
		}
		dr = zr
	case bytes.HasPrefix(head, magicBzip2):
		return nil, fmt.Errorf("%w: bzip2-compressed archives are not supported (use tar, tar.gz, tar.zst or tar.xz)", ErrFormat)
	case bytes.HasPrefix(head, magicLz4):
		return nil, fmt.Errorf("%w: lz4-compressed archives are not supported (use tar, tar.gz, tar.zst or tar.xz)", ErrFormat)
	default:
		d.Reader = br
	}
	if dr != nil {
		ra := newReadahead(corruptReader{dr, d.kind}, 4, bufSize)
		d.close = append(d.close, ra.Close)
		d.Reader = bufio.NewReaderSize(ra, 64<<10)
	}
	// The first block must be a tar header (or the zero block that ends an
	// empty archive); anything else is reported as a format error, not as a
	// corrupt tarball, because it is most likely not a tarball at all.
	first, err := d.Reader.(*bufio.Reader).Peek(blockSize)
	if len(first) < blockSize {
		d.Close()
		var se *sourceError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("read archive: %w", se.err)
		case errors.Is(err, ErrCorrupt):
			return nil, err
		case len(first) == 0:
			return nil, fmt.Errorf("%w: %s stream is empty", ErrFormat, d.kind)
		case d.kind == "tar":
			return nil, fmt.Errorf("%w: not a tar archive (%d bytes)", ErrFormat, len(first))
		}
		return nil, fmt.Errorf("%w: %s data is not a tar archive", ErrFormat, d.kind)
	}
	if !isZeroBlock(first) && !isTarHeader(first) {
		d.Close()
		if d.kind == "tar" {
			return nil, fmt.Errorf("%w: not a tar archive, nor gzip, zstd or xz compressed", ErrFormat)
		}
		return nil, fmt.Errorf("%w: %s data is not a tar archive", ErrFormat, d.kind)
	}
	return d, nil
}

func gzipOpenError(err error) error {
	var se *sourceError
	if errors.As(err, &se) {
		return fmt.Errorf("read archive: %w", se.err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return fmt.Errorf("%w: gzip data is truncated", ErrCorrupt)
	}
	return fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
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
