package api

import "time"

// Operation kinds of snapshots.
const (
	// KindSnapshot takes a snapshot (POST /distros/{name}/snapshots).
	KindSnapshot = "snapshot"
	// KindRestore restores one (POST /distros/{name}/snapshots/{snap}/restore).
	KindRestore = "restore"
)

// DistroSnapshot is a saved copy of a stopped distro's files
// (GET /distros/{name}/snapshots).
type DistroSnapshot struct {
	Name string `json:"name"`
	// Version is the distro's version when it was taken: a snapshot
	// restores into a distro of that version only.
	Version int `json:"version"`
	// Bytes is what the copy takes on the host (a reflink may share it).
	Bytes     int64     `json:"bytes"`
	CreatedAt time.Time `json:"created_at"`
}

// SnapshotRequest is the body of POST /distros/{name}/snapshots.
type SnapshotRequest struct {
	// Name of the snapshot; empty: "snap-" and the time.
	Name string `json:"name,omitempty"`
}
