package vmmtest_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/vmmtest"
)

// TestServeAgent: the agent answers hello and runs a program as the
// current user, without root.
func TestServeAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, fmt.Appendf(nil, "me:x:%d:%d::/:/bin/sh\n", os.Getuid(), os.Getgid()), 0o644); err != nil {
		t.Fatal(err)
	}
	c, a := vmmtest.ServeAgent(t, agent.ServerConfig{PasswdFile: passwd, GroupFile: os.DevNull})
	if info, err := c.Hello(ctx); err != nil || info.PID != os.Getpid() {
		t.Errorf("hello = %+v, %v; want this process's pid", info, err)
	}
	p, err := c.Exec(ctx, agent.ExecRequest{Argv: []string{"id", "-u"}, User: "me"})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(p.Stdout())
	if st, err := p.Wait(); err != nil || st.Code != 0 || string(out) != fmt.Sprintf("%d\n", os.Getuid()) {
		t.Errorf("id -u = %q, %+v, %v", out, st, err)
	}
	a.Stop()
	<-c.Done()
	if _, err := a.Connect(); !errors.Is(err, agent.ErrDisconnected) {
		t.Errorf("Connect after Stop = %v, want ErrDisconnected", err)
	}
}

// TestBackend: Start, Connect, Stop as the real backend answers them.
func TestBackend(t *testing.T) {
	ctx := context.Background()
	b := vmmtest.NewBackend(vmmtest.Config{})
	defer b.Close()
	s := vmm.Spec{ID: "id1", Name: "one", RootFS: filepath.Join(t.TempDir(), "missing")}
	if _, err := b.Start(ctx, s); err == nil {
		t.Errorf("Start without a root succeeded")
	}
	if _, err := b.Connect(ctx, s); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("Connect to a stopped distro = %v, want ErrNotRunning", err)
	}
	s.RootFS = t.TempDir()
	c1, err := b.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := b.Start(ctx, s) // adopts
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if b.Starts() != 1 {
		t.Errorf("a second Start started another agent (%d)", b.Starts())
	}
	if err := b.Stop(ctx, s); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c1.Done():
	case <-time.After(30 * time.Second):
		t.Error("a client is still connected after Stop")
	}
	if len(b.Running()) != 0 {
		t.Errorf("running after Stop: %q", b.Running())
	}
	if err := b.Stop(ctx, s); err != nil {
		t.Errorf("Stop of a stopped distro = %v", err)
	}

	want := errors.New("no")
	b = vmmtest.NewBackend(vmmtest.Config{BeforeStart: func(context.Context, vmm.Spec) error { return want }})
	if _, err := b.Start(ctx, s); !errors.Is(err, want) {
		t.Errorf("Start with a failing BeforeStart = %v", err)
	}
}

// TestTarball: the accounts name the current user, every entry is owned by
// it, parents come before their files.
func TestTarball(t *testing.T) {
	tb, err := vmmtest.Tarball(vmmtest.File{Name: "usr/bin/hi", Body: "#!/bin/sh\necho hi\n", Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(tb))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != os.Getuid() || h.Gid != os.Getgid() {
			t.Errorf("%s is owned by %d:%d", h.Name, h.Uid, h.Gid)
		}
		if h.Name == "./etc/passwd" {
			body, _ := io.ReadAll(tr)
			if want := fmt.Sprintf("root:x:%d:%d:", os.Getuid(), os.Getgid()); !bytes.HasPrefix(body, []byte(want)) {
				t.Errorf("passwd = %q, want it to start %q", body, want)
			}
		}
		if h.Name == "./usr/bin/hi" && h.Mode != 0o755 {
			t.Errorf("mode of hi = %o", h.Mode)
		}
	}
	want := []string{"./", "./etc/", "./etc/passwd", "./etc/group", "./usr/", "./usr/bin/", "./usr/bin/hi"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("entries = %q, want %q", names, want)
	}
	if _, err := vmmtest.Tarball(vmmtest.File{Name: "../escape"}); err == nil {
		t.Error("Tarball took a path outside the root")
	}
}
