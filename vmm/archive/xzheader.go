package archive

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The xz container (https://tukaani.org/xz/xz-file-format.txt), as far as
// it matters here: a stream is a 12-byte header, blocks, an index and a
// 12-byte footer, and streams may be concatenated with zero padding between.
// A block starts with a header that names its filters; the last (for
// ulikunitz/xz, the only) filter is LZMA2, whose one property byte gives the
// dictionary size the decoder allocates before it decodes anything.
//
// ulikunitz/xz trusts that size: ReaderConfig.DictCap is a minimum it raises
// to whatever the block header asks (lzmafilter.go: "if dc >
// config.DictCap { config.DictCap = dc }"), so a 164-byte file asking for a
// 4 GiB dictionary makes it allocate 4 GiB. xzGuard therefore walks the
// container itself, in front of the library, and refuses such a block
// before the library reads its header.

const (
	xzHeaderLen    = 12 // stream header and stream footer
	xzMaxBlockHdr  = 1024
	xzFilterLZMA2  = 0x21
	xzMaxVarintLen = 10 // as ulikunitz/xz reads them; the spec says 9
)

var xzFooterMagic = []byte{'Y', 'Z'}

// xzCheckSize is the size of each block's integrity check for a check type
// (the low 4 bits of the stream flags), from the spec's table.
func xzCheckSize(check byte) int {
	switch {
	case check == 0:
		return 0
	case check <= 3:
		return 4
	case check <= 6:
		return 8
	case check <= 9:
		return 16
	case check <= 12:
		return 32
	}
	return 64
}

// xzCheckSupported reports whether ulikunitz/xz can verify the check type:
// none, CRC32, CRC64 and SHA-256, the four that xz itself writes.
func xzCheckSupported(check byte) bool {
	return check == 0x00 || check == 0x01 || check == 0x04 || check == 0x0a
}

// parseXzStreamHeader checks a 12-byte stream header (or the first 12 bytes
// of one) and returns the size of the blocks' integrity checks.
func parseXzStreamHeader(b []byte) (checkSize int, err error) {
	if len(b) < xzHeaderLen || !bytes.HasPrefix(b, magicXz) {
		return 0, fmt.Errorf("%w: xz stream header is missing", ErrCorrupt)
	}
	if crc32.ChecksumIEEE(b[6:8]) != binary.LittleEndian.Uint32(b[8:12]) {
		return 0, fmt.Errorf("%w: xz stream header is damaged (checksum mismatch)", ErrCorrupt)
	}
	if b[6] != 0 || b[7]&0xf0 != 0 {
		return 0, fmt.Errorf("%w: xz stream header has unknown flags (a newer xz format?)", ErrFormat)
	}
	check := b[7] & 0x0f
	if !xzCheckSupported(check) {
		return 0, fmt.Errorf("%w: xz integrity check type %#x is not supported (recompress with xz's default, --check=crc64)", ErrFormat, check)
	}
	return xzCheckSize(check), nil
}

// xzBlockHeader is what a block header says.
type xzBlockHeader struct {
	size int   // bytes of the header itself, a multiple of 4
	dict int64 // the LZMA2 dictionary size
}

// readXzVarint decodes the spec's variable-length integer (7 bits a byte,
// least significant first) from b, returning it and its length.
func readXzVarint(b []byte) (uint64, int, error) {
	var x uint64
	for i := 0; i < len(b) && i < xzMaxVarintLen; i++ {
		c := b[i]
		if i == xzMaxVarintLen-1 && c > 1 {
			break // more than 64 bits
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, i + 1, nil
		}
	}
	if len(b) < xzMaxVarintLen && (len(b) == 0 || b[len(b)-1] >= 0x80) {
		return 0, 0, io.ErrUnexpectedEOF
	}
	return 0, 0, errors.New("integer too large")
}

// xzFilterName names a filter ID for messages.
func xzFilterName(id uint64) string {
	switch id {
	case 0x03:
		return "delta"
	case 0x04:
		return "x86 BCJ"
	case 0x05:
		return "PowerPC BCJ"
	case 0x06:
		return "IA-64 BCJ"
	case 0x07:
		return "ARM BCJ"
	case 0x08:
		return "ARM-Thumb BCJ"
	case 0x09:
		return "SPARC BCJ"
	case 0x0a:
		return "ARM64 BCJ"
	case 0x0b:
		return "RISC-V BCJ"
	case xzFilterLZMA2:
		return "LZMA2"
	}
	return fmt.Sprintf("%#x", id)
}

// lzma2DictSize decodes the LZMA2 property byte: bits 0-5 encode the
// dictionary size as 2 or 3 times a power of two, 40 means 4 GiB - 1, and the
// top two bits are reserved.
func lzma2DictSize(p byte) (int64, error) {
	switch {
	case p&0xc0 != 0 || p > 40:
		return 0, fmt.Errorf("%w: xz LZMA2 dictionary size code %#x is invalid", ErrCorrupt, p)
	case p == 40:
		return 1<<32 - 1, nil
	}
	return int64(2|p&1) << (p/2 + 11), nil
}

// parseXzBlockHeader parses a whole block header, b[0] being its size byte
// (never 0, which starts the index). It checks the header's CRC32 before
// believing anything in it, and accepts only what ulikunitz/xz decodes: one
// filter, LZMA2, with a dictionary of at most maxDict bytes. Every error
// wraps ErrFormat (valid, but not something we decode) or ErrCorrupt.
func parseXzBlockHeader(b []byte, maxDict int64) (xzBlockHeader, error) {
	var h xzBlockHeader
	if len(b) == 0 || b[0] == 0 {
		return h, fmt.Errorf("%w: xz block header is missing", ErrCorrupt)
	}
	h.size = (int(b[0]) + 1) * 4
	if len(b) < h.size {
		return h, fmt.Errorf("%w: xz block header is truncated", ErrCorrupt)
	}
	b = b[:h.size]
	body := b[:h.size-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(b[h.size-4:]) {
		return h, fmt.Errorf("%w: xz block header is damaged (checksum mismatch)", ErrCorrupt)
	}
	flags := body[1]
	if flags&0x3c != 0 {
		return h, fmt.Errorf("%w: xz block header has unknown flags (a newer xz format?)", ErrFormat)
	}
	rest := body[2:]
	// The compressed and uncompressed sizes, when present, are only
	// checked by the library against what the block really holds.
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if !present {
			continue
		}
		_, n, err := readXzVarint(rest)
		if err != nil {
			return h, fmt.Errorf("%w: xz block header: size field: %v", ErrCorrupt, err)
		}
		rest = rest[n:]
	}
	nfilters := int(flags&0x03) + 1
	for range nfilters {
		id, n, err := readXzVarint(rest)
		if err != nil {
			return h, fmt.Errorf("%w: xz block header: filter ID: %v", ErrCorrupt, err)
		}
		rest = rest[n:]
		psize, n, err := readXzVarint(rest)
		if err != nil {
			return h, fmt.Errorf("%w: xz block header: filter properties: %v", ErrCorrupt, err)
		}
		rest = rest[n:]
		if psize > uint64(len(rest)) {
			return h, fmt.Errorf("%w: xz block header: filter properties overrun the header", ErrCorrupt)
		}
		if id >= 1<<62 {
			return h, fmt.Errorf("%w: xz block header: reserved filter ID", ErrCorrupt)
		}
		if id != xzFilterLZMA2 {
			return h, fmt.Errorf("%w: xz data uses the %s filter, which is not supported (recompress with plain xz, without --filters or --x86)", ErrFormat, xzFilterName(id))
		}
		if psize != 1 {
			return h, fmt.Errorf("%w: xz LZMA2 filter has %d property bytes, want 1", ErrCorrupt, psize)
		}
		dict, err := lzma2DictSize(rest[0])
		if err != nil {
			return h, err
		}
		h.dict = dict
		rest = rest[psize:]
	}
	if nfilters != 1 {
		// Only reachable with LZMA2 before another filter, which the spec
		// forbids: LZMA2 must be last.
		return h, fmt.Errorf("%w: xz block header: LZMA2 is not the last filter", ErrCorrupt)
	}
	if h.dict > maxDict {
		return h, fmt.Errorf("%w: xz data needs a %s dictionary, over the %s limit of this server (recompress with xz -9 or lower, which uses 64 MiB)",
			ErrFormat, humanSize(h.dict), humanSize(maxDict))
	}
	return h, nil
}

// xzState is where xzGuard is in the container.
type xzState int

const (
	xzStreamHeader xzState = iota // at a stream header
	xzBlockOrIndex                // at a block header or the index indicator
	xzChunk                       // at an LZMA2 chunk's control byte
	xzBlockEnd                    // after the LZMA2 end marker: padding, check
	xzIndexCount                  // at the index's number of records
	xzIndexRecords                // in the index's records
	xzIndexEnd                    // at the index's padding and CRC32
	xzFooter                      // at the stream footer
	xzAfterStream                 // after a footer: padding, a stream, or the end
	xzEnd                         // nothing more to hand out
)

// xzGuard passes an xz file through unchanged while following its structure,
// so that it sees every block header before the decoder does and can refuse
// one whose dictionary would take too much memory. It does not verify
// checksums or sizes: the decoder behind it does, and where xzGuard and the
// decoder could disagree about a damaged file, either one's error is right.
//
// Finding each block header means walking the LZMA2 chunks, whose headers
// give their sizes, because block headers need not state the block's size.
//
// After a complete stream, stream padding (zeros in multiples of four) and
// further streams go to the decoder; anything else ends the data there: zero
// bytes silently, other bytes with a warning (see trailingData).
type xzGuard struct {
	r       *bufio.Reader // the source; its buffer holds at least xzMaxBlockHdr bytes
	maxDict int64
	warn    *warnings

	state     xzState
	pass      int64 // bytes the decoder may read before the next element to inspect
	err       error // sticky; io.EOF once the end is reached
	checkSize int   // integrity check bytes after each block
	blockLen  int64 // LZMA2 bytes of the current block, for its padding
	blocks    uint64
	records   uint64 // index records to go
	second    bool   // the next index varint is a record's second
	indexLen  int64  // bytes of the current index, for its padding
}

func newXzGuard(r *bufio.Reader, maxDict int64, w *warnings) *xzGuard {
	return &xzGuard{r: r, maxDict: maxDict, warn: w}
}

func (g *xzGuard) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for g.pass == 0 {
		if g.err != nil {
			return 0, g.err
		}
		g.err = g.step()
	}
	if int64(len(p)) > g.pass {
		p = p[:g.pass]
	}
	n, err := g.r.Read(p)
	g.pass -= int64(n)
	return n, err
}

