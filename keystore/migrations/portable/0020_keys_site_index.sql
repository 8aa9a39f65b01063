-- SQLite's keys_site index covered site_id only while PostgreSQL's (and the
-- key listing, ORDER BY created_at, id) use (site_id, created_at DESC,
-- id DESC). Both now have the same index; schema_test.go keeps them equal.
DROP INDEX IF EXISTS keys_site;
CREATE INDEX keys_site ON keys (site_id, created_at DESC, id DESC);
