-- +goose Up
-- Per-distro resource limits, applied through the distro's cgroup at start
-- and at once on a running distro; 0 means no limit.
ALTER TABLE distros ADD COLUMN memory_max INTEGER NOT NULL DEFAULT 0; -- bytes
ALTER TABLE distros ADD COLUMN cpu_max REAL NOT NULL DEFAULT 0;       -- cores
ALTER TABLE distros ADD COLUMN pids_max INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE distros DROP COLUMN memory_max;
ALTER TABLE distros DROP COLUMN cpu_max;
ALTER TABLE distros DROP COLUMN pids_max;
