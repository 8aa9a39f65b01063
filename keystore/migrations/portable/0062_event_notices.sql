-- Events that must fire once (issue 16): key.expiring, key.expired and
-- quota.threshold. A row per subject and kind, inserted in the transaction
-- that emits the event, so two scanners can never both emit it.
CREATE TABLE event_notices (
    subject TEXT NOT NULL,
    kind    TEXT NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (subject, kind)
);

CREATE INDEX keys_expires ON keys (expires_at);
