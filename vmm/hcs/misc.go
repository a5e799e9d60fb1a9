package hcs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// vsockServiceID is the hvsocket service GUID of AF_VSOCK port port: the
// port in the first field of Hyper-V's vsock template, as Linux's
// hv_sock maps them (go-winio's VsockServiceID, in plain Go for the
// document).
func vsockServiceID(port uint32) string {
	return fmt.Sprintf("%08x-facb-11e6-bd58-64006a7986d3", port)
}

// disksFile records the disks attached to the running VM, so that the
// next server, adopting the VM, knows which LUN is which distro's.
const disksFile = "disks.json"

// maxDisksFile bounds what loadDisks reads.
const maxDisksFile = 1 << 20

// saveDisksLocked writes b.disks to the record (b.mu held). A failure
// costs only the next adoption's knowledge, so it is logged.
func (b *Backend) saveDisksLocked() {
	data, err := json.Marshal(b.disks)
	if err == nil {
		p := filepath.Join(b.cfg.StateDir, disksFile)
		if err = os.WriteFile(p+".tmp", data, 0o600); err == nil {
			err = os.Rename(p+".tmp", p)
		}
	}
	if err != nil {
		b.log.Warn("record the VM's disks", "err", err)
	}
}

// loadDisks reads the record; a missing or broken one is empty.
func (b *Backend) loadDisks() map[string]slot {
	data, err := os.ReadFile(filepath.Join(b.cfg.StateDir, disksFile))
	if err != nil {
		return map[string]slot{}
	}
	return parseDisks(data)
}

// parseDisks parses the record, keeping only entries a server could have
// written: a key of distro-id characters (or an operation's key), a LUN
// in range, a path.
func parseDisks(data []byte) map[string]slot {
	out := map[string]slot{}
	if len(data) > maxDisksFile {
		return out
	}
	var m map[string]slot
	if json.Unmarshal(data, &m) != nil {
		return out
	}
	used := map[int]bool{}
	for k, d := range m {
		if k == "" || len(k) > 128 || strings.ContainsAny(k, "/\\\x00") || checkTarget(d.Target) != nil || d.Path == "" || used[d.Target] {
			continue
		}
		used[d.Target] = true
		out[k] = d
	}
	return out
}

// ring keeps the last limit bytes written to it; safe for concurrent use.
type ring struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func newRing(limit int) *ring { return &ring{limit: limit} }

// Write keeps the last limit bytes of everything written; it never fails.
func (r *ring) Write(p []byte) (int, error) {
	n := len(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(p) >= r.limit {
		r.buf = append(r.buf[:0], p[len(p)-r.limit:]...)
		return n, nil
	}
	if over := len(r.buf) + len(p) - r.limit; over > 0 {
		r.buf = r.buf[:copy(r.buf, r.buf[over:])]
	}
	r.buf = append(r.buf, p...)
	return n, nil
}

// Bytes returns a copy of what is kept.
func (r *ring) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...)
}
