package agent

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/subsys-dev/subsys/internal/testenv"
	"github.com/subsys-dev/subsys/vmm/disk"
)

// These tests drive format-disk's and unpack-tree's steps without a VM and
// without loop devices: mke2fs on an image file, extraction into a
// directory through the same frames the host sends. vmm/qemu's
// TestGuestDiskInVM runs the ops on a hot-plugged disk in the real VM.

// sbFields are the superblock fields that make two empty distro disks
// alike: feature flags, inode size, reserved blocks, block size, default
// mount options and error behaviour (offsets in struct ext4_super_block).
func sbFields(t *testing.T, path string) map[string]uint32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, disk.SuperblockOffset+disk.SuperblockSize)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	if _, err := disk.ParseSuperblock(b); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	sb := b[disk.SuperblockOffset:]
	le32 := func(off int) uint32 { return binary.LittleEndian.Uint32(sb[off:]) }
	le16 := func(off int) uint32 { return uint32(binary.LittleEndian.Uint16(sb[off:])) }
	return map[string]uint32{
		"blocks":          le32(0x04),
		"reserved blocks": le32(0x08),
		"log block size":  le32(0x18),
		"errors":          le16(0x3C),
		"inode size":      le16(0x58),
		"compat":          le32(0x5C),
		"incompat":        le32(0x60),
		"ro_compat":       le32(0x64),
		"default mount":   le32(0x100),
		"journal inode":   le32(0xE0),
	}
}

// TestFormatDeviceMatchesHostImage: the agent's mke2fs makes the file
// system vmm/disk makes on the host, and refuses a disk that is not blank.
func TestFormatDeviceMatchesHostImage(t *testing.T) {
	testenv.RequireCommand(t, "mke2fs", "apt-get install e2fsprogs")
	ctx := context.Background()
	dir := t.TempDir()
	const size = 1 << 30
	guest := filepath.Join(dir, "guest.img")
	if err := os.WriteFile(guest, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(guest, size); err != nil {
		t.Fatal(err)
	}
	if err := formatDevice(ctx, guest, filepath.Join(dir, "run")); err != nil {
		t.Fatal(err)
	}
	host := filepath.Join(dir, "host.img")
	if err := disk.Create(ctx, host, t.TempDir(), size, disk.Options{}); err != nil {
		t.Fatal(err)
	}
	g, h := sbFields(t, guest), sbFields(t, host)
	for k, v := range h {
		if g[k] != v {
			t.Errorf("%s: 0x%x in the guest's image, 0x%x in the host's", k, g[k], v)
		}
	}
	if g["reserved blocks"] != 0 || g["inode size"] != 256 {
		t.Errorf("guest image: %v", g)
	}
	// The configuration file is gone; the sparse image took little.
	if ents, _ := os.ReadDir(filepath.Join(dir, "run")); len(ents) != 0 {
		t.Errorf("left in the scratch directory: %v", ents)
	}
	if _, alloc, err := disk.Usage(guest); err != nil || alloc > 64<<20 {
		t.Errorf("the formatted image allocates %d bytes (%v), want a sparse file", alloc, err)
	}

	// Formatted now: a second format is refused, the disk unchanged.
	before, _ := os.ReadFile(guest)
	err := formatDevice(ctx, guest, filepath.Join(dir, "run"))
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "not blank") {
		t.Errorf("format of a formatted disk: %v, want ErrBadRequest (not blank)", err)
	}
	if after, _ := os.ReadFile(guest); !bytes.Equal(before, after) {
		t.Error("the refused format changed the disk")
	}
	// Too small to be a distro's disk.
	small := filepath.Join(dir, "small.img")
	os.WriteFile(small, nil, 0o600)
	os.Truncate(small, 1<<20)
	if err := formatDevice(ctx, small, filepath.Join(dir, "run")); !errors.Is(err, ErrBadRequest) {
		t.Errorf("format of a 1 MiB disk: %v, want ErrBadRequest", err)
	}
}

