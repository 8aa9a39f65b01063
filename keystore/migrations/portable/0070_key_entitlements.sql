-- Per-key entitlements (issue 15). Portable SQL: applied as is to SQLite and
-- PostgreSQL. Existing keys get the zero value, which restricts nothing.
--
-- scopes and allowed_cidrs are JSON arrays of strings (CIDRs canonical,
-- masked); meta is a JSON object of name → value; limits a JSON object of
-- name → non-negative integer overriding the site's, account's and plan's.
ALTER TABLE keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
ALTER TABLE keys ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';

-- remaining is the number of uses left (NULL: unlimited). SpendUse
-- decrements it with one conditional UPDATE, so uses are counted exactly
-- across replicas. With a refill ('daily' or 'monthly', UTC), the first
-- spend of a new period (refill_period is the one last refilled, e.g.
-- '2026-11-30' or '2026-11') first sets it back to refill_amount.
ALTER TABLE keys ADD COLUMN remaining BIGINT;
ALTER TABLE keys ADD COLUMN refill_interval TEXT NOT NULL DEFAULT '';
ALTER TABLE keys ADD COLUMN refill_amount BIGINT NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN refill_period TEXT NOT NULL DEFAULT '';
