-- One row per file import (WiGLE CSV upload or CLI import): who, what, and the final report.
-- Rows themselves are deduplicated by the detections' natural key, so re-importing a file
-- stores nothing twice; this table is the audit trail.
CREATE TABLE sigint.imports (
    id          uuid        PRIMARY KEY,
    format      text        NOT NULL,
    filename    text,
    source      jsonb       NOT NULL DEFAULT '{}',
    report      jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX imports_created_at ON sigint.imports (created_at);
