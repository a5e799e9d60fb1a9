package catalog

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Whiteouts, as the OCI image spec names them: ".wh.NAME" deletes NAME of
// the layers below; ".wh..wh..opq" in a directory hides everything the
// layers below put in it.
const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// mark is what the layers above have made of a path.
type mark uint8

const (
	// markDir: a directory was written; lower entries under it still show.
	markDir mark = iota + 1
	// markFile: something not a directory was written, which hides the
	// path and everything under it in lower layers.
	markFile
	// markWhiteout: deleted; hides the path and everything under it.
	markWhiteout
	// markHidden: a non-directory this layer wrote but one above hid; it
	// still hides what is under the path in the layers below.
	markHidden
)

// blocks says whether m hides what lower layers put under the path.
func (m mark) blocks() bool { return m == markFile || m == markWhiteout || m == markHidden }

// flattener applies an image's layers as one tar stream, top layer first:
// an entry is written unless a layer above wrote the same path, deleted it
// or one of its parents (a whiteout, or a non-directory in its place), or
// made a parent opaque. Reading top-down streams each layer once and keeps
// only a map of the paths seen, never file data; the extraction it feeds
// makes missing parent directories and fixes their modes when a lower
// layer's entry for them arrives.
//
// A hard link may name a file of a lower layer, which comes later in this
// order: it waits (only its header) until its target has been written and
// is written right after it. If a layer above replaced or deleted the
// target, the lower layer's file is written under the link's name instead,
// as the link kept its data. A link to a file earlier in its own layer that
// a layer above replaced or deleted finds that file's data gone by: the
// layer is read a second time for it (rare: a package's hard-linked files
// of which a later layer removed only some).
type flattener struct {
	tw *tar.Writer
	// seen is what the layers above the current one did to each path;
	// layer is what the current layer did, merged into seen at its end (a
	// layer's whiteouts hide only what is below it).
	seen, layer map[string]mark
	// opaque are directories of the layers above that hide lower entries.
	opaque, layerOpaque map[string]bool
	// pending are hard links waiting for their target's key.
	pending map[string][]*tar.Header
	// orphans are the current layer's hard links to a file earlier in the
	// same layer that a layer above hides.
	orphans []*tar.Header
	// passwd is the image's /etc/passwd (the top-most one, up to
	// maxPasswd bytes), for the user its config names; nil when it has
	// none.
	passwd []byte
}

// maxPasswd bounds the /etc/passwd the flattener keeps.
const maxPasswd = 1 << 20

// key is a tar name as a map key: "./usr/bin/" and "usr/bin" are the same
// path. Names that climb out ("../x") keep their ".." and reach the
// extraction as they are, which refuses them.
func key(name string) string {
	k := path.Clean(strings.TrimLeft(name, "/"))
	if k == "" {
		return "."
	}
	return k
}

// hidden reports whether a layer above hides k.
func (f *flattener) hidden(k string) bool {
	if _, ok := f.seen[k]; ok {
		return true
	}
	for d := k; d != "." && d != "/" && d != ".."; {
		d = path.Dir(d)
		if f.opaque[d] || f.seen[d].blocks() {
			return true
		}
	}
	return false
}

// flatten writes layers (bottom first, as a manifest lists them) as one
// tar stream to w. progress is told the compressed bytes read from each
// layer, by the layer's position in the order read (top first). Every
// layer is read to its end, which is where go-containerregistry checks a
// blob's digest: a layer that is not what its manifest says fails the
// stream, after its entries went out (the extraction then fails and
// removes what it wrote).
func flatten(ctx context.Context, layers []v1.Layer, w io.Writer, progress func(i int, n int64)) error {
	_, err := flattenImage(ctx, layers, w, progress)
	return err
}

// flattenImage is flatten that also returns the image's /etc/passwd (nil
// when it has none as a regular file).
func flattenImage(ctx context.Context, layers []v1.Layer, w io.Writer, progress func(i int, n int64)) ([]byte, error) {
	f := &flattener{tw: tar.NewWriter(w), seen: map[string]mark{}, opaque: map[string]bool{}, pending: map[string][]*tar.Header{}}
	err := f.run(ctx, layers, progress)
	return f.passwd, err
}

