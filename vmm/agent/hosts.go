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

// managedMark ends the /etc/hosts lines subsys writes for Hosts entries, so
// the next start replaces them rather than adding more.
const managedMark = "# subsys"

// addHosts returns hosts (an /etc/hosts, already patched) with one line per
// entry of extra, name order, replacing the lines an earlier start wrote and
// any other line that names one of them. Names and addresses that could
// break the file (whitespace, '#', a newline) are left out.
func addHosts(hosts []byte, extra map[string]string) []byte {
	if len(extra) == 0 {
		return hosts
	}
	names := make([]string, 0, len(extra))
	for name, addr := range extra {
		if validHostsWord(name) && validHostsWord(addr) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out bytes.Buffer
	lines := strings.Split(string(hosts), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	for _, l := range lines {
		f := hostsFields(l)
		if strings.HasSuffix(l, managedMark) || len(f) > 1 && slices.ContainsFunc(f[1:], func(n string) bool { return slices.Contains(names, n) }) {
			continue
		}
		out.WriteString(l + "\n")
	}
	for _, name := range names {
		out.WriteString(extra[name] + "\t" + name + "\t" + managedMark + "\n")
	}
	return out.Bytes()
}

// validHostsWord says whether s can be one field of an /etc/hosts line:
// printable ASCII, no space (of any kind) and no '#'.
func validHostsWord(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}
