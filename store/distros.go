package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Distro is one row of the distros table.
type Distro struct {
	// ID is stable for the life of the distro; files and sockets are named by it.
	ID string
	// Name is unique, case-insensitively.
	Name string
	// Version is 1 (shared kernel) or 2 (utility VM).
	Version int
	// State is one of the vmm State values.
	State string
	// Location is the directory that holds the distro's files.
	Location string
	// DefaultUser is who commands run as when no user is given.
	DefaultUser string
	// Systemd makes the distro's systemd its PID 1 from its next start.
	Systemd   bool
	CreatedAt time.Time
	UpdatedAt time.Time
	// MemoryMax (bytes), CPUMax (cores) and PidsMax are the distro's
	// resource limits, 0 for none. UpdateDistro leaves them alone:
	// SetDistroLimits writes them.
	MemoryMax int64
	CPUMax    float64
	PidsMax   int64
}

const distroColumns = "id, name, version, state, location, default_user, systemd, created_at, updated_at, memory_max, cpu_max, pids_max"

func scanDistro(row interface{ Scan(...any) error }) (Distro, error) {
	var d Distro
	var created, updated string
	err := row.Scan(&d.ID, &d.Name, &d.Version, &d.State, &d.Location, &d.DefaultUser, &d.Systemd, &created, &updated, &d.MemoryMax, &d.CPUMax, &d.PidsMax)
	d.CreatedAt, d.UpdatedAt = parseTime(created), parseTime(updated)
	return d, err
}

// CreateDistro inserts d. A duplicate name gives ErrNameTaken.
func (db *DB) CreateDistro(ctx context.Context, d Distro) error {
	ts := now()
	_, err := db.sql.ExecContext(ctx, "INSERT INTO distros ("+distroColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		d.ID, d.Name, d.Version, d.State, d.Location, d.DefaultUser, d.Systemd, ts, ts, d.MemoryMax, d.CPUMax, d.PidsMax)
	if err != nil {
		return fmt.Errorf("create distro %q: %w", d.Name, uniqueErr(err))
	}
	return nil
}

// Distro returns the distro named name (case-insensitive).
func (db *DB) Distro(ctx context.Context, name string) (Distro, error) {
	d, err := scanDistro(db.sql.QueryRowContext(ctx, "SELECT "+distroColumns+" FROM distros WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return Distro{}, fmt.Errorf("distro %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Distro{}, fmt.Errorf("get distro %q: %w", name, err)
	}
	return d, nil
}

// Distros returns every distro ordered by name.
func (db *DB) Distros(ctx context.Context) ([]Distro, error) {
	rows, err := db.sql.QueryContext(ctx, "SELECT "+distroColumns+" FROM distros ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list distros: %w", err)
	}
	defer rows.Close()
	out := []Distro{}
	for rows.Next() {
		d, err := scanDistro(rows)
		if err != nil {
			return nil, fmt.Errorf("list distros: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// UpdateDistro writes d's name, state, location and default user over the row with d.ID.
func (db *DB) UpdateDistro(ctx context.Context, d Distro) error {
	res, err := db.sql.ExecContext(ctx,
		"UPDATE distros SET name = ?, version = ?, state = ?, location = ?, default_user = ?, systemd = ?, updated_at = ? WHERE id = ?",
		d.Name, d.Version, d.State, d.Location, d.DefaultUser, d.Systemd, now(), d.ID)
	if err != nil {
		return fmt.Errorf("update distro %q: %w", d.Name, uniqueErr(err))
	}
	return affected(res, fmt.Sprintf("distro %q", d.Name))
}

// SetDistroLimits sets the resource limits of the distro with the given id
// (0: none). They have a setter of their own so that an operation that
// rewrites the row it read at its start (UpdateDistro) never undoes a
// limit set meanwhile.
func (db *DB) SetDistroLimits(ctx context.Context, id string, memoryMax int64, cpuMax float64, pidsMax int64) error {
	res, err := db.sql.ExecContext(ctx, "UPDATE distros SET memory_max = ?, cpu_max = ?, pids_max = ?, updated_at = ? WHERE id = ?",
		memoryMax, cpuMax, pidsMax, now(), id)
	if err != nil {
		return fmt.Errorf("set limits of distro %s: %w", id, err)
	}
	return affected(res, "distro "+id)
}

// SetDistroState sets the state of the distro with the given id.
func (db *DB) SetDistroState(ctx context.Context, id, state string) error {
	res, err := db.sql.ExecContext(ctx, "UPDATE distros SET state = ?, updated_at = ? WHERE id = ?", state, now(), id)
	if err != nil {
		return fmt.Errorf("set state of distro %s: %w", id, err)
	}
	return affected(res, "distro "+id)
}

// DeleteDistro removes the row with the given id.
func (db *DB) DeleteDistro(ctx context.Context, id string) error {
	res, err := db.sql.ExecContext(ctx, "DELETE FROM distros WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("delete distro %s: %w", id, err)
	}
	return affected(res, "distro "+id)
}

func affected(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

// uniqueErr turns SQLite's unique-constraint failure into ErrNameTaken. It matches
// the message rather than sqlite3.Error so that the package still type-checks for
// targets built without cgo.
func uniqueErr(err error) error {
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return ErrNameTaken
	}
	return err
}
