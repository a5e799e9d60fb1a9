package hcs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/subsys-dev/subsys/internal/testutil"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// fakeDriver is the Host Compute Service for Linux tests. Its systems'
// VM agent speaks the agent protocol on the wire (yamux, JSON header and
// reply lines) and answers the VM ops from a model of the guest: which
// LUNs are attached, which distros run on which. open-distro hands the
// stream to a real agent.Server, so a distro's agent is the real one. It
// records every call, and can be told to fail the ways a real VM does.
type fakeDriver struct {
	t *testing.T

	mu      sync.Mutex
	systems map[string]*fakeSystem
	calls   []string
	nextRT  int
	// Failure knobs.
	agentSilent    bool // the guest's agent never answers (boot timeout)
	failAttach     bool // SCSI adds fail
	ignorePowerOff bool // the agent says yes to power-off and does nothing
	hangShutdown   bool // HCS shutdown never returns
	preflight      error
	listErr        error // List fails (no Host Compute Service)
}

func newFakeDriver(t *testing.T) *fakeDriver {
	d := &fakeDriver{t: t, systems: map[string]*fakeSystem{}}
	t.Cleanup(func() {
		d.mu.Lock()
		systems := slices.Collect(mapValues(d.systems))
		d.mu.Unlock()
		for _, s := range systems {
			s.stop()
		}
	})
	return d
}

func mapValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

func (d *fakeDriver) record(format string, args ...any) {
	d.mu.Lock()
	d.calls = append(d.calls, fmt.Sprintf(format, args...))
	d.mu.Unlock()
}

