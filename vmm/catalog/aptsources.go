package catalog

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// aptSources are where the host's apt sources are, in apt's order.
var aptSources = func() []string {
	out := []string{"/etc/apt/sources.list"}
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		sort.Strings(m)
		out = append(out, m...)
	}
	return out
}

// HostDebianMirror returns the Debian mirror of the host's apt sources (a
// proxy or local mirror an administrator set up is what builds should use
// too), or "" when they have none: mmdebstrap then uses deb.debian.org.
func HostDebianMirror() string {
	for _, p := range aptSources() {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if m := debianMirror(string(b), strings.HasSuffix(p, ".sources")); m != "" {
			return m
		}
	}
	return ""
}

// debianMirror finds the first Debian archive URI in an apt sources file:
// one-line ("deb [opts] URI suite comp…") or deb822 (URIs: fields). The
// security and ports archives are not the main archive.
func debianMirror(text string, deb822 bool) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var uris []string
		if deb822 {
			if v, ok := strings.CutPrefix(line, "URIs:"); ok {
				uris = strings.Fields(v)
			}
		} else if f := strings.Fields(line); len(f) >= 3 && f[0] == "deb" {
			i := 1
			if strings.HasPrefix(f[1], "[") {
				for i < len(f) && !strings.HasSuffix(f[i], "]") {
					i++
				}
				i++
			}
			if i < len(f) {
				uris = f[i : i+1]
			}
		}
		for _, u := range uris {
			u = strings.TrimSuffix(u, "/")
			if isMirrorURL(u) && strings.HasSuffix(u, "/debian") {
				return u
			}
		}
	}
	return ""
}

func isMirrorURL(u string) bool {
	return (strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "file:///")) && !strings.ContainsAny(u, " \t")
}
