-- Audit trail of writes (who, what, target, before/after summary), one row
-- per entity a write changed, appended in the write's own transaction.
-- Summaries never hold a secret: keys appear by id and display prefix.
CREATE TABLE audit (
    seq     {{serial_pk}},
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    entity  TEXT NOT NULL,
    target  TEXT NOT NULL,
    before  TEXT,
    after   TEXT
);

CREATE INDEX audit_target ON audit (target, seq);
