//go:build linux

package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/subsys-dev/subsys/api"
)

// TestVersion2GuestUnpack imports version 2 distros the way a host that
// cannot extract trees does (Windows): SUBSYS_GUEST_UNPACK=1 has the VM
// format the new disk and extract the tarball into it. Debian's tarball
// arrives whole (files, owners, modes, seen from inside), with the
// operation's progress and result; the distro exports and converts as
// usual; a hostile or oversized tarball fails and leaves nothing behind.
func TestVersion2GuestUnpack(t *testing.T) {
	tarball := debianTarball(t)
	s := startV2ServerWith(t, "SUBSYS_GUEST_UNPACK=1")
	body, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	// 1 GiB: a small disk, so that the conversion below is quick.
	var op api.Operation
	if st, raw := s.api("POST", "/distros?name=deb&version=2&size=1073741824", body, &op); st != http.StatusAccepted {
		t.Fatalf("import: %d %s", st, raw)
	}
	op = s.waitOp(op.ID)
	if op.Progress.Total != int64(len(body)) || op.Progress.Done != op.Progress.Total {
		t.Errorf("progress %+v, want the tarball's %d bytes", op.Progress, len(body))
	}
	if r := op.Result; r == nil || r.Entries < 1000 || r.Bytes < 50<<20 {
		t.Errorf("result %+v, want Debian's thousands of entries", op.Result)
	}
	if !strings.Contains(s.log.String(), "version 2 disk made in the VM") {
		t.Errorf("the server log does not show the disk made in the VM")
	}
	d := s.getDistro("deb")
	if d.Version != 2 || d.State != "Stopped" {
		t.Errorf("distro %+v", d)
	}
	if _, err := os.Stat(filepath.Join(d.Location, "rootfs")); err == nil {
		t.Errorf("a version 1 tree was made on the host")
	}
	for _, c := range []struct{ script, want string }{
		{". /etc/os-release; echo $ID $VERSION_CODENAME", "debian bookworm\n"},
		{"stat -c '%U:%G %a' /usr/bin/passwd /var/mail /tmp /etc/shadow", "root:root 4755\nroot:mail 2775\nroot:root 1777\nroot:shadow 640\n"},
		{"test -L /bin && readlink /bin", "usr/bin\n"},
		{"awk '$2==\"/\"{print $3}' /proc/mounts | tail -1", "ext4\n"},
		{"test -d /lost+found && echo ok", "ok\n"},
		{"useradd -m bob && su bob -c 'touch ~/f && stat -c %U ~/f'", "bob\n"},
	} {
		if res := s.sh("deb", c.script); res.Stdout != c.want || res.ExitCode != 0 {
			t.Errorf("%s: code %d out %q err %q, want %q", c.script, res.ExitCode, res.Stdout, res.Stderr, c.want)
		}
	}
	if st, raw := s.api("POST", "/distros/deb/terminate", nil, nil); st >= 300 {
		t.Fatalf("terminate: %d %s", st, raw)
	}

	// Exported as usual, by the VM's agent: the tarball holds what the
	// guest extracted, and bob's file.
	st, raw := s.api("POST", "/distros/deb/export?format=tar", nil, nil)
	if st != 200 {
		t.Fatalf("export: %d %s", st, raw)
	}
	names := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		names[strings.TrimPrefix(h.Name, "./")] = h
	}
	if h := names["usr/bin/passwd"]; h == nil || h.Mode&0o4000 == 0 {
		t.Errorf("export: usr/bin/passwd %+v, want setuid", h)
	}
	if names["home/bob/f"] == nil {
		t.Errorf("export lacks home/bob/f")
	}

	// Converted to version 1 as usual: the host's tree has the owners.
	if st, raw := s.api("POST", "/distros/deb/set-version", map[string]int{"version": 1}, &op); st != http.StatusAccepted {
		t.Fatalf("set-version 1: %d %s", st, raw)
	}
	s.waitOp(op.ID)
	var fi os.FileInfo
	if fi, err = os.Stat(filepath.Join(d.Location, "rootfs", "usr", "bin", "passwd")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("after conversion to version 1: passwd %v, %v", fi, err)
	}

	// Failures leave nothing: no distro, no image, no staging.
	distrosDir := filepath.Join(s.data, "distros")
	before, _ := os.ReadDir(distrosDir)
	hostile := tarOf(t,
		tarEntry{h: tar.Header{Typeflag: tar.TypeReg, Name: "./etc/ok", Mode: 0o644}, body: "ok\n"},
		tarEntry{h: tar.Header{Typeflag: tar.TypeSymlink, Name: "./etc/out", Linkname: "/"}},
		tarEntry{h: tar.Header{Typeflag: tar.TypeReg, Name: "./etc/out/escaped", Mode: 0o644}, body: "x\n"},
	)
	for _, c := range []struct {
		name, query string
		body        []byte
		want        string
	}{
		{"hostile", "", hostile, "unsafe"},
		{"too-small", "&size=67108864", body, "larger size"},
	} {
		// The upload's answer is the failure when it came while the body
		// was read; else the operation fails.
		st, raw := s.api("POST", "/distros?name="+c.name+"&version=2"+c.query, c.body, nil)
		msg := string(raw)
		switch {
		case st == http.StatusAccepted:
			var op api.Operation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			for op.Status == api.StatusRunning || op.Status == "" {
				s.api("GET", "/operations/"+op.ID+"?wait=5", nil, &op)
			}
			if op.Status != api.StatusFailure {
				t.Errorf("import %s: %s, want a failure", c.name, op.Status)
			}
			msg = op.Error
		case st < 400:
			t.Errorf("import %s: %d %s, want a failure", c.name, st, raw)
		}
		if !strings.Contains(msg, c.want) {
			t.Errorf("import %s: %q, want a failure saying %q", c.name, msg, c.want)
		}
		if st, _ := s.api("GET", "/distros/"+c.name, nil, nil); st != http.StatusNotFound {
			t.Errorf("after the failed import %s: GET = %d, want 404", c.name, st)
		}
	}
	after, _ := os.ReadDir(distrosDir)
	if len(after) != len(before) {
		t.Errorf("distros directory: %d entries before the failed imports, %d after", len(before), len(after))
	}
	tmp, _ := os.ReadDir(filepath.Join(s.data, "tmp"))
	for _, e := range tmp {
		t.Errorf("left in tmp/: %s", e.Name())
	}
}
