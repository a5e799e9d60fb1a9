package vmm

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hashicorp/yamux"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// newTestManager opens a Manager on a fresh data directory with a real store.
func newTestManager(t testing.TB, backends map[int]Backend) (*Manager, *store.DB, string) {
	t.Helper()
	ctx := context.Background()
	data := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(data, "subsys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := New(ctx, Config{Store: db, DataDir: data, Backends: backends, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, db, data
}

// tinyTar is an uncompressed tarball of a few files, directories and a symlink.
func tinyTar(t testing.TB, extra ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := append([]*tar.Header{
		{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755},
		{Typeflag: tar.TypeDir, Name: "./etc/", Mode: 0o755},
		{Typeflag: tar.TypeReg, Name: "./etc/passwd", Mode: 0o644, Size: 30},
		{Typeflag: tar.TypeDir, Name: "./bin/", Mode: 0o755},
		{Typeflag: tar.TypeSymlink, Name: "./bin/sh", Linkname: "busybox", Mode: 0o777},
	}, extra...)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fakeAgent serves the agent protocol's hello over one end of a pipe,
// reporting protocol, and returns a client on the other end.
func fakeAgent(t testing.TB, protocol int) *agent.Client {
	t.Helper()
	cs, as := net.Pipe()
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	sess, err := yamux.Server(as, cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			st, err := sess.Accept()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				var req struct {
					Op string `json:"op"`
				}
				line, err := bufio.NewReader(st).ReadBytes('\n')
				if err != nil || json.Unmarshal(line, &req) != nil {
					return
				}
				rep := map[string]any{"ok": true, "version": "test", "protocol": protocol, "pid": 1, "hostname": "fake"}
				if req.Op != "hello" {
					rep = map[string]any{"ok": false, "error": map[string]string{"code": "unsupported", "message": "fake agent"}}
				}
				b, _ := json.Marshal(rep)
				st.Write(append(b, '\n'))
			}()
		}
	}()
	c, err := agent.NewClient(cs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); sess.Close() })
	return c
}

// fakeBackend runs no process: a "running" distro is a fake agent. Connect
// adopts what running holds (as after a server restart); Start starts a fake
// agent speaking protocol.
type fakeBackend struct {
	t        testing.TB
	protocol int

	mu       sync.Mutex
	running  map[string]*agent.Client // by distro id
	forgot   []string
	lastSpec Spec // of the last Start
}

func newFakeBackend(t testing.TB) *fakeBackend {
	return &fakeBackend{t: t, protocol: agent.ProtocolVersion, running: map[string]*agent.Client{}}
}

func (f *fakeBackend) Start(ctx context.Context, s Spec) (*agent.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastSpec = s
	if c := f.running[s.ID]; c != nil {
		return c, nil
	}
	c := fakeAgent(f.t, f.protocol)
	f.running[s.ID] = c
	return c, nil
}

func (f *fakeBackend) Connect(ctx context.Context, s Spec) (*agent.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.running[s.ID]; c != nil {
		return c, nil
	}
	return nil, ErrNotRunning
}

func (f *fakeBackend) Stop(ctx context.Context, s Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.running[s.ID]; c != nil {
		c.Close()
		delete(f.running, s.ID)
	}
	return nil
}

// Forget records that the distro was forgotten.
func (f *fakeBackend) Forget(ctx context.Context, s Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgot = append(f.forgot, s.ID)
	return nil
}

var _ Forgetter = (*fakeBackend)(nil)