// callsWith returns the recorded calls that start with prefix.
func (d *fakeDriver) callsWith(prefix string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, c := range d.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func (d *fakeDriver) Preflight() error { return d.preflight }

func (d *fakeDriver) Create(ctx context.Context, id string, doc []byte) (System, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.systems[id]; ok && s.state() != "Stopped" {
		return nil, fmt.Errorf("compute system %s already exists", id)
	}
	var cs computeSystem
	if err := json.Unmarshal(doc, &cs); err != nil || cs.Owner != Owner || cs.VirtualMachine.Chipset.LinuxKernelDirect == nil {
		return nil, fmt.Errorf("bad create document: %v: %s", err, doc)
	}
	d.calls = append(d.calls, "create "+id)
	d.nextRT++
	s := &fakeSystem{d: d, id: id, runtimeID: fmt.Sprintf("00000000-0000-4000-8000-%012d", d.nextRT), doc: doc,
		st: "Created", done: make(chan struct{}), attached: map[int]string{}, distros: map[string]int{},
		srv: agent.NewServer(agent.ServerConfig{Logger: slog.New(slog.DiscardHandler)})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.consoleR, s.consoleW = io.Pipe()
	d.systems[id] = s
	return &fakeHandle{s: s}, nil
}

func (d *fakeDriver) Open(ctx context.Context, id string) (System, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.systems[id]
	if !ok {
		return nil, ErrNoSystem
	}
	d.calls = append(d.calls, "open "+id)
	return &fakeHandle{s: s}, nil
}

func (d *fakeDriver) List(ctx context.Context, query []byte) ([]SystemInfo, error) {
	var q systemQuery
	if err := json.Unmarshal(query, &q); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.listErr != nil {
		return nil, d.listErr
	}
	var out []SystemInfo
	for _, s := range d.systems {
		if slices.Contains(q.Owners, Owner) {
			out = append(out, SystemInfo{ID: s.id, Owner: Owner, State: s.state(), RuntimeID: s.runtimeID})
		}
	}
	return out, nil
}

func (d *fakeDriver) CreateVHDX(ctx context.Context, path string, size int64) error {
	d.record("create-vhdx %s %d", path, size)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Truncate(size)
}

func (d *fakeDriver) ResizeVHDX(ctx context.Context, path string, size int64) error {
	d.record("resize-vhdx %s %d", path, size)
	return os.Truncate(path, size)
}

func (d *fakeDriver) GrantVMAccess(ctx context.Context, id, path string) error {
	d.record("grant %s %s", id, path)
	return nil
}

func (d *fakeDriver) DialAgent(ctx context.Context, runtimeID string, port uint32) (net.Conn, error) {
	if port != AgentVsockPort {
		return nil, fmt.Errorf("dial port %d: connection refused", port)
	}
	d.mu.Lock()
	var s *fakeSystem
	for _, x := range d.systems {
		if x.runtimeID == runtimeID {
			s = x
		}
	}
	silent := d.agentSilent
	d.mu.Unlock()
	if s == nil || s.state() != "Running" {
		return nil, errors.New("dial: no such VM")
	}
	here, there, err := testutil.NewSocketPair()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.conns = append(s.conns, there)
	s.mu.Unlock()
	if !silent {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(there)
		}()
	}
	return here, nil
}

func (d *fakeDriver) OpenConsole(ctx context.Context, pipe string) (io.ReadCloser, error) {
	if !strings.HasPrefix(pipe, `\\.\pipe\subsys-`) {
		return nil, fmt.Errorf("console pipe %q", pipe)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.systems {
		if s.state() != "Stopped" {
			return s.consoleR, nil
		}
	}
	return nil, errors.New("no console")
}

// fakeSystem is one compute system and the guest in it.
type fakeSystem struct {
	d         *fakeDriver
	id        string
	runtimeID string
	doc       []byte
	srv       *agent.Server // the distros' agent
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // serving goroutines
	consoleR  *io.PipeReader
	consoleW  *io.PipeWriter

	mu       sync.Mutex
	st       string
	done     chan struct{}
	attached map[int]string // LUN → path
	distros  map[string]int // running distro → LUN
	conns    []net.Conn     // the guest's ends of agent connections
	diskOps  []string
	// listeners are what the guest's listeners op reports; its dial op
	// connects on the host (the fake guest's loopback is the host's).
	listeners []agent.Listener
}

func (s *fakeSystem) state() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// stop ends the guest: the system is Stopped, its agent connections and
// console closed.
func (s *fakeSystem) stop() {
	s.mu.Lock()
	if s.st == "Stopped" {
		s.mu.Unlock()
		return
	}
	s.st = "Stopped"
	close(s.done)
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.Close()
	}
	s.consoleW.Close()
	s.srv.Close()
	s.wg.Wait()
}

// dropAgent closes every agent connection, as a guest agent that crashed
// would; the system keeps running.
func (s *fakeSystem) dropAgent() {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// fakeHandle is one handle on a fakeSystem.
type fakeHandle struct {
	s      *fakeSystem
	closed bool
}

func (h *fakeHandle) Start(ctx context.Context) error {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != "Created" {
		return fmt.Errorf("start: system is %s", s.st)
	}
	s.st = "Running"
	s.d.record("start %s", s.id)
	go fmt.Fprintf(s.consoleW, "Linux version 5.15.fake-microsoft-standard-WSL2\nsubsys-agent: starting\n")
	return nil
}

func (h *fakeHandle) Modify(ctx context.Context, req []byte) error {
	s := h.s
	var m struct {
		ResourcePath string
		RequestType  string
		Settings     json.RawMessage
	}
	if err := json.Unmarshal(req, &m); err != nil {
		return err
	}
	s.d.record("modify %s %s", m.RequestType, m.ResourcePath)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != "Running" {
		return errors.New("modify: system is not running")
	}
	var lun int
	if _, err := fmt.Sscanf(m.ResourcePath, "VirtualMachine/Devices/Scsi/0/Attachments/%d", &lun); err == nil {
		switch m.RequestType {
		case "Add":
			s.d.mu.Lock()
			fail := s.d.failAttach
			s.d.mu.Unlock()
			if fail {
				return errors.New("HcsModifyComputeSystem: The virtual machine could not be started because a required feature is not installed (0x80370102)")
			}
			if _, ok := s.attached[lun]; ok {
				return fmt.Errorf("LUN %d is in use", lun)
			}
			var a attachment
			if err := json.Unmarshal(m.Settings, &a); err != nil || a.Type != "VirtualDisk" {
				return fmt.Errorf("bad attachment %s", m.Settings)
			}
			s.attached[lun] = a.Path
		case "Remove":
			if _, ok := s.attached[lun]; !ok {
				return fmt.Errorf("LUN %d is not attached", lun)
			}
			for id, t := range s.distros {
				if t == lun {
					return fmt.Errorf("LUN %d is mounted by distro %s", lun, id)
				}
			}
			delete(s.attached, lun)
		}
		return nil
	}
	if m.ResourcePath == "VirtualMachine/ComputeTopology/Memory/SizeInMB" && m.RequestType == "Update" {
		return nil
	}
	return fmt.Errorf("unknown modify request %s", req)
}

func (h *fakeHandle) Properties(ctx context.Context, query []byte) ([]byte, error) {
	s := h.s
	p := properties{ID: s.id, State: s.state(), RuntimeID: s.runtimeID}
	if len(query) > 0 {
		p.Statistics = &statistics{Uptime100ns: 30 * 1e7, Memory: &memoryStats{MemoryUsagePrivateWorkingSetBytes: 300 << 20}}
	}
	return json.Marshal(p)
}

func (h *fakeHandle) Shutdown(ctx context.Context) error {
	h.s.d.record("shutdown %s", h.s.id)
	h.s.d.mu.Lock()
	hang := h.s.d.hangShutdown
	h.s.d.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	h.s.stop()
	return nil
}

func (h *fakeHandle) Terminate(ctx context.Context) error {
	h.s.d.record("terminate %s", h.s.id)
	h.s.stop()
	return nil
}

func (h *fakeHandle) Wait(ctx context.Context) error {
	select {
	case <-h.s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *fakeHandle) Close() error { return nil }

// fakeRequest is the part of the agent's request header the fake reads.
type fakeRequest struct {
	Op         string `json:"op"`
	ID         string `json:"id"`
	Hostname   string `json:"hostname"`
	DiskTarget int    `json:"disk_target"`
	Action     string `json:"action"`
	Size       int64  `json:"size"`
	Net        string `json:"net"`
	Address    string `json:"address"`
}

// serve is the guest's VM agent on one connection.
func (s *fakeSystem) serve(conn net.Conn) {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.MaxStreamWindowSize = 2 << 20
	sess, err := yamux.Server(conn, cfg)
	if err != nil {
		conn.Close()
		return
	}
	defer sess.Close()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(st)
		}()
	}
}

func (s *fakeSystem) handle(st *yamux.Stream) {
	defer st.Close()
	br := bufio.NewReader(st)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return
	}
	var req fakeRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return
	}
	reply := func(v map[string]any) {
		if v == nil {
			v = map[string]any{}
		}
		v["ok"] = true
		b, _ := json.Marshal(v)
		st.Write(append(b, '\n'))
	}
	fail := func(code, msg string) {
		b, _ := json.Marshal(map[string]any{"ok": false, "error": map[string]string{"code": code, "message": msg}})
		st.Write(append(b, '\n'))
	}
	s.mu.Lock()
	switch req.Op {
	case "hello":
		s.mu.Unlock()
		reply(map[string]any{"version": "fake", "protocol": agent.ProtocolVersion, "pid": 1, "kernel": "5.15.fake-microsoft-standard-WSL2"})
	case "start-distro":
		_, ok := s.attached[req.DiskTarget]
		if ok {
			s.distros[req.ID] = req.DiskTarget
		}
		s.mu.Unlock()
		if !ok {
			fail("not_found", fmt.Sprintf("no disk at SCSI target %d", req.DiskTarget))
			return
		}
		reply(nil)
	case "stop-distro":
		delete(s.distros, req.ID)
		s.mu.Unlock()
		reply(nil)
	case "list-distros":
		ids := slices.Sorted(func(yield func(string) bool) {
			for id := range s.distros {
				if !yield(id) {
					return
				}
			}
		})
		s.mu.Unlock()
		reply(map[string]any{"distros": ids})
	case "open-distro":
		_, ok := s.distros[req.ID]
		s.mu.Unlock()
		if !ok {
			fail("distro_not_running", "distro "+req.ID+" is not running")
			return
		}
		reply(nil)
		s.srv.ServeConn(s.ctx, &readerConn{Stream: st, r: br})
	case "disk":
		_, ok := s.attached[req.DiskTarget]
		s.diskOps = append(s.diskOps, fmt.Sprintf("%s %s %d %d", req.Action, req.ID, req.DiskTarget, req.Size))
		s.mu.Unlock()
		if !ok {
			fail("not_found", fmt.Sprintf("no disk at SCSI target %d", req.DiskTarget))
			return
		}
		reply(map[string]any{"disk": agent.DiskInfo{SizeBytes: req.Size, FreeBytes: req.Size / 2, AvailableBytes: req.Size / 2}})
	case "memory":
		s.mu.Unlock()
		reply(map[string]any{"memory": agent.MemoryInfo{TotalBytes: 4 << 30, UsedBytes: 1 << 30, CachedBytes: 1 << 29, AvailableBytes: 3 << 30}, "reclaimed": 1 << 20})
	case "network-info":
		s.mu.Unlock()
		reply(map[string]any{"addresses": []string{"172.20.0.2/20"}})
	case "listeners":
		ls := slices.Clone(s.listeners)
		s.mu.Unlock()
		reply(map[string]any{"listeners": ls})
	case "dial":
		s.mu.Unlock()
		if req.Net != "tcp" {
			fail("unsupported", "fake dials tcp only")
			return
		}
		c, err := net.Dial("tcp", req.Address)
		if err != nil {
			fail("not_found", err.Error())
			return
		}
		defer c.Close()
		reply(nil)
		done := make(chan struct{})
		go func() {
			io.Copy(c, br)
			c.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		io.Copy(st, c)
		st.Close()
		<-done
	case "power-off":
		s.distros = map[string]int{}
		s.mu.Unlock()
		reply(nil)
		s.d.record("power-off %s", s.id)
		s.d.mu.Lock()
		ignore := s.d.ignorePowerOff
		s.d.mu.Unlock()
		if !ignore {
			// The guest powers off once the host has its answer.
			io.Copy(io.Discard, br)
			go s.stop()
		}
	default:
		s.mu.Unlock()
		fail("unsupported", "unknown op "+req.Op)
	}
}

// readerConn is a stream whose header was read through r.
type readerConn struct {
	*yamux.Stream
	r *bufio.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// waitGone waits until the fake system id is Stopped.
func (d *fakeDriver) system(id string) *fakeSystem {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.systems[id]
}

var _ = time.Second
