-- Worker leases (issue 16): which process runs a job that must run once
-- across processes sharing a database that has no advisory locks (SQLite).
-- A holder renews its row; another takes it over once expires_at passed.
CREATE TABLE worker_leases (
    job        BIGINT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
