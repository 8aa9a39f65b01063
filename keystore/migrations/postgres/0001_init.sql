-- The PostgreSQL twin of migrations/sqlite/0001_init.sql: the same tables and
-- types, so that one Store serves both. Times are unix milliseconds (BIGINT);
-- domains are a JSON array of strings kept as TEXT.
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

CREATE INDEX keys_site ON keys (site_id, created_at DESC, id DESC);

-- Followers read "seq > last"; writers take a transaction-level advisory
-- lock before appending (see postgres.go), so seq order is commit order and
-- no follower can skip a row committed late.
CREATE TABLE changes (
    seq       BIGSERIAL PRIMARY KEY,
    entity    TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    at        BIGINT NOT NULL
);
