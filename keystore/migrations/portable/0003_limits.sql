-- Rate limits and quotas. Portable SQL in migrations/portable: applied as is
-- to SQLite and PostgreSQL.
--
-- Per-site and per-account overrides of the plan's limits: a JSON object of
-- name → non-negative integer (e.g. {"rate":600,"quota":50000}), read with
-- the key facts and given to the policy as input.site.limits and
-- input.account.limits.
ALTER TABLE sites ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE accounts ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';

-- Monthly usage per quota counter (e.g. "site:acme:live") and calendar month
-- (UTC, "2026-11"). quota is the limit in force at the last charge, so the
-- CLI and admin API can show usage against it without evaluating the policy.
CREATE TABLE quota_usage (
    counter    TEXT NOT NULL,
    period     TEXT NOT NULL,
    used       BIGINT NOT NULL,
    quota      BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (counter, period)
);
