-- The token exchange. Portable SQL in migrations/portable: applied as is to
-- SQLite and PostgreSQL.

-- HMAC secrets that sign access tokens, shared by every replica. secret is
-- "sealed:<base64>" (AES-256-GCM under a key derived from KEYGATE_PEPPER) or,
-- when no pepper is configured, "plain:<base64>", protected only by access
-- to the database. A key signs from not_before on; a retired key is deleted.
CREATE TABLE signing_keys (
    id         TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    not_before BIGINT NOT NULL
);

-- Refresh tokens, stored only as HMAC-SHA256 digests (like keys). A token
-- is live while used_at and revoked_at are NULL and expires_at is ahead;
-- family groups the tokens descended from one mint with the API key.
CREATE TABLE refresh_tokens (
    digest     TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL REFERENCES keys (id),
    family     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);

CREATE INDEX refresh_tokens_key ON refresh_tokens (key_id);
