-- +goose Up
-- Whether a distro boots with its own systemd as PID 1 (with the agent beside
-- it), as wsl.conf's [boot] systemd=true. It applies from the next start.
ALTER TABLE distros ADD COLUMN systemd INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE distros DROP COLUMN systemd;
