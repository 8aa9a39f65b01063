-- Webhooks (issue 16): endpoints, the transactional outbox of events, and
-- one delivery row per (event, endpoint). Events and deliveries are written
-- in the transaction of the change that causes them (outbox.go), under the
-- same write lock as the change log, so seq order is commit order.
CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY,
    url              TEXT NOT NULL,
    events           TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    secret           TEXT NOT NULL,
    old_secret       TEXT NOT NULL DEFAULT '',
    old_secret_until BIGINT NOT NULL DEFAULT 0,
    disabled         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE webhook_events (
    seq        {{serial_pk}},
    id         TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    endpoint_id     TEXT NOT NULL,
    event_seq       BIGINT NOT NULL REFERENCES webhook_events (seq),
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    retry_from      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    last_status     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);

CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, status, event_seq);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
