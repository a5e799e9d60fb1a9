package qemu

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/subsys-dev/subsys/vmm/agent"
)

// virtiofsd keeps a descriptor open for every host file the guest holds in
// its dentry and inode caches. Past its limit on open files, lookups fail
// (EMFILE). The backend bounds it: virtiofsd gets the most the host allows
// (fs.nr_open, a million on most hosts), and watchHostFiles counts its
// descriptors and has the guest let go of its cached host files
// (HostFilesTrim) when it holds half its limit. It samples: a guest that
// looks up more than about (50% - 5%) of the limit in hostFilesSlowPoll can
// outrun it, and its lookups then fail with EMFILE (they do not hang) until
// the next trim. Under TCG a guest's find or tar looks up some thousands of
// files a second; with the default limit that margin is hundreds of
// thousands.
const (
	// hostFilesTrimAt is the share of its limit, in percent, at which
	// virtiofsd's descriptors are trimmed.
	hostFilesTrimAt = 50
	// hostFilesNearAt is the share at which the watch looks quickly.
	hostFilesNearAt = 5
	// Poll intervals: far from the limit and near it. Each poll reads
	// virtiofsd's /proc/PID/fd, a few dozen entries while idle.
	hostFilesSlowPoll = 250 * time.Millisecond
	hostFilesFastPoll = 50 * time.Millisecond
)

// virtiofsdPID returns the pid of the VM's virtiofsd while it runs, 0 when
// there is none or it has exited. A VM adopted from an earlier server finds
// it through its pid file, checked against its command line.
func (v *VM) virtiofsdPID() int {
	if v.virtiofsd != nil {
		if v.virtiofsd.exited() {
			return 0
		}
		return v.virtiofsd.Pid()
	}
	b, err := os.ReadFile(v.cfg.VirtiofsdPIDFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !isVirtiofsdOf(pid, v.cfg) {
		return 0
	}
	return pid
}

// isVirtiofsdOf says whether pid is a virtiofsd serving cfg's socket (and not
// a process that reused its pid).
func isVirtiofsdOf(pid int, cfg Config) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(cmdline, []byte("--socket-path="+cfg.VirtiofsSocket()+"\x00"))
}

// openFiles counts pid's open descriptors and reads its limit on them.
func openFiles(pid int) (n, limit int, err error) {
	dir := "/proc/" + strconv.Itoa(pid)
	f, err := os.Open(dir + "/fd")
	if err != nil {
		return 0, 0, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return 0, 0, err
	}
	lf, err := os.Open(dir + "/limits")
	if err != nil {
		return 0, 0, err
	}
	defer lf.Close()
	sc := bufio.NewScanner(lf)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Max open files"); ok {
			if fields := strings.Fields(rest); len(fields) > 0 {
				limit, _ = strconv.Atoi(fields[0]) // "unlimited" stays 0
			}
		}
	}
	return len(names), limit, nil
}

// watchHostFiles looks after the VM's virtiofsd while v runs: it trims the
// guest's cache of host files when virtiofsd nears its limit on open files,
// and when virtiofsd exits under a running VM it has the agent put 9p in
// place of the dead virtio-fs mount, in running distros too, and says so in
// the VM's status.
func (b *Backend) watchHostFiles(v *VM) {
	pid := v.virtiofsdPID()
	if pid == 0 {
		return
	}
	ctx, cancel := b.vmContext(v)
	defer cancel()
	var lastTrim time.Time
	t := time.NewTimer(hostFilesSlowPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, limit, err := openFiles(pid)
		if err != nil || !isVirtiofsdOf(pid, v.cfg) {
			b.virtiofsdGone(ctx, v, pid)
			return
		}
		next := hostFilesSlowPoll
		if limit > 0 && n*100 >= limit*hostFilesNearAt {
			next = hostFilesFastPoll
		}
		if limit > 0 && n*100 >= limit*hostFilesTrimAt && time.Since(lastTrim) >= hostFilesFastPoll {
			lastTrim = time.Now()
			if ac := b.agentOf(v); ac != nil {
				tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := ac.HostFiles(tctx, agent.HostFilesTrim)
				tcancel()
				b.log.Info("host files: virtiofsd neared its limit on open files; the VM let go of its cached host files",
					"open", n, "limit", limit, "err", err)
			}
		}
		t.Reset(next)
	}
}

// virtiofsdGone handles virtiofsd's exit under a running VM.
func (b *Backend) virtiofsdGone(ctx context.Context, v *VM, pid int) {
	select {
	case <-v.Done():
		return // it ended with the VM: nothing to do
	case <-time.After(hostFilesFastPoll):
		// QEMU ends virtiofsd as it exits: give the VM's own end a moment
		// to show before calling this a failure.
	}
	select {
	case <-v.Done():
		return
	default:
	}
	note := fmt.Sprintf("virtiofsd (pid %d) exited while the VM ran%s: /mnt/host now goes over 9p (slower) until the VM restarts; a process that was reading /mnt/host at that moment stays blocked until it is killed",
		pid, v.sidecarExit(pid))
	b.log.Error("host files: " + note)
	b.mu.Lock()
	b.hostFilesNote = note
	b.mu.Unlock()
	if ac := b.agentOf(v); ac != nil {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := ac.HostFiles(actx, agent.HostFilesAbort); err != nil {
			b.log.Error("host files: the VM could not replace the virtio-fs mount", "err", err)
		}
	}
}

// sidecarExit says how the sidecar with pid exited, when this server started
// it.
func (v *VM) sidecarExit(pid int) string {
	for _, s := range v.sidecars {
		if s.Pid() == pid && s.exited() {
			return fmt.Sprintf(" (%v)", s.err)
		}
	}
	return ""
}
