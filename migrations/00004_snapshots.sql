-- +goose Up
-- Snapshots of a distro's files: a copy of its version 1 tree or version 2
-- image, kept under the data directory's snapshots/<distro id>/<name>. The
-- row is written once the copy is complete; the files go with the row.
CREATE TABLE snapshots (
    distro_id   TEXT NOT NULL REFERENCES distros (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    bytes       INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (distro_id, name)
);

-- +goose Down
DROP TABLE snapshots;
