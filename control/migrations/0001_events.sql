-- Live events: one row per event. The record is the event's settings document (JSON): the
-- admin API reads and writes it whole, and no query needs its fields as columns. Stream keys
-- are stored as SHA-256 digests only.
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
