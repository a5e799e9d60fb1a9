// Package migrations holds the numbered SQL files that build subsys's SQLite schema.
// store applies them in order at start with pressly/goose; nothing else imports this
// package. A new schema change is a new file (never an edit of a landed one).
package migrations

import "embed"

// FS holds every migration, named NNNNN_description.sql in goose's format.
//
//go:embed *.sql
var FS embed.FS
