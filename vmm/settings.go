package vmm

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/subsys-dev/subsys/store"
	"github.com/subsys-dev/subsys/vmm/agent"
	"github.com/subsys-dev/subsys/vmm/archive"
	"github.com/subsys-dev/subsys/vmm/catalog"
)

// Settings are the server-wide preferences kept in SQLite.
type Settings struct {
	// DefaultVersion is the version of new distros when an import names none (1).
	DefaultVersion int `json:"default_version"`
	// DefaultUser is the default user of new distros ("root").
	DefaultUser string `json:"default_user"`
	// ScrollbackBytes is how much recent terminal output a session keeps for
	// replay (1 MiB).
	ScrollbackBytes int `json:"scrollback_bytes"`
	// SessionTimeoutS is how long a detached terminal session lives (300 s).
	SessionTimeoutS int `json:"session_timeout_s"`
	// V1LANDefault says whether a version 1 port nobody has configured reaches
	// the LAN: "off" (it does not, whatever its bind address) or "follow-bind"
	// (WSL 1's behaviour: it does when bound to a non-loopback address).
	V1LANDefault string `json:"v1_lan_default"`
	// ImportReserveBytes and ImportReservePercent are the free space an import
	// (or clone) leaves on the file system it writes to: the smaller of the
	// two applies (1 GiB and 5 % of the file system's size), so a small file
	// system is not held to 1 GiB and a large one not to 5 %. An import that
	// would go below it fails with 507 insufficient_storage, and leaves
	// nothing behind. Either set to 0 turns the reserve off.
	ImportReserveBytes   int64 `json:"import_reserve_bytes"`
	ImportReservePercent int   `json:"import_reserve_percent"`
	// VMMemoryMiB is the utility VM's memory (0: half the host's), and
	// VMProcessors its processors (0: all the host's), as .wslconfig's
	// memory= and processors=. They apply at the VM's next start.
	VMMemoryMiB  int `json:"vm_memory_mib"`
	VMProcessors int `json:"vm_processors"`
	// VMIdleTimeoutS is how long the VM keeps running with no version 2
	// distro running (60 s; negative: for ever), as .wslconfig's
	// vmIdleTimeout.
	VMIdleTimeoutS int `json:"vm_idle_timeout_s"`
	// Kernel overrides the VM's kernel, as .wslconfig's kernel=: a kernel
	// image file (its drivers built in), or a directory holding an unpacked
	// Debian linux-image package (boot/vmlinuz-*, lib/modules/). Empty: the
	// one `make deps` unpacked under the data directory's vm/kernel. On
	// Windows only an image file works (the WSL 2 kernel, or any with
	// Hyper-V storage, hv_sock and virtio built in; default vm\kernel), read
	// when the server starts.
	Kernel string `json:"kernel"`
	// MemoryReclaim is how the utility VM gives its page cache back to the
	// host when idle, as .wslconfig's autoMemoryReclaim: "gradual" (the
	// default), "dropcache" or "disabled".
	MemoryReclaim string `json:"memory_reclaim"`
	// InstallMirror is the Debian mirror Install builds Debian releases
	// from; empty: the host's apt sources' Debian mirror, else
	// deb.debian.org (catalog.HostDebianMirror).
	InstallMirror string `json:"install_mirror"`
}

// SettingsUpdate changes some settings; nil fields stay.
type SettingsUpdate struct {
	DefaultVersion  *int    `json:"default_version,omitempty"`
	DefaultUser     *string `json:"default_user,omitempty"`
	ScrollbackBytes *int    `json:"scrollback_bytes,omitempty"`
	SessionTimeoutS *int    `json:"session_timeout_s,omitempty"`
	V1LANDefault    *string `json:"v1_lan_default,omitempty"`
	// ImportReserveBytes and ImportReservePercent: see Settings.
	ImportReserveBytes   *int64 `json:"import_reserve_bytes,omitempty"`
	ImportReservePercent *int   `json:"import_reserve_percent,omitempty"`
	// VMMemoryMiB, VMProcessors, VMIdleTimeoutS and Kernel: see Settings.
	VMMemoryMiB    *int    `json:"vm_memory_mib,omitempty"`
	VMProcessors   *int    `json:"vm_processors,omitempty"`
	VMIdleTimeoutS *int    `json:"vm_idle_timeout_s,omitempty"`
	Kernel         *string `json:"kernel,omitempty"`
	MemoryReclaim  *string `json:"memory_reclaim,omitempty"`
	InstallMirror  *string `json:"install_mirror,omitempty"`
}

