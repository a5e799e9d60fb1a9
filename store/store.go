// Package store keeps subsys's metadata in one SQLite file: distros, long-running
// operations, server settings, per-port exposure settings, portproxy rules, browser
// sessions and the audit log. It is imported by cli (which opens it), vmm, netmgr
// and server; it imports only migrations. The schema lives in migrations/ and is
// applied by pressly/goose when the database opens.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"time"

	_ "github.com/mattn/go-sqlite3" // the database/sql driver "sqlite3"
	"github.com/pressly/goose/v3"

	"github.com/subsys-dev/subsys/migrations"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no row matches.
	ErrNotFound = errors.New("not found")
	// ErrNameTaken: a distro with that name (case-insensitive) already exists.
	ErrNameTaken = errors.New("name already taken")
)

// timeFormat is how times are stored: sortable text in UTC.
const timeFormat = time.RFC3339Nano

// DB is an open subsys database.
type DB struct {
	sql *sql.DB
}

// Open opens (creating if needed) the database at path, in WAL mode with foreign
// keys and a busy timeout, and applies every pending migration.
func Open(ctx context.Context, path string) (*DB, error) {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "on")
	q.Set("_busy_timeout", "5000")
	q.Set("_synchronous", "NORMAL")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := migrate(ctx, db, migrations.FS); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate database %s: %w", path, err)
	}
	return &DB{sql: db}, nil
}

func migrate(ctx context.Context, db *sql.DB, fsys fs.FS) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys)
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// Close closes the database.
func (db *DB) Close() error { return db.sql.Close() }

// IntegrityCheck runs SQLite's PRAGMA integrity_check and returns its verdict ("ok"
// when the file is sound).
func (db *DB) IntegrityCheck(ctx context.Context) (string, error) {
	var res string
	if err := db.sql.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return "", fmt.Errorf("integrity check: %w", err)
	}
	return res, nil
}

func now() string { return time.Now().UTC().Format(timeFormat) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(timeFormat, s)
	return t
}
