//go:build linux

package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// compressWith runs a compressor (xz, bzip2) over data, as a user would.
func compressWith(t *testing.T, data []byte, argv ...string) []byte {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v (make deps installs xz-utils and bzip2)", argv, err)
	}
	return out
}

// xzBomb patches the first block header of a real xz file to ask for a 4 GiB
// dictionary (LZMA2 dictionary code 40) and fixes its CRC32, as an attacker
// would: a valid-looking file of a few hundred bytes.
func xzBomb(t *testing.T, x []byte) []byte {
	t.Helper()
	b := bytes.Clone(x)
	const streamHeader = 12
	hdrLen := (int(b[streamHeader]) + 1) * 4
	hdr := b[streamHeader : streamHeader+hdrLen]
	i := bytes.Index(hdr[2:], []byte{0x21, 0x01}) // LZMA2, one property byte
	if i < 0 {
		t.Fatal("no LZMA2 filter in the first block header")
	}
	hdr[2+i+2] = 40
	binary.LittleEndian.PutUint32(hdr[hdrLen-4:], crc32.ChecksumIEEE(hdr[:hdrLen-4]))
	return b
}

// vmHWM is the peak resident memory of a process, in KiB.
func vmHWM(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestHostileArchives: through the real API, what a hostile or odd archive
// gets: an xz bomb is refused as invalid_archive without the server growing by
// its dictionary, unsupported compressions are named, an archive with no
// entries is refused, and bzip2 — common for root file systems — imports.
func TestHostileArchives(t *testing.T) {
	s := startServer(t, "")
	tarball := tinyTar(t)

	// Control: the same xz file unpatched imports, so the refusal below is
	// about the dictionary and nothing else.
	x := compressWith(t, tarball, "xz", "-c", "-6")
	s.importTar("xzok", x)

	bomb := xzBomb(t, x)
	before := vmHWM(t, s.cmd.Process.Pid)
	var e apiErr
	st, raw := s.api("POST", "/distros?name=bomb", bomb, &e)
	if st != 400 || e.Error.Code != "invalid_archive" || !strings.Contains(e.Error.Message, "dictionary") {
		t.Errorf("xz bomb (%d bytes): %d %s, want 400 invalid_archive about the dictionary", len(bomb), st, raw)
	}
	if grew := vmHWM(t, s.cmd.Process.Pid) - before; grew > 256<<10 {
		t.Errorf("the server's peak memory grew by %d MiB on a %d-byte archive", grew>>10, len(bomb))
	}

	for _, c := range []struct {
		name, mention string
		body          []byte
	}{
		{"lz4", "lz4-compressed archives are not supported", append([]byte{0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7}, make([]byte, 300)...)},
		{"zeros", "holds no files", make([]byte, 10240)},
	} {
		var e apiErr
		st, raw := s.api("POST", "/distros?name="+c.name, c.body, &e)
		if st != 400 || e.Error.Code != "invalid_archive" || !strings.Contains(e.Error.Message, c.mention) {
			t.Errorf("%s: %d %s, want 400 invalid_archive mentioning %q", c.name, st, raw, c.mention)
		}
	}

	s.importTar("bz", compressWith(t, tarball, "bzip2", "-c"))
	if r := s.sh("bz", "cat /etc/passwd"); !strings.Contains(r.Stdout, "root:") {
		t.Errorf("the bzip2 import has no /etc/passwd: %+v", r)
	}
	var list []distro
	s.api("GET", "/distros", nil, &list)
	if len(list) != 2 {
		t.Errorf("distros after the hostile imports: %+v, want xzok and bz", list)
	}
}

// tinyTar is tinyRootfs uncompressed.
func tinyTar(t *testing.T) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tinyRootfs(t)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