// DefaultSettings are the settings of a new installation.
var DefaultSettings = Settings{DefaultVersion: 1, DefaultUser: "root", ScrollbackBytes: 1 << 20, SessionTimeoutS: 300, V1LANDefault: "off",
	ImportReserveBytes: 1 << 30, ImportReservePercent: 5, VMIdleTimeoutS: 60, MemoryReclaim: agent.ReclaimGradual}

// limits returns lim with the import reserve of s (archive's Limits leave a
// bound out when it is negative, where s turns it off with 0).
func (s Settings) limits(lim archive.Limits) archive.Limits {
	lim.ReserveBytes, lim.ReservePercent = s.ImportReserveBytes, s.ImportReservePercent
	if s.ImportReserveBytes <= 0 || s.ImportReservePercent <= 0 {
		lim.ReserveBytes, lim.ReservePercent = -1, -1
	}
	return lim
}

const settingsPrefix = "setting."

// Settings returns the current settings.
// On a host without a version 1 backend, DefaultVersion is 2 whatever is
// stored.
func (m *Manager) Settings(ctx context.Context) (Settings, error) {
	s, err := ReadSettings(ctx, m.cfg.Store)
	s.DefaultVersion = m.effectiveDefaultVersion(s.DefaultVersion)
	return s, err
}

// ReadSettings reads the settings from st: for the parts of the server made
// before the Manager (a backend) that need them.
func ReadSettings(ctx context.Context, st Store) (Settings, error) {
	s := DefaultSettings
	ints := map[string]*int{"default_version": &s.DefaultVersion, "scrollback_bytes": &s.ScrollbackBytes, "session_timeout_s": &s.SessionTimeoutS,
		"import_reserve_percent": &s.ImportReservePercent,
		"vm_memory_mib":          &s.VMMemoryMiB, "vm_processors": &s.VMProcessors, "vm_idle_timeout_s": &s.VMIdleTimeoutS}
	for k, p := range ints {
		v, err := st.Setting(ctx, settingsPrefix+k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return s, err
		}
		if n, err := strconv.Atoi(v); err == nil {
			*p = n
		}
	}
	if v, err := st.Setting(ctx, settingsPrefix+"import_reserve_bytes"); err == nil {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			s.ImportReserveBytes = n
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return s, err
	}
	strs := map[string]*string{"default_user": &s.DefaultUser, "v1_lan_default": &s.V1LANDefault, "kernel": &s.Kernel, "memory_reclaim": &s.MemoryReclaim, "install_mirror": &s.InstallMirror}
	for k, p := range strs {
		v, err := st.Setting(ctx, settingsPrefix+k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return s, err
		}
		*p = v
	}
	return s, nil
}

