package api

// Values of Settings.V1LANDefault.
const (
	// LANDefaultOff: a port nobody has configured stays off the LAN, whatever
	// it is bound to.
	LANDefaultOff = "off"
	// LANDefaultFollowBind: as in WSL 1, a port bound to a non-loopback
	// address reaches the LAN unless its toggle says otherwise.
	LANDefaultFollowBind = "follow-bind"
)

// Settings are the server-wide preferences: GET /settings, and the reply of
// PUT /settings.
type Settings struct {
	// DefaultVersion is the version of new distros when an import names none.
	DefaultVersion int `json:"default_version"`
	// DefaultUser is the default user of new distros.
	DefaultUser string `json:"default_user"`
	// ScrollbackBytes is how much recent terminal output a session keeps for
	// replay.
	ScrollbackBytes int `json:"scrollback_bytes"`
	// SessionTimeoutS is how long a detached terminal session lives.
	SessionTimeoutS int `json:"session_timeout_s"`
	// V1LANDefault is LANDefaultOff or LANDefaultFollowBind.
	V1LANDefault string `json:"v1_lan_default"`
	// ImportReserveBytes and ImportReservePercent are the free space an import
	// leaves on its file system: the smaller applies; 0 turns it off.
	ImportReserveBytes   int64 `json:"import_reserve_bytes"`
	ImportReservePercent int   `json:"import_reserve_percent"`
	// VMMemoryMiB is the utility VM's memory (0: half the host's) and
	// VMProcessors its processors (0: all the host's), as .wslconfig's
	// memory= and processors=; they apply at the VM's next start.
	VMMemoryMiB  int `json:"vm_memory_mib"`
	VMProcessors int `json:"vm_processors"`
	// VMIdleTimeoutS is how long the VM keeps running with no version 2
	// distro running; negative: for ever.
	VMIdleTimeoutS int `json:"vm_idle_timeout_s"`
	// Kernel is the VM's kernel (an image file, or an unpacked Debian
	// linux-image package directory) on the server; empty: the default.
	Kernel string `json:"kernel"`
	// MemoryReclaim is how the utility VM gives its page cache back to the
	// host when it has been idle two minutes: "gradual" (in steps, the
	// default), "dropcache" (all at once) or "disabled".
	MemoryReclaim string `json:"memory_reclaim"`
	// InstallMirror is the Debian mirror `subsys install` builds Debian
	// releases from; empty: the server's apt sources' Debian mirror, else
	// deb.debian.org.
	InstallMirror string `json:"install_mirror"`
}

// SettingsUpdate is the body of PUT /settings: nil fields stay as they are.
type SettingsUpdate struct {
	// Each field, when set, replaces the Settings field of the same name.
	DefaultVersion       *int    `json:"default_version,omitempty"`
	DefaultUser          *string `json:"default_user,omitempty"`
	ScrollbackBytes      *int    `json:"scrollback_bytes,omitempty"`
	SessionTimeoutS      *int    `json:"session_timeout_s,omitempty"`
	V1LANDefault         *string `json:"v1_lan_default,omitempty"`
	ImportReserveBytes   *int64  `json:"import_reserve_bytes,omitempty"`
	ImportReservePercent *int    `json:"import_reserve_percent,omitempty"`
	VMMemoryMiB          *int    `json:"vm_memory_mib,omitempty"`
	VMProcessors         *int    `json:"vm_processors,omitempty"`
	VMIdleTimeoutS       *int    `json:"vm_idle_timeout_s,omitempty"`
	Kernel               *string `json:"kernel,omitempty"`
	MemoryReclaim        *string `json:"memory_reclaim,omitempty"`
	InstallMirror        *string `json:"install_mirror,omitempty"`
}