func (f *flattener) run(ctx context.Context, layers []v1.Layer, progress func(i int, n int64)) error {
	for i := range layers {
		l := layers[len(layers)-1-i]
		if err := f.apply(ctx, l, func(n int64) { progress(i, n) }); err != nil {
			d, _ := l.Digest()
			return fmt.Errorf("layer %d of %d (%s): %w", len(layers)-i, len(layers), d, err)
		}
	}
	// Links whose target no layer had go out as they are: the
	// extraction refuses a link to nothing.
	for _, hs := range f.pending {
		for _, h := range hs {
			if err := f.tw.WriteHeader(h); err != nil {
				return err
			}
		}
	}
	return f.tw.Close()
}

// countingReader tells add how many bytes each Read returned.
type countingReader struct {
	ctx context.Context
	r   io.Reader
	add func(int64)
}

func (c countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.add(int64(n))
	return n, err
}

// apply writes one layer's visible entries.
func (f *flattener) apply(ctx context.Context, l v1.Layer, add func(int64)) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(countingReader{ctx: ctx, r: rc, add: add}, 256<<10)
	r, closeR, err := decompress(br)
	if err != nil {
		return err
	}
	defer closeR()
	if err := f.entries(tar.NewReader(r)); err != nil {
		return err
	}
	// The rest of the compressed blob (a gzip trailer, a tar's padding)
	// still goes through the digest check; it is read compressed, so a
	// blob that would expand without end after its tar costs nothing.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	if len(f.orphans) > 0 {
		return f.adopt(ctx, l)
	}
	return nil
}

// adopt reads layer l again for the files its orphaned hard links name,
// and writes each under its first link's name, the other links to that.
// The second read is not progress: its bytes were counted once.
func (f *flattener) adopt(ctx context.Context, l v1.Layer) error {
	want := map[string][]*tar.Header{}
	for _, h := range f.orphans {
		t := key(h.Linkname)
		want[t] = append(want[t], h)
	}
	f.orphans = nil
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(countingReader{ctx: ctx, r: rc, add: func(int64) {}}, 256<<10)
	r, closeR, err := decompress(br)
	if err != nil {
		return err
	}
	defer closeR()
	tr := tar.NewReader(r)
	for len(want) > 0 {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: layer tar: %v", ErrInvalid, err)
		}
		k := key(hdr.Name)
		links := want[k]
		if len(links) == 0 || (hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeGNUSparse) {
			continue
		}
		delete(want, k)
		h := *hdr
		h.Name, h.Typeflag, h.Format = links[0].Name, tar.TypeReg, tar.FormatUnknown
		if err := f.write(&h, tr); err != nil {
			return err
		}
		first := key(links[0].Name)
		for _, l := range links[1:] {
			l.Linkname = links[0].Name
			f.pending[first] = append(f.pending[first], l)
		}
		if err := f.flush(first); err != nil {
			return err
		}
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	// Links whose target was no file go out as they are, and fail.
	for _, links := range want {
		for _, l := range links {
			if err := f.tw.WriteHeader(l); err != nil {
				return err
			}
		}
	}
	return nil
}

