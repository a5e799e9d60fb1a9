package archive

import (
	"errors"
	"testing"
)

func TestParseFormat(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Format
		err  error
	}{
		{"tar", Tar, nil},
		{"tar.gz", TarGz, nil},
		{"tgz", TarGz, nil},
		{"TAR.ZST", TarZst, nil},
		{".tar.xz", TarXz, nil},
		{"zstd", TarZst, nil},
		{"", "", ErrFormat},
		{"zip", "", ErrFormat},
		{"tar.bz2", "", ErrFormat},
	} {
		got, err := ParseFormat(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("ParseFormat(%q) = %q, %v, want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestCleanName(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		bad      bool
	}{
		{"x", "x", false},
		{"./x", "x", false},
		{"./usr/bin/", "usr/bin", false},
		{"./", "", false},
		{".", "", false},
		{"a//b/./c/", "a/b/c", false},
		{"././a", "a", false},
		{"a/.../b", "a/.../b", false}, // "..." is an ordinary name
		{"..x/y..", "..x/y..", false},
		{"/etc/passwd", "", true},
		{"//etc", "", true},
		{"../x", "", true},
		{"a/../../x", "", true},
		{"a/..", "", true},
		{"./..", "", true},
		{"a/b\x00c", "", true},
		{"", "", true},
	} {
		got, why := cleanName(tt.in)
		if got != tt.want || (why != "") != tt.bad {
			t.Errorf("cleanName(%q) = %q, %q, want %q, bad=%v", tt.in, got, why, tt.want, tt.bad)
		}
	}
}

func TestCheckSymlinkTarget(t *testing.T) {
	for _, tt := range []struct {
		name, target string
		bad          bool
	}{
		{"lib", "usr/lib", false},
		{"etc/foo", "/etc/alternatives/foo", false}, // absolute: the distro's own root
		{"a/b", "../c", false},
		{"a/b", "..", false},
		{"a/b/c", "../../x", false},
		{"a/b", "../../x", true},
		{"a/b", "../../../etc", true},
		{"l", "..", true},
		{"l", "./../x", true},
		{"a/b/c", "x/../../../..", true},
		{"a/b", "", true},
		{"a/b", "x\x00y", true},
		{"a/b", "/x\x00", true},
	} {
		why := checkSymlinkTarget(tt.name, tt.target)
		if (why != "") != tt.bad {
			t.Errorf("checkSymlinkTarget(%q, %q) = %q, want bad=%v", tt.name, tt.target, why, tt.bad)
		}
	}
}

func TestIsTarHeader(t *testing.T) {
	b := make([]byte, blockSize)
	if isTarHeader(b) {
		t.Errorf("isTarHeader(zero block) = true, want false")
	}
	copy(b, "hello")
	if isTarHeader(b) {
		t.Errorf("isTarHeader(text) = true, want false")
	}
}
