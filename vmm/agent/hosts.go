package agent

import (
	"bytes"
	"slices"
	"strings"
)

// patchHosts returns /etc/hosts content that resolves localhost and the
// distro's hostname, keeping the distro's other lines. The 127.0.1.1 line is
// the agent's (Debian's convention for the machine's own name) and is rewritten
// each start, so a renamed distro does not keep its old name. The result of
// patching a patched file is the same file.
func patchHosts(old []byte, hostname string) []byte {
	own := "127.0.1.1\t" + hostname
	var out bytes.Buffer
	wroteOwn := false
	lines := strings.Split(string(old), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	hasLocalhost := false
	for _, l := range lines {
		if f := hostsFields(l); len(f) > 1 && f[0] == "127.0.0.1" && slices.Contains(f[1:], "localhost") {
			hasLocalhost = true
			break
		}
	}
	if !hasLocalhost {
		out.WriteString("127.0.0.1\tlocalhost\n")
		out.WriteString(own + "\n")
		wroteOwn = true
	}
	for _, l := range lines {
		f := hostsFields(l)
		if len(f) > 0 && f[0] == "127.0.1.1" {
			continue
		}
		out.WriteString(l + "\n")
		if !wroteOwn && len(f) > 1 && f[0] == "127.0.0.1" && slices.Contains(f[1:], "localhost") {
			out.WriteString(own + "\n")
			wroteOwn = true
		}
	}
	return out.Bytes()
}

// hostsFields splits a hosts line into fields, without its comment.
func hostsFields(line string) []string {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	return strings.Fields(line)
}
