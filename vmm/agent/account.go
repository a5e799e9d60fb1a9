package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// account is who a process runs as, resolved from the distro's own /etc/passwd
// and /etc/group. The agent parses them itself: os/user would need cgo (and so
// load the distro's NSS libraries into a root process) to do what it does well.
type account struct {
	Name   string
	UID    int
	GID    int
	Groups []int // supplementary groups, the primary group first
	Home   string
	Shell  string
}

type passwdEntry struct {
	name       string
	uid, gid   int
	home, shel string
}

type groupEntry struct {
	name    string
	gid     int
	members []string
}

// records yields the colon-separated fields of each line of a passwd(5) or
// group(5) file that has exactly n fields and a name. Malformed lines, comments
// and NIS "+"/"-" lines are skipped, as glibc does.
func records(data []byte, n int) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != n || f[0] == "" {
			continue
		}
		out = append(out, f)
	}
	return out
}

// parsePasswd reads passwd(5) lines.
func parsePasswd(data []byte) []passwdEntry {
	var out []passwdEntry
	for _, f := range records(data, 7) {
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5], shel: f[6]})
	}
	return out
}

// parseGroup reads group(5) lines.
func parseGroup(data []byte) []groupEntry {
	var out []groupEntry
	for _, f := range records(data, 4) {
		gid, err := parseID(f[2])
		if err != nil {
			continue
		}
		var members []string
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		out = append(out, groupEntry{name: f[0], gid: gid, members: members})
	}
	return out
}

// parseID accepts the decimal ids Linux can hold (uid_t is 32 bits, and -1 is
// reserved).
func parseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, fmt.Errorf("bad id %q", s)
	}
	return int(n), nil
}

// lookupAccount finds spec (a name or a numeric uid; empty means root) in the
// passwd and group files' contents. Root and numeric uids work even when
// missing from passwd, so a distro with a broken /etc/passwd stays usable.
func lookupAccount(passwd, group []byte, spec string) (account, error) {
	if spec == "" {
		spec = "root"
	}
	users := parsePasswd(passwd)
	var found *passwdEntry
	for i := range users {
		if users[i].name == spec {
			found = &users[i]
			break
		}
	}
	uid, numErr := parseID(spec)
	if found == nil && numErr == nil {
		for i := range users {
			if users[i].uid == uid {
				found = &users[i]
				break
			}
		}
	}
	var a account
	switch {
	case found != nil:
		a = account{Name: found.name, UID: found.uid, GID: found.gid, Home: found.home, Shell: found.shel}
	case spec == "root":
		a = account{Name: "root", Home: "/root"}
	case numErr == nil:
		a = account{UID: uid, GID: uid, Home: "/"}
	default:
		return account{}, fmt.Errorf("%w: %q is not in /etc/passwd", ErrUserNotFound, spec)
	}
	if a.Home == "" {
		a.Home = "/"
	}
	if a.Shell == "" {
		a.Shell = "/bin/sh"
	}
	a.Groups = []int{a.GID}
	if a.Name != "" {
		for _, g := range parseGroup(group) {
			if g.gid == a.GID || !slices.Contains(g.members, a.Name) || slices.Contains(a.Groups, g.gid) {
				continue
			}
			a.Groups = append(a.Groups, g.gid)
		}
	}
	return a, nil
}

// defaultPath is the PATH of every process; Debian's root PATH, so that
// programs in sbin are found for root and users alike.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// buildEnv is the default environment for a, overlaid with extra (later entries
// win, order of first appearance kept).
func buildEnv(a account, tty bool, extra []string) ([]string, error) {
	env := []string{
		"PATH=" + defaultPath,
		"HOME=" + a.Home,
		"USER=" + a.Name,
		"LOGNAME=" + a.Name,
		"SHELL=" + a.Shell,
	}
	if a.Name == "" {
		env[2], env[3] = "USER="+strconv.Itoa(a.UID), "LOGNAME="+strconv.Itoa(a.UID)
	}
	if tty {
		env = append(env, "TERM=xterm-256color")
	}
	index := make(map[string]int, len(env)+len(extra))
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	for _, kv := range extra {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsRune(kv, 0) {
			return nil, fmt.Errorf("%w: env entry %q is not KEY=value", ErrBadRequest, kv)
		}
		if i, ok := index[k]; ok {
			env[i] = kv
			continue
		}
		index[k] = len(env)
		env = append(env, kv)
	}
	return env, nil
}

// lookEnv returns the value of key in env.
func lookEnv(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