// peek returns the next n bytes without consuming them. If the source ends
// first, ok is false and the guard hands out what is left and then io.EOF,
// leaving it to the decoder to report the truncation.
func (g *xzGuard) peek(n int) (b []byte, ok bool, err error) {
	b, err = g.r.Peek(n)
	if len(b) == n {
		return b, true, nil
	}
	if err != io.EOF {
		return nil, false, err // the source failed
	}
	if len(b) == 0 {
		return nil, false, io.EOF
	}
	g.pass, g.state = int64(len(b)), xzEnd
	return nil, false, nil
}

// peekVarint peeks an xz varint.
func (g *xzGuard) peekVarint() (x uint64, n int, ok bool, err error) {
	b, _ := g.r.Peek(xzMaxVarintLen)
	x, n, verr := readXzVarint(b)
	if verr == nil {
		return x, n, true, nil
	}
	if errors.Is(verr, io.ErrUnexpectedEOF) {
		_, ok, err := g.peek(xzMaxVarintLen)
		return 0, 0, ok, err // ok is false: the file ends inside the varint
	}
	return 0, 0, false, fmt.Errorf("%w: xz index: %v", ErrCorrupt, verr)
}

// step inspects the element at the current position and sets pass to its
// length (or, for an element of no bytes, only moves on). It returns io.EOF
// at the end of the data and an error wrapping ErrFormat or ErrCorrupt for
// what must not reach the decoder.
func (g *xzGuard) step() error {
	switch g.state {
	case xzEnd:
		return io.EOF

	case xzStreamHeader:
		b, ok, err := g.peek(xzHeaderLen)
		if !ok {
			return err
		}
		if g.checkSize, err = parseXzStreamHeader(b); err != nil {
			return err
		}
		g.pass, g.state, g.blocks = xzHeaderLen, xzBlockOrIndex, 0

	case xzBlockOrIndex:
		b, ok, err := g.peek(1)
		if !ok {
			return err
		}
		if b[0] == 0 {
			g.pass, g.state, g.indexLen = 1, xzIndexCount, 1
			return nil
		}
		b, ok, err = g.peek((int(b[0]) + 1) * 4)
		if !ok {
			return err
		}
		h, err := parseXzBlockHeader(b, g.maxDict)
		if err != nil {
			return err
		}
		g.pass, g.state, g.blockLen = int64(h.size), xzChunk, 0
		g.blocks++

	case xzChunk:
		b, ok, err := g.peek(1)
		if !ok {
			return err
		}
		c := b[0]
		switch {
		case c == 0x00: // end of the LZMA2 data
			g.pass, g.state = 1, xzBlockEnd
		case c == 0x01 || c == 0x02: // uncompressed chunk: size-1, 16 bits
			if b, ok, err = g.peek(3); !ok {
				return err
			}
			g.pass = 3 + int64(binary.BigEndian.Uint16(b[1:3])) + 1
		case c >= 0x80: // LZMA chunk: unpacked size-1 (21 bits), packed size-1, props if c >= 0xc0
			hdr := 5
			if c >= 0xc0 {
				hdr = 6
			}
			if b, ok, err = g.peek(hdr); !ok {
				return err
			}
			g.pass = int64(hdr) + int64(binary.BigEndian.Uint16(b[3:5])) + 1
		default:
			return fmt.Errorf("%w: xz data is damaged (invalid LZMA2 chunk)", ErrCorrupt)
		}
		g.blockLen += g.pass

	case xzBlockEnd:
		g.pass = (4-g.blockLen%4)%4 + int64(g.checkSize)
		g.state = xzBlockOrIndex

	case xzIndexCount:
		n, size, ok, err := g.peekVarint()
		if !ok {
			return err
		}
		if n != g.blocks {
			return fmt.Errorf("%w: xz index lists %d blocks, the stream has %d", ErrCorrupt, n, g.blocks)
		}
		g.pass, g.state, g.records, g.second = int64(size), xzIndexRecords, n, false
		g.indexLen += int64(size)

	case xzIndexRecords:
		if g.records == 0 {
			g.state = xzIndexEnd
			return nil
		}
		_, size, ok, err := g.peekVarint()
		if !ok {
			return err
		}
		g.pass = int64(size)
		g.indexLen += int64(size)
		if g.second {
			g.records--
		}
		g.second = !g.second

	case xzIndexEnd:
		g.pass, g.state = (4-g.indexLen%4)%4+4, xzFooter

	case xzFooter:
		b, ok, err := g.peek(xzHeaderLen)
		if !ok {
			return err
		}
		if !bytes.Equal(b[10:12], xzFooterMagic) {
			return fmt.Errorf("%w: xz stream footer is damaged", ErrCorrupt)
		}
		g.pass, g.state = xzHeaderLen, xzAfterStream

	case xzAfterStream:
		b, err := g.r.Peek(4)
		switch {
		case len(b) == 0 && err == io.EOF:
			return io.EOF
		case len(b) < 4 && err != io.EOF:
			return err // the source failed
		case len(b) == 4 && bytes.Equal(b, []byte{0, 0, 0, 0}):
			g.pass = 4 // stream padding, which the decoder skips
		case bytes.HasPrefix(b, magicXz[:4]):
			g.state = xzStreamHeader
		default:
			// The decoder would call this a bad stream header; xz(1) too,
			// but the data so far is complete and verified, and tar
			// checks that nothing of the archive is missing.
			if err := trailingData(g.r, "xz", g.warn); err != nil {
				return err
			}
			return io.EOF
		}
	}
	return nil
}
