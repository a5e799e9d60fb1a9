package ns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/cgroup"
)

// cgroupParent is the cgroup v2 directory that holds one cgroup per running
// version 1 distro.
type cgroupParent struct {
	// dir is its path in the mounted hierarchy.
	dir string
	// id is its cgroup id (the directory's inode number) and level its depth
	// below the hierarchy's root: what nftables' "socket cgroupv2 level"
	// compares with a socket's cgroup ancestors.
	id    uint64
	level uint32
	// controllers is why the memory, cpu and pids controllers are not all
	// on for the distros' cgroups; nil when they are.
	controllers error
}

// openCgroupParent creates (or finds) the cgroup named name directly under the
// root of the cgroup v2 hierarchy.
func openCgroupParent(name string) (*cgroupParent, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mount, root, err := cgroup2Mount(f)
	if err != nil {
		return nil, err
	}
	if root != "/" {
		// Only part of the hierarchy is visible (a cgroup namespace): the
		// absolute level the firewall needs cannot be known.
		return nil, fmt.Errorf("cgroup2 at %s shows %s, not the hierarchy's root", mount, root)
	}
	dir := filepath.Join(mount, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return nil, err
	}
	// The limits' controllers, from the root down to each distro's cgroup.
	// A host whose cgroup v2 lacks them (a hybrid hierarchy, a container
	// without delegation) runs distros without limits; setting one there
	// fails with cgroup.ErrNoController.
	c := &cgroupParent{dir: dir, id: st.Ino, level: 1}
	c.controllers = cgroup.Enable(mount)
	if c.controllers == nil {
		c.controllers = cgroup.Enable(dir)
	}
	return c, nil
}

// cgroup2Mount finds the first cgroup2 mount in a mountinfo table: its mount
// point and the hierarchy path it shows.
func cgroup2Mount(r io.Reader) (mount, root string, err error) {
	mounts, err := mountinfo.GetMountsFromReader(r, mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		return "", "", fmt.Errorf("read mountinfo: %w", err)
	}
	if len(mounts) == 0 {
		return "", "", errors.New("no cgroup2 file system is mounted")
	}
	return mounts[0].Mountpoint, mounts[0].Root, nil
}

// path is the distro's cgroup as /proc/PID/cgroup and nftables name it,
// relative to the hierarchy's root.
func (c *cgroupParent) path(id string) string { return "/" + filepath.Base(c.dir) + "/" + id }

// join moves pid into the distro's cgroup, creating it, after it applies
// the distro's limits l to it (nil: leaves the cgroup's as they are). The
// agent's children (every process of the distro) are born in it.
func (c *cgroupParent) join(id string, pid int, l *cgroup.Limits) error {
	dir := filepath.Join(c.dir, id)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	if l != nil {
		if err := c.apply(id, *l); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("move agent %d into cgroup %s: %w", pid, dir, err)
	}
	return nil
}

// adopt moves every process of a running distro — those that share its
// agent's PID namespace — into the distro's cgroup, unless the agent is in it
// already.
func (c *cgroupParent) adopt(id string, agentPID int) error {
	want := "0::" + c.path(id)
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", agentPID))
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if l == want {
			return nil
		}
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", agentPID))
	if err != nil {
		return err
	}
	if err := c.join(id, agentPID, nil); err != nil {
		return err
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == agentPID {
			continue
		}
		if n, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && n == ns {
			// A process that exits meanwhile is no error.
			_ = os.WriteFile(filepath.Join(c.dir, id, "cgroup.procs"), []byte(e.Name()), 0o644)
		}
	}
	return nil
}

// apply writes limits l into the distro's cgroup. With no limit set it
// writes "max" where it can and never fails for a missing controller.
func (c *cgroupParent) apply(id string, l cgroup.Limits) error {
	err := cgroup.Apply(filepath.Join(c.dir, id), l)
	if err != nil && errors.Is(err, cgroup.ErrNoController) && c.controllers != nil {
		return fmt.Errorf("%w (%v)", err, c.controllers)
	}
	return err
}

// remove deletes the distro's cgroup, and the cgroups a distro's systemd
// made below it, once its last process is gone.
func (c *cgroupParent) remove(id string) error {
	return agent.RemoveCgroup(filepath.Join(c.dir, id))
}

// open creates the distro's cgroup and opens it, for a clone into it
// (CLONE_INTO_CGROUP), which roots the distro's cgroup namespace there.
func (c *cgroupParent) open(id string) (*os.File, error) {
	dir := filepath.Join(c.dir, id)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	return f, nil
}