// tarOf makes a tarball of hdrs, each regular file holding its name.
func tarOf(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		var body []byte
		if h.Typeflag == tar.TypeReg {
			body = []byte(h.Name)
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// unpackVia sends src as the host does (sendData) and extracts it as the
// agent does (unpackInto).
func unpackVia(t *testing.T, src io.Reader, dir string) (UnpackResult, error, sendResult) {
	t.Helper()
	pr, pw := io.Pipe()
	sent := make(chan sendResult, 1)
	go func() {
		s := sendData(pw, src)
		pw.Close()
		sent <- s
	}()
	res, err := unpackInto(context.Background(), pr, dir)
	pr.CloseWithError(errors.New("done reading"))
	return res, err, <-sent
}

func TestUnpackInto(t *testing.T) {
	requireRoot(t)
	good := tarOf(t,
		&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 0},
		&tar.Header{Name: "home/u/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, Gid: 1000},
		&tar.Header{Name: "home/u/f", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 1000, Gid: 1000},
		&tar.Header{Name: "bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin"},
	)
	t.Run("extracts with owners and modes", func(t *testing.T) {
		// As mke2fs leaves a new file system: lost+found only.
		dir := t.TempDir()
		os.Mkdir(filepath.Join(dir, "lost+found"), 0o700)
		res, err, s := unpackVia(t, bytes.NewReader(good), dir)
		if err != nil || s.readErr != nil || s.writeErr != nil {
			t.Fatalf("unpack: %v, %+v", err, s)
		}
		if res.Files != 5 || res.Bytes == 0 {
			t.Errorf("result %+v, want 5 files and some bytes", res)
		}
		st, err := os.Lstat(filepath.Join(dir, "home/u/f"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&os.ModeSetuid == 0 || st.Mode().Perm() != 0o755 {
			t.Errorf("home/u/f mode %v", st.Mode())
		}
		if l, err := os.Readlink(filepath.Join(dir, "bin")); err != nil || l != "usr/bin" {
			t.Errorf("bin -> %q, %v", l, err)
		}
		if st, err := os.Lstat(filepath.Join(dir, "lost+found")); err != nil || !st.IsDir() {
			t.Errorf("lost+found after the extraction: %v", err)
		}
	})
	t.Run("an entry outside the disk", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		os.Mkdir(dir, 0o755)
		bad := tarOf(t, &tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644})
		_, err, _ := unpackVia(t, bytes.NewReader(bad), dir)
		if errorCode(err) != codeBadArchive {
			t.Errorf("unsafe entry: %v (code %s), want %s", err, errorCode(err), codeBadArchive)
		}
		if _, err := os.Lstat(filepath.Join(filepath.Dir(dir), "escape")); err == nil {
			t.Error("the entry was written outside the destination")
		}
	})
	t.Run("a cut stream is no archive", func(t *testing.T) {
		// Frames for the first half, then the connection ends without a
		// data-end: the tarball's cut falls mid-file.
		var frames bytes.Buffer
		writeFrame(&frames, frameData, good[:len(good)/2])
		_, err := unpackInto(context.Background(), &frames, t.TempDir())
		if err == nil {
			t.Fatal("a cut stream was accepted")
		}
		// The same bytes with a data-end are a whole, if short, stream:
		// the tarball itself is then what is cut.
		frames.Reset()
		writeFrame(&frames, frameData, good)
		writeFrame(&frames, frameDataEnd, []byte(`{}`))
		if _, err := unpackInto(context.Background(), &frames, t.TempDir()); err != nil {
			t.Errorf("the whole stream: %v", err)
		}
	})
	t.Run("the host's source fails", func(t *testing.T) {
		srcErr := errors.New("upload cut")
		src := io.MultiReader(bytes.NewReader(good[:1024]), &errReader{srcErr})
		_, err, s := unpackVia(t, src, t.TempDir())
		if !errors.Is(s.readErr, srcErr) {
			t.Errorf("sender: %+v, want the source's error", s)
		}
		if !errors.Is(err, errHostSource) || !strings.Contains(err.Error(), "upload cut") {
			t.Errorf("agent: %v, want errHostSource naming the cause", err)
		}
	})
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// TestGuestDiskOpsRefuse: the ops refuse a bad target before touching
// anything.
func TestGuestDiskOpsRefuse(t *testing.T) {
	f := newVMFixture(t)
	ctx := context.Background()
	for _, target := range []int{-1, MaxDiskTarget + 1} {
		if err := f.c.FormatDisk(ctx, target); !errors.Is(err, ErrBadRequest) {
			t.Errorf("FormatDisk(%d): %v, want ErrBadRequest", target, err)
		}
		if _, err := f.c.UnpackTree(ctx, target, bytes.NewReader(nil)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("UnpackTree(%d): %v, want ErrBadRequest", target, err)
		}
	}
}

// TestUnpackTreeEarlyAnswer: an agent that fails while the host is still
// sending (a bad entry near the start of a large tarball) answers at once
// and stops reading; UnpackTree returns its error rather than blocking on
// the stream's full window.
func TestUnpackTreeEarlyAnswer(t *testing.T) {
	a, b := socketPair(t)
	sess, err := yamux.Server(a, yamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		var req request
		readHeader(bufio.NewReader(st), &req)
		writeHeader(st, reply{OK: true})
		end, _ := json.Marshal(dataEnd{Error: &wireError{Code: codeBadArchive, Message: "bad entry"}})
		writeFrame(st, frameDataEnd, end)
		// The stream stays open, unread, until the client closes it.
		<-sess.CloseChan()
	}()
	c, err := NewClient(b)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Many times the stream's window, so the sender blocks.
	_, err = c.UnpackTree(ctx, 1, bytes.NewReader(make([]byte, 64<<20)))
	if !errors.Is(err, ErrBadArchive) || ctx.Err() != nil {
		t.Errorf("UnpackTree: %v (ctx %v), want the agent's ErrBadArchive at once", err, ctx.Err())
	}
	c.Close()
	sess.Close()
	<-served
}
