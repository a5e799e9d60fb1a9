-- +goose Up
-- Browser sessions: the dashboard's credential, traded once for the API token at
-- login. Only a hash of the session secret is kept, so the file does not hold a
-- usable credential; token_hash ties the session to the token it was made with,
-- so that replacing the token (even by hand, with the server stopped) ends it.
CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT NOT NULL,
    user_agent    TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE sessions;
