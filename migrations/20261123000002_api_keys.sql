-- API keys for capture devices and clients. Only a SHA-256 of each key is stored: keys are 240+
-- bits of randomness, so a fast hash is enough (no dictionary to attack) and lookups stay O(1).
CREATE TABLE sigint.api_keys (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    -- The first characters of the key, shown in listings so an operator can tell keys apart.
    key_prefix   text        NOT NULL,
    key_hash     bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    scopes       text[]      NOT NULL CHECK (scopes <@ ARRAY['ingest', 'read', 'admin'] AND cardinality(scopes) > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
