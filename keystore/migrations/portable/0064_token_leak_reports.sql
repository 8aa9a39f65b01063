-- Leaked access and refresh tokens (issue 16): one row per token (its
-- digest, never the token) and place it was found, so that a report seen
-- twice acts once, apart from the reports of keys (leak_reports).
CREATE TABLE token_leak_reports (
    digest      TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    source      TEXT NOT NULL,
    reported_at BIGINT NOT NULL,
    PRIMARY KEY (digest, source)
);
