package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoVM is returned by Adopt when no QEMU of the configuration runs.
var ErrNoVM = errors.New("qemu: no VM is running")

// Adopt takes over a QEMU that an earlier server started with cfg and left
// running (the VM outlives the server): it finds the process through the pid
// file in cfg.RunDir, makes sure it is that VM and not a process that reused
// the pid, and connects the console and QMP. The console ring starts empty:
// what the guest printed before is gone with the earlier server. It returns
// ErrNoVM when no such QEMU runs, after removing the stale files.
func Adopt(ctx context.Context, cfg Config) (*VM, error) {
	cfg = cfg.withDefaults()
	pid, err := readPIDFile(cfg.PIDFile())
	if err != nil {
		removeStale(cfg)
		return nil, fmt.Errorf("%w: %v", ErrNoVM, err)
	}
	// The pid file could name a process that reused the pid: only a QEMU
	// whose command line names our QMP socket is ours.
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(cmdline, []byte("path="+optEscape(cfg.QMPSocket())+",")) {
		removeStale(cfg)
		return nil, fmt.Errorf("%w: pid %d is not this VM's QEMU", ErrNoVM, pid)
	}
	// What the VM was started with, as far as the status reports it.
	cfg.Network = bytes.Contains(cmdline, []byte("netdev=net0"))
	if bytes.Contains(cmdline, []byte("stream,id=net0")) {
		cfg.Passt = "passt"
	}
	if bytes.Contains(cmdline, []byte("vhost-user-fs-pci")) {
		cfg.Virtiofsd, cfg.HostShare = "virtiofsd", "/"
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		removeStale(cfg)
		return nil, fmt.Errorf("%w: pidfd_open %d: %v", ErrNoVM, pid, err)
	}
	v := &VM{
		cfg:     cfg,
		proc:    &adoptedProcess{pid: pid, fd: fd},
		console: newRing(ConsoleLimit),
		stderr:  newRing(stderrLimit),
		exited:  make(chan struct{}),
		started: make(chan struct{}),
		done:    make(chan struct{}),
	}
	// The reaper starts only once the connections are made: a failed
	// adoption leaves nothing running. A QEMU that exits meanwhile breaks
	// the connections, or ctx ends the dial.
	if err := v.attach(ctx); err != nil {
		v.conMu.Lock()
		if v.qmp != nil {
			v.qmp.Close()
		}
		if v.consoleC != nil {
			v.consoleC.Close()
			<-v.consoleEnd
		}
		v.conMu.Unlock()
		if v.eventsEnd != nil {
			<-v.eventsEnd
		}
		unix.Close(fd)
		// The VM is not ours to kill: it may be healthy and merely slow.
		return nil, fmt.Errorf("qemu: adopting pid %d: %w", pid, err)
	}
	go v.reap()
	v.startOnce.Do(func() { close(v.started) })
	return v, nil
}

// removeStale removes the sockets and pid file of a VM that is gone.
func removeStale(cfg Config) {
	for _, p := range []string{cfg.QMPSocket(), cfg.ConsoleSocket(), cfg.AgentSocket(), cfg.PIDFile()} {
		os.Remove(p)
	}
}

func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s: %q is not a pid", path, bytes.TrimSpace(b))
	}
	return pid, nil
}

// adoptedProcess is a QEMU started by an earlier server: not our child, so it
// is watched through a pidfd, which also makes Kill safe against pid reuse.
type adoptedProcess struct {
	pid int
	fd  int
}

func (p *adoptedProcess) Pid() int { return p.pid }

func (p *adoptedProcess) Kill() error {
	return unix.PidfdSendSignal(p.fd, unix.SIGKILL, nil, 0)
}

// Wait polls the pidfd, which becomes readable when the process exits. The
// exit status belongs to its parent (init, after the earlier server died),
// so it reports none.
func (p *adoptedProcess) Wait() error {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("waiting for pid %d: %w", p.pid, err)
		}
		if fds[0].Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			unix.Close(p.fd)
			return nil
		}
	}
}