// decompress reads a layer as gzip, zstd or plain tar, by its first bytes
// (media types are not always right about it).
func decompress(br *bufio.Reader) (io.Reader, func(), error) {
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: gzip: %v", ErrInvalid, err)
		}
		// One member: what follows it is padding the digest covers.
		zr.Multistream(false)
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: zstd: %v", ErrInvalid, err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// entries copies the visible entries of one layer's tar.
func (f *flattener) entries(tr *tar.Reader) error {
	f.layer, f.layerOpaque = map[string]mark{}, map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: layer tar: %v", ErrInvalid, err)
		}
		if hdr.Typeflag == tar.TypeGNUSparse {
			// The reader fills a sparse file's holes: a plain file here.
			hdr.Typeflag = tar.TypeReg
		}
		k := key(hdr.Name)
		dir, base := path.Split(k)
		switch {
		case base == opaqueWhiteout:
			f.layerOpaque[key(dir)] = true
			continue
		case strings.HasPrefix(base, whiteoutPrefix):
			f.layer[key(dir+base[len(whiteoutPrefix):])] = markWhiteout
			continue
		}
		if f.hidden(k) {
			if err := f.hiddenEntry(hdr, k, tr); err != nil {
				return err
			}
			if _, ok := f.layer[k]; !ok && hdr.Typeflag != tar.TypeDir {
				f.layer[k] = markHidden
			}
			continue
		}
		hdr.Format = tar.FormatUnknown // the writer picks one that holds it
		if hdr.Typeflag == tar.TypeLink {
			f.layer[k] = markFile
			t := key(hdr.Linkname)
			switch m, ok := f.layer[t]; {
			case !ok:
				// In a lower layer: written after its target.
				f.pending[t] = append(f.pending[t], hdr)
				continue
			case m == markHidden:
				// Earlier in this layer, but replaced or deleted above:
				// its data is gone by; a second read of the layer
				// fetches it (orphans).
				f.orphans = append(f.orphans, hdr)
				continue
			}
		} else if hdr.Typeflag == tar.TypeDir {
			f.layer[k] = markDir
		} else {
			f.layer[k] = markFile
		}
		if err := f.write(hdr, tr); err != nil {
			return err
		}
		if err := f.flush(k); err != nil {
			return err
		}
	}
	for k, m := range f.layer {
		// A layer above that made a directory of k lets lower entries
		// under it show, unless this layer deleted or replaced it.
		if old, ok := f.seen[k]; !ok || old == markDir && m != markDir {
			f.seen[k] = m
		}
	}
	for k := range f.layerOpaque {
		f.opaque[k] = true
	}
	return nil
}

// hiddenEntry handles an entry a layer above hides: skipped, unless hard
// links above wait for it, which then get its data under the first link's
// name.
func (f *flattener) hiddenEntry(hdr *tar.Header, k string, tr *tar.Reader) error {
	links := f.pending[k]
	if len(links) == 0 || hdr.Typeflag == tar.TypeDir {
		return nil
	}
	delete(f.pending, k)
	first := links[0]
	h := *hdr
	h.Name, h.Format = first.Name, tar.FormatUnknown
	if h.Typeflag == tar.TypeLink {
		// A link to a link: keep waiting, under the new name, for the
		// file this one names.
		t := key(h.Linkname)
		f.pending[t] = append(f.pending[t], &h)
	} else if err := f.write(&h, tr); err != nil {
		return err
	}
	fk := key(first.Name)
	for _, l := range links[1:] {
		l.Linkname = first.Name
		f.pending[fk] = append(f.pending[fk], l)
	}
	if h.Typeflag != tar.TypeLink {
		return f.flush(fk)
	}
	return nil
}

// write copies one entry.
func (f *flattener) write(hdr *tar.Header, tr *tar.Reader) error {
	if err := f.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %q: %w", hdr.Name, err)
	}
	if hdr.Typeflag == tar.TypeReg {
		var w io.Writer = f.tw
		var passwd *bytes.Buffer
		if f.passwd == nil && key(hdr.Name) == "etc/passwd" && hdr.Size <= maxPasswd {
			passwd = &bytes.Buffer{}
			w = io.MultiWriter(f.tw, passwd)
		}
		if _, err := io.Copy(w, tr); err != nil {
			if errors.Is(err, tar.ErrWriteTooLong) {
				return fmt.Errorf("%w: %q is longer than its header says", ErrInvalid, hdr.Name)
			}
			return err
		}
		if passwd != nil {
			f.passwd = passwd.Bytes()
		}
	}
	return nil
}

// flush writes the hard links that waited for k, and those that waited
// for them.
func (f *flattener) flush(k string) error {
	links := f.pending[k]
	delete(f.pending, k)
	for _, l := range links {
		if err := f.tw.WriteHeader(l); err != nil {
			return fmt.Errorf("write %q: %w", l.Name, err)
		}
		if err := f.flush(key(l.Name)); err != nil {
			return err
		}
	}
	return nil
}
