package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Operation is the persisted record of a long-running piece of work (import,
// export, clone, …). Progress is kept live in memory by vmm and written here when
// the operation starts and ends.
type Operation struct {
	ID        string
	Kind      string
	Distro    string
	Status    string
	Done      int64
	Total     int64
	Error     string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// SaveOperation inserts or replaces op.
func (db *DB) SaveOperation(ctx context.Context, op Operation) error {
	ts := now()
	created := ts
	if !op.CreatedAt.IsZero() {
		created = op.CreatedAt.UTC().Format(timeFormat)
	}
	_, err := db.sql.ExecContext(ctx, `INSERT INTO operations (id, kind, distro, status, done, total, error, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, done = excluded.done, total = excluded.total,
			error = excluded.error, updated_at = excluded.updated_at`,
		op.ID, op.Kind, op.Distro, op.Status, op.Done, op.Total, op.Error, created, ts)
	if err != nil {
		return fmt.Errorf("save operation %s: %w", op.ID, err)
	}
	return nil
}

// Operation returns the operation with the given id.
func (db *DB) Operation(ctx context.Context, id string) (Operation, error) {
	var op Operation
	var created, updated string
	err := db.sql.QueryRowContext(ctx, `SELECT id, kind, distro, status, done, total, error, created_at, updated_at
		FROM operations WHERE id = ?`, id).Scan(&op.ID, &op.Kind, &op.Distro, &op.Status, &op.Done, &op.Total, &op.Error, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Operation{}, fmt.Errorf("operation %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Operation{}, fmt.Errorf("get operation %s: %w", id, err)
	}
	op.CreatedAt, op.UpdatedAt = parseTime(created), parseTime(updated)
	return op, nil
}

// FailUnfinishedOperations marks every operation still in status running as failed
// with msg; the server calls it at start, when no operation can still be running.
func (db *DB) FailUnfinishedOperations(ctx context.Context, running, failed, msg string) error {
	_, err := db.sql.ExecContext(ctx, "UPDATE operations SET status = ?, error = ?, updated_at = ? WHERE status = ?",
		failed, msg, now(), running)
	if err != nil {
		return fmt.Errorf("fail unfinished operations: %w", err)
	}
	return nil
}
