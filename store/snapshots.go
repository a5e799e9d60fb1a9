package store

import (
	"context"
	"fmt"
	"time"
)

// Snapshot is one row of snapshots: a saved copy of a distro's files.
type Snapshot struct {
	DistroID string
	// Name is the snapshot's name, unique per distro.
	Name string
	// Version is the distro's version when it was taken (its files' form).
	Version int
	// Bytes is what the copy takes on the host.
	Bytes     int64
	CreatedAt time.Time
}

// Snapshots returns distroID's snapshots, the oldest first.
func (db *DB) Snapshots(ctx context.Context, distroID string) ([]Snapshot, error) {
	rows, err := db.sql.QueryContext(ctx, "SELECT distro_id, name, version, bytes, created_at FROM snapshots WHERE distro_id = ? ORDER BY created_at, name", distroID)
	if err != nil {
		return nil, fmt.Errorf("read snapshots: %w", err)
	}
	defer rows.Close()
	var out []Snapshot
	for rows.Next() {
		var s Snapshot
		var created string
		if err := rows.Scan(&s.DistroID, &s.Name, &s.Version, &s.Bytes, &created); err != nil {
			return nil, fmt.Errorf("read snapshots: %w", err)
		}
		s.CreatedAt, _ = time.Parse(timeFormat, created)
		out = append(out, s)
	}
	return out, rows.Err()
}

// AddSnapshot records a snapshot; ErrNameTaken when the distro has one by
// that name.
func (db *DB) AddSnapshot(ctx context.Context, s Snapshot) error {
	_, err := db.sql.ExecContext(ctx, "INSERT INTO snapshots (distro_id, name, version, bytes, created_at) VALUES (?, ?, ?, ?, ?)",
		s.DistroID, s.Name, s.Version, s.Bytes, s.CreatedAt.UTC().Format(timeFormat))
	if isPrimaryKeyViolation(err) {
		return fmt.Errorf("snapshot %q: %w", s.Name, ErrNameTaken)
	}
	if err != nil {
		return fmt.Errorf("add snapshot %q: %w", s.Name, err)
	}
	return nil
}

// DeleteSnapshot removes a snapshot's row; ErrNotFound when there is none.
func (db *DB) DeleteSnapshot(ctx context.Context, distroID, name string) error {
	res, err := db.sql.ExecContext(ctx, "DELETE FROM snapshots WHERE distro_id = ? AND name = ?", distroID, name)
	if err != nil {
		return fmt.Errorf("delete snapshot %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("snapshot %q: %w", name, ErrNotFound)
	}
	return nil
}