// UpdateSettings validates and stores u, and returns the result.
func (m *Manager) UpdateSettings(ctx context.Context, u SettingsUpdate) (Settings, error) {
	if u.DefaultVersion != nil && *u.DefaultVersion != 1 && *u.DefaultVersion != 2 {
		return Settings{}, fmt.Errorf("%w: default_version must be 1 or 2", ErrInvalid)
	}
	if u.DefaultVersion != nil {
		if err := m.needBackend(*u.DefaultVersion); err != nil {
			return Settings{}, fmt.Errorf("default_version %d: %w", *u.DefaultVersion, err)
		}
	}
	if u.DefaultUser != nil {
		if err := ValidateUser(*u.DefaultUser); err != nil {
			return Settings{}, err
		}
	}
	if u.ScrollbackBytes != nil && (*u.ScrollbackBytes < 1<<10 || *u.ScrollbackBytes > 64<<20) {
		return Settings{}, fmt.Errorf("%w: scrollback_bytes must be between 1 KiB and 64 MiB", ErrInvalid)
	}
	if u.SessionTimeoutS != nil && (*u.SessionTimeoutS < 5 || *u.SessionTimeoutS > 7*24*3600) {
		return Settings{}, fmt.Errorf("%w: session_timeout_s must be between 5 s and 7 days", ErrInvalid)
	}
	if u.V1LANDefault != nil && *u.V1LANDefault != "off" && *u.V1LANDefault != "follow-bind" {
		return Settings{}, fmt.Errorf("%w: v1_lan_default must be off or follow-bind", ErrInvalid)
	}
	if u.ImportReserveBytes != nil && *u.ImportReserveBytes < 0 {
		return Settings{}, fmt.Errorf("%w: import_reserve_bytes must not be negative", ErrInvalid)
	}
	if u.ImportReservePercent != nil && (*u.ImportReservePercent < 0 || *u.ImportReservePercent > 50) {
		return Settings{}, fmt.Errorf("%w: import_reserve_percent must be between 0 and 50", ErrInvalid)
	}
	if u.VMMemoryMiB != nil && *u.VMMemoryMiB != 0 && (*u.VMMemoryMiB < 256 || *u.VMMemoryMiB > 1<<20) {
		return Settings{}, fmt.Errorf("%w: vm_memory_mib must be 0 (half the host's) or between 256 and 1048576", ErrInvalid)
	}
	if u.VMProcessors != nil && (*u.VMProcessors < 0 || *u.VMProcessors > 1024) {
		return Settings{}, fmt.Errorf("%w: vm_processors must be 0 (all) or between 1 and 1024", ErrInvalid)
	}
	if u.Kernel != nil && *u.Kernel != "" && !filepath.IsAbs(*u.Kernel) {
		return Settings{}, fmt.Errorf("%w: kernel must be an absolute path, or empty for the default", ErrInvalid)
	}
	if u.MemoryReclaim != nil && !agent.ValidReclaimMode(*u.MemoryReclaim) {
		return Settings{}, fmt.Errorf("%w: memory_reclaim must be gradual, dropcache or disabled", ErrInvalid)
	}
	if u.InstallMirror != nil && *u.InstallMirror != "" {
		if err := (catalog.Options{Mirror: *u.InstallMirror}).Check(catalog.Source{Kind: catalog.KindDistribution}); err != nil {
			return Settings{}, fmt.Errorf("%w: install_mirror %q: want an http://, https:// or file:/// URL, or empty for the host's", ErrInvalid, *u.InstallMirror)
		}
	}
	set := func(k, v string) error { return m.cfg.Store.SetSetting(ctx, settingsPrefix+k, v) }
	var err error
	if u.DefaultVersion != nil {
		err = errors.Join(err, set("default_version", strconv.Itoa(*u.DefaultVersion)))
	}
	if u.DefaultUser != nil {
		err = errors.Join(err, set("default_user", *u.DefaultUser))
	}
	if u.ScrollbackBytes != nil {
		err = errors.Join(err, set("scrollback_bytes", strconv.Itoa(*u.ScrollbackBytes)))
	}
	if u.SessionTimeoutS != nil {
		err = errors.Join(err, set("session_timeout_s", strconv.Itoa(*u.SessionTimeoutS)))
	}
	if u.V1LANDefault != nil {
		err = errors.Join(err, set("v1_lan_default", *u.V1LANDefault))
	}
	if u.ImportReserveBytes != nil {
		err = errors.Join(err, set("import_reserve_bytes", strconv.FormatInt(*u.ImportReserveBytes, 10)))
	}
	if u.ImportReservePercent != nil {
		err = errors.Join(err, set("import_reserve_percent", strconv.Itoa(*u.ImportReservePercent)))
	}
	if u.VMMemoryMiB != nil {
		err = errors.Join(err, set("vm_memory_mib", strconv.Itoa(*u.VMMemoryMiB)))
	}
	if u.VMProcessors != nil {
		err = errors.Join(err, set("vm_processors", strconv.Itoa(*u.VMProcessors)))
	}
	if u.VMIdleTimeoutS != nil {
		err = errors.Join(err, set("vm_idle_timeout_s", strconv.Itoa(*u.VMIdleTimeoutS)))
	}
	if u.Kernel != nil {
		err = errors.Join(err, set("kernel", *u.Kernel))
	}
	if u.MemoryReclaim != nil {
		err = errors.Join(err, set("memory_reclaim", *u.MemoryReclaim))
	}
	if u.InstallMirror != nil {
		err = errors.Join(err, set("install_mirror", *u.InstallMirror))
	}
	if err != nil {
		return Settings{}, err
	}
	m.audit(ctx, "settings", "", "")
	return m.Settings(ctx)
}
