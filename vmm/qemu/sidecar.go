package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A sidecar is a program a VM runs beside QEMU: passt, the network, and
// virtiofsd, the host's files over virtio-fs. Each ends by itself when QEMU
// lets go of its socket; the VM's reaper waits for it then (and kills one
// that lingers), so a sidecar never outlives its VM for long.
type sidecar struct {
	name string
	cmd  *exec.Cmd
	log  string        // the file its output goes to
	done chan struct{} // closed once the program has exited and been reaped
	err  error         // how it exited, set before done is closed
}

// sidecarLinger is how long a sidecar may run on after QEMU has exited
// before the reaper kills it.
const sidecarLinger = 3 * time.Second

// startSidecar starts bin with args, handing it files as its fds 3, 4, ….
// Its output goes to runDir/<name>.log, a file and not a pipe: the sidecar
// outlives this server with its VM, and a write to a pipe whose reader is
// gone would kill it (SIGPIPE).
func startSidecar(runDir, name, bin string, args []string, files ...*os.File) (*sidecar, error) {
	s := &sidecar{name: name, log: filepath.Join(runDir, name+".log"), done: make(chan struct{})}
	out, err := os.OpenFile(s.log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer out.Close() // the sidecar has its copy
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.ExtraFiles = files
	s.cmd.SysProcAttr = sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: starting %s: %w", name, bin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// Pid is the sidecar's process id.
func (s *sidecar) Pid() int { return s.cmd.Process.Pid }

// stop waits up to linger for the sidecar to exit by itself, then kills it,
// and returns once it is reaped.
func (s *sidecar) stop(linger time.Duration) {
	t := time.NewTimer(linger)
	defer t.Stop()
	select {
	case <-s.done:
		return
	case <-t.C:
	}
	s.cmd.Process.Kill()
	<-s.done
}

// exited says whether the sidecar has exited.
func (s *sidecar) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// diagnostics is the sidecar's exit and last output, for an error message.
func (s *sidecar) diagnostics() string {
	st := "running"
	if s.exited() {
		st = fmt.Sprintf("exited (%v)", s.err)
	}
	return fmt.Sprintf("; %s %s, its output (%s): %q", s.name, st, s.log, s.output(1024))
}

// output is the last n bytes the sidecar wrote.
func (s *sidecar) output(n int64) []byte {
	f, err := os.Open(s.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return b
}

// startPasst starts passt on one end of a socket pair and returns the other
// end, which QEMU's -netdev stream uses as its fd 3. passt hands the guest
// UserNet's addresses (DHCP, NDP), maps the gateway's address to the host's
// loopback, forwards DNS sent to UserNet's DNS addresses to the host's
// resolvers, and drops to the user nobody once set up. It exits when QEMU
// closes its end.
func startPasst(cfg Config) (*sidecar, *os.File, error) {
	ours, theirs, err := socketPair("passt", "qemu-net")
	if err != nil {
		return nil, nil, fmt.Errorf("passt: socketpair: %w", err)
	}
	defer ours.Close()
	args := []string{"--foreground", "--stderr", "--quiet", "--fd", "3",
		"--address", UserNet.Address4[:strings.IndexByte(UserNet.Address4, '/')], "--netmask", UserNet.Address4[strings.IndexByte(UserNet.Address4, '/')+1:], "--gateway", UserNet.Gateway4,
		"--address", UserNet.Address6, "--gateway", UserNet.Host6,
		"--dns-forward", UserNet.DNS4, "--dns-forward", UserNet.DNS6,
		"--dns", UserNet.DNS4, "--dns", UserNet.DNS6,
		"--tcp-ports", "none", "--udp-ports", "none"}
	s, err := startSidecar(cfg.RunDir, "passt", cfg.Passt, args, ours)
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return s, theirs, nil
}

// startVirtiofsd starts virtiofsd on cfg.VirtiofsSocket for cfg.HostShare
// and waits until its socket is there for QEMU to connect to. The daemon runs
// as root, keeps owners and modes as they are, and ends when QEMU
// disconnects. Its sandbox is chroot: the share is the host's root, which
// its namespace sandbox cannot pivot_root into (EBUSY), and a chroot to "/"
// confines nothing the share does not already give.
func startVirtiofsd(ctx context.Context, cfg Config) (*sidecar, error) {
	sock := cfg.VirtiofsSocket()
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("virtiofsd: removing stale socket: %w", err)
	}
	args := []string{"--socket-path=" + sock, "-o", "source=" + cfg.HostShare,
		// cache=auto: the guest keeps what it looked up for a second, which is
		// what makes a walk over a tree fast (cache=none revalidates every
		// name); announce_submounts gives each host file system its own
		// device number in the guest, as 9p's multidevs=remap does.
		"-o", "cache=auto", "-o", "xattr", "-o", "announce_submounts", "-o", "sandbox=chroot",
		// Its own --rlimit-nofile cannot go past the hard limit it
		// inherits; the server sets both limits itself, below.
		"--rlimit-nofile=0"}
	s, err := startSidecar(cfg.RunDir, "virtiofsd", cfg.Virtiofsd, args)
	if err != nil {
		return nil, err
	}
	// Right after exec: before the guest can look anything up, which is
	// what costs descriptors.
	if err := setFileLimit(s.Pid(), uint64(cfg.virtiofsdFileLimit())); err != nil {
		s.cmd.Process.Kill()
		<-s.done
		return nil, fmt.Errorf("virtiofsd: %w", err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(sock); err == nil {
			os.WriteFile(cfg.VirtiofsdPIDFile(), []byte(strconv.Itoa(s.Pid())+"\n"), 0o600)
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("virtiofsd exited before it listened%s", s.diagnostics())
		case <-ctx.Done():
			s.cmd.Process.Kill()
			<-s.done
			return nil, fmt.Errorf("virtiofsd: waiting for its socket: %w", context.Cause(ctx))
		case <-tick.C:
			// virtiofsd offers no sign of readiness but its socket.
		}
	}
}
