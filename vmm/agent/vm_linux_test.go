package agent

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests serve the utility VM's ops in the test process, against a
// "running" distro whose agent is a plain Server on a unix socket and whose
// root is a directory: no VM, no mounts. vmm/qemu's TestAgentInVM runs the
// real thing.

// vmFixture is a VM agent's Server with one running distro, "d1".
type vmFixture struct {
	c    *Client
	h    *vmHost
	root string // d1's root
	sock string // d1's agent socket
}

func newVMFixture(t *testing.T) *vmFixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := testLogger(t)
	// A short directory: the socket's path must fit in a sockaddr.
	dir, err := os.MkdirTemp("", "vm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &vmFixture{root: filepath.Join(dir, "root"), sock: filepath.Join(dir, "agent.sock")}
	if err := os.MkdirAll(filepath.Join(f.root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(f.root, "etc", "debian_version"), []byte("12.0\n"), 0o644)

	// The distro's agent.
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	dsrv := NewServer(ServerConfig{Logger: log})
	dserved := make(chan struct{})
	go func() { dsrv.Serve(ctx, ln); close(dserved) }()
	t.Cleanup(func() { cancel(); <-dserved; dsrv.Close() })

	f.h = newVMHost(log)
	f.h.distros["d1"] = &vmDistro{id: "d1", root: f.root, sock: f.sock, dev: "/dev/sdz", done: make(chan struct{})}
	srv := NewServer(ServerConfig{Logger: log})
	srv.vm = f.h
	a, b := socketPair(t)
	served := make(chan struct{})
	go func() { srv.ServeConn(ctx, a); close(served) }()
	t.Cleanup(func() { cancel(); <-served; srv.Close() })
	if f.c, err = NewClient(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.c.Close() })
	return f
}

func TestVMDistrosAndOpen(t *testing.T) {
	f := newVMFixture(t)
	ctx := context.Background()
	ids, err := f.c.Distros(ctx)
	if err != nil || !slices.Equal(ids, []string{"d1"}) {
		t.Fatalf("Distros = %q, %v", ids, err)
	}
	info, err := f.c.Hello(ctx)
	if err != nil || info.Kernel == "" {
		t.Errorf("hello = %+v, %v; want a kernel release", info, err)
	}

	conn, err := f.c.OpenDistro(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	dc, err := NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	dinfo, err := dc.Hello(ctx)
	if err != nil || dinfo.PID != os.Getpid() {
		t.Errorf("distro hello through the VM agent = %+v, %v", dinfo, err)
	}
	// Closing the distro's client ends that connection, not the VM's.
	dc.Close()
	if _, err := f.c.Distros(ctx); err != nil {
		t.Errorf("VM agent after the distro connection closed: %v", err)
	}

	if _, err := f.c.OpenDistro(ctx, "d2"); !errors.Is(err, ErrDistroNotRunning) {
		t.Errorf("OpenDistro(d2) = %v, want ErrDistroNotRunning", err)
	}
	if _, err := f.c.OpenDistro(ctx, "../d1"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("OpenDistro(../d1) = %v, want ErrBadRequest", err)
	}
	if err := f.c.StopDistro(ctx, "d2"); err != nil {
		t.Errorf("StopDistro of a distro not running: %v", err)
	}
	if err := f.c.StartDistro(ctx, DistroRequest{ID: "a/b", Hostname: "h"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("StartDistro(a/b) = %v, want ErrBadRequest", err)
	}
	// A running distro: no disk is looked for.
	if err := f.c.StartDistro(ctx, DistroRequest{ID: "d1", Hostname: "h", DiskTarget: 9}); err != nil {
		t.Errorf("StartDistro of a running distro: %v", err)
	}
}

// TestVMOpenSplice checks the splice byte for byte: what the distro's end
// sends at once arrives (even when it came with the reply header), and
// half-closes pass both ways.
func TestVMOpenSplice(t *testing.T) {
	f := newVMFixture(t)
	// Swap the distro's agent for a peer that greets, then echoes until end
	// of file, then closes.
	dir, err := os.MkdirTemp("", "vm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "echo.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	echoed := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			echoed <- err
			return
		}
		defer c.Close()
		if _, err := c.Write([]byte("greeting\n")); err != nil {
			echoed <- err
			return
		}
		_, err = io.Copy(c, c)
		echoed <- err
	}()
	f.h.mu.Lock()
	f.h.distros["d1"].sock = sock
	f.h.mu.Unlock()

	conn, err := f.c.OpenDistro(context.Background(), "d1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	conn.Close() // our half only: the echo comes back
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "greeting\nping" {
		t.Errorf("read %q, %v; want %q", got, err, "greeting\nping")
	}
	if err := <-echoed; err != nil {
		t.Errorf("echo peer: %v", err)
	}
}

func TestVMExportTree(t *testing.T) {
	f := newVMFixture(t)
	ctx := context.Background()
	rc, err := f.c.ExportTree(ctx, DistroRequest{ID: "d1"}, "tar")
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimPrefix(h.Name, "./"))
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Errorf("after the tar: %v", err)
	}
	rc.Close()
	if !slices.Contains(names, "etc/debian_version") {
		t.Errorf("export has %q, want etc/debian_version", names)
	}

	if _, err := f.c.ExportTree(ctx, DistroRequest{ID: "d1"}, "zip"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("export as zip: %v, want ErrBadRequest", err)
	}

	// A failure once the archive has begun reaches the reader as an error,
	// not as a short archive.
	if err := os.RemoveAll(f.root); err != nil {
		t.Fatal(err)
	}
	rc, err = f.c.ExportTree(ctx, DistroRequest{ID: "d1"}, "tar")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	var re *RemoteError
	if !errors.As(err, &re) {
		t.Errorf("export of a missing root: %v, want a RemoteError", err)
	}
}

// TestVMExportClose checks that closing the reader early ends the export.
func TestVMExportClose(t *testing.T) {
	f := newVMFixture(t)
	// Enough data that the export outlasts yamux's window.
	big := make([]byte, 4<<20)
	if err := os.WriteFile(filepath.Join(f.root, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rc, err := f.c.ExportTree(ctx, DistroRequest{ID: "d1"}, "tar")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	// The export's id lock is released once it has stopped: a second
	// export gets through.
	rc, err = f.c.ExportTree(ctx, DistroRequest{ID: "d1"}, "tar")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Errorf("second export: %v", err)
	}
	rc.Close()
}
