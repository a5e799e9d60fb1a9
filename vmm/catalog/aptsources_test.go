package catalog

import "testing"

func TestDebianMirror(t *testing.T) {
	for _, tc := range []struct {
		name   string
		text   string
		deb822 bool
		want   string
	}{
		{"deb822", "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n", true, "http://deb.debian.org/debian"},
		{"deb822 security first", "URIs: http://security.debian.org/debian-security\n\nURIs: https://mirror.example/debian/\n", true, "https://mirror.example/debian"},
		{"one-line", "# comment\ndeb-src http://src.example/debian bookworm main\ndeb http://ftp.example.org/debian bookworm main\n", false, "http://ftp.example.org/debian"},
		{"one-line with options", "deb [arch=amd64 signed-by=/k.gpg] http://proxy:3142/debian bookworm main\n", false, "http://proxy:3142/debian"},
		{"no Debian archive", "deb https://packages.cloud.google.com/apt cloud-sdk main\n", false, ""},
		{"not a URL", "deb cdrom:[Debian]/ bookworm main\n", false, ""},
		{"empty", "", true, ""},
	} {
		if got := debianMirror(tc.text, tc.deb822); got != tc.want {
			t.Errorf("%s: debianMirror = %q, want %q", tc.name, got, tc.want)
		}
	}
}
