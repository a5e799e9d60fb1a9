package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// sessionTimeFormat has a fixed width, so that the text comparison of idle
// expiry in SQL orders times correctly (RFC3339Nano drops trailing zeros).
const sessionTimeFormat = "2006-01-02T15:04:05.000000000Z"

// Session is a browser session as stored: the hash of its secret, never the secret.
type Session struct {
	// IDHash is the SHA-256 (hex) of the session secret.
	IDHash string
	// TokenHash is the SHA-256 (hex) of the API token the session was made with.
	TokenHash string
	// CreatedAt is when the session was made.
	CreatedAt time.Time
	// LastUsedAt is when a request last presented it (kept to a minute or so).
	LastUsedAt time.Time
	// UserAgent is the browser's User-Agent at login, for the admin's eyes only.
	UserAgent string
}

// CreateSession saves a new session.
func (db *DB) CreateSession(ctx context.Context, s Session) error {
	_, err := db.sql.ExecContext(ctx,
		`INSERT INTO sessions (id_hash, token_hash, created_at, last_used_at, user_agent) VALUES (?, ?, ?, ?, ?)`,
		s.IDHash, s.TokenHash, s.CreatedAt.UTC().Format(sessionTimeFormat), s.LastUsedAt.UTC().Format(sessionTimeFormat), s.UserAgent)
	if err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// GetSession returns the session whose secret hashes to idHash, or ErrNotFound.
func (db *DB) GetSession(ctx context.Context, idHash string) (Session, error) {
	var s Session
	var created, used string
	err := db.sql.QueryRowContext(ctx,
		`SELECT id_hash, token_hash, created_at, last_used_at, user_agent FROM sessions WHERE id_hash = ?`, idHash).
		Scan(&s.IDHash, &s.TokenHash, &created, &used, &s.UserAgent)
	if errors.Is(err, sql.ErrNoRows) {
		return s, ErrNotFound
	}
	if err != nil {
		return s, fmt.Errorf("read session: %w", err)
	}
	s.CreatedAt, s.LastUsedAt = parseTime(created), parseTime(used)
	return s, nil
}

// TouchSession records that a session was used at t.
func (db *DB) TouchSession(ctx context.Context, idHash string, t time.Time) error {
	if _, err := db.sql.ExecContext(ctx, `UPDATE sessions SET last_used_at = ? WHERE id_hash = ?`,
		t.UTC().Format(sessionTimeFormat), idHash); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession ends one session; ending one that does not exist is not an error.
func (db *DB) DeleteSession(ctx context.Context, idHash string) error {
	if _, err := db.sql.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteSessionsExcept ends every session not made with the token hashing to
// tokenHash (all of them when tokenHash is empty) and every session idle since
// before idleBefore, and returns how many ended.
func (db *DB) DeleteSessionsExcept(ctx context.Context, tokenHash string, idleBefore time.Time) (int64, error) {
	res, err := db.sql.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash != ? OR last_used_at < ?`,
		tokenHash, idleBefore.UTC().Format(sessionTimeFormat))
	if err != nil {
		return 0, fmt.Errorf("delete sessions: %w", err)
	}
	return res.RowsAffected()
}
