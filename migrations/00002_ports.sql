-- +goose Up
-- Per-port exposure settings of a distro, keyed by the distro's stable id so that
-- they survive a rename and go away with the distro.
CREATE TABLE port_settings (
    distro_id    TEXT NOT NULL REFERENCES distros (id) ON DELETE CASCADE,
    proto        TEXT NOT NULL CHECK (proto IN ('tcp', 'udp')),
    port         INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    lan          INTEGER NOT NULL DEFAULT 0,
    allow        TEXT NOT NULL DEFAULT '',
    lan_address  TEXT NOT NULL DEFAULT '',
    localhost    INTEGER NOT NULL DEFAULT 1,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (distro_id, proto, port)
);

-- portproxy rules, netsh-style: listen address:port forwarded to a target.
CREATE TABLE portproxy_rules (
    id              TEXT PRIMARY KEY,
    proto           TEXT NOT NULL CHECK (proto IN ('tcp', 'udp')),
    listen_address  TEXT NOT NULL,
    listen_port     INTEGER NOT NULL CHECK (listen_port BETWEEN 1 AND 65535),
    connect_address TEXT NOT NULL,
    connect_port    INTEGER NOT NULL CHECK (connect_port BETWEEN 1 AND 65535),
    allow           TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL
);

-- +goose Down
DROP TABLE portproxy_rules;
DROP TABLE port_settings;
