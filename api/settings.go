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
}
