-- Admin API bearer tokens made through the API (those of the configuration file are not
-- stored). Only the SHA-256 digest of a token is kept.
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
