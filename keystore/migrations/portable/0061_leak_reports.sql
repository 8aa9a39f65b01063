-- Leaked-key reports (issue 16): one row per key and place it was found, so
-- that a report seen twice (GitHub retries, replays) acts once.
CREATE TABLE leak_reports (
    key_id      TEXT NOT NULL,
    source      TEXT NOT NULL,
    reported_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, source)
);
