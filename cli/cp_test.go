package cli

import (
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/api"
)

func TestSplitRef(t *testing.T) {
	for _, tc := range []struct {
		in, distro, path string
		ok               bool
	}{
		{"debian:/etc/passwd", "debian", "/etc/passwd", true},
		{"a.b-c_1:/", "a.b-c_1", "/", true},
		{"debian:etc", "", "", false}, // a relative distro path: a local name
		{"./debian:/etc", "", "", false},
		{"/abs/local", "", "", false},
		{"C:/Users/me", "C", "/Users/me", true}, // looks like a distro; documented
		{"-x:/a", "", "", false},
		{"", "", "", false},
	} {
		d, p, ok := splitRef(tc.in)
		if ok != tc.ok || d != tc.distro || p != tc.path {
			t.Errorf("splitRef(%q) = %q %q %v", tc.in, d, p, ok)
		}
	}
}

func FuzzSplitRef(f *testing.F) {
	for _, s := range []string{"debian:/etc", "x:", ":/a", "a:b:/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, p, ok := splitRef(s)
		if !ok {
			return
		}
		if d+":"+p != s || p == "" || p[0] != '/' || d == "" {
			t.Fatalf("splitRef(%q) = %q %q", s, d, p)
		}
	})
}

func TestLsLine(t *testing.T) {
	for _, tc := range []struct {
		typ, mode, want string
	}{
		{api.FileTypeFile, "0644", "-rw-r--r--"},
		{api.FileTypeDir, "1777", "drwxrwxrwt"},
		{api.FileTypeFile, "4755", "-rwsr-xr-x"},
		{api.FileTypeFile, "2644", "-rw-r-Sr--"},
		{api.FileTypeSymlink, "0777", "lrwxrwxrwx"},
		{api.FileTypeDir, "1700", "drwx-----T"},
	} {
		if got := lsMode(tc.typ, tc.mode); got != tc.want {
			t.Errorf("lsMode(%s, %s) = %s, want %s", tc.typ, tc.mode, got, tc.want)
		}
	}
	line := lsLine(api.FileInfo{Name: "evil\x1b[2Jname", Type: api.FileTypeSymlink, Mode: "0777", User: "r\x07", Group: "g", Target: "\u202etxt.exe"})
	for _, bad := range []string{"\x1b", "\x07", "\u202e"} {
		if strings.Contains(line, bad) {
			t.Errorf("lsLine printed %q raw: %q", bad, line)
		}
	}
}
