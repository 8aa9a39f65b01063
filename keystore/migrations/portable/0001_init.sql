-- Times are unix milliseconds (BIGINT) so that SQLite and PostgreSQL share
-- every query; domains are a JSON array of strings kept as TEXT.
CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,
    plan       TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sites (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    domains    TEXT NOT NULL DEFAULT '[]',
    active     BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE keys (
    id           TEXT PRIMARY KEY,
    digest       TEXT NOT NULL UNIQUE,
    site_id      TEXT NOT NULL REFERENCES sites (id),
    mode         TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    prefix       TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT,
    revoked_at   BIGINT
);

-- The two databases were first given different keys_site columns; 0020 makes
-- them the same. The token keeps what each database has always run here.
CREATE INDEX keys_site ON keys ({{init_keys_site_columns}});

-- Followers read "seq > last"; writers take turns before appending (on
-- PostgreSQL a transaction-level advisory lock, see postgres.go), so seq
-- order is commit order and no follower can skip a row committed late.
CREATE TABLE changes (
    seq       {{serial_pk}},
    entity    TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    at        BIGINT NOT NULL
);
