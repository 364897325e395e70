-- The allow-list and safe zones are an operator's decisions (scope `operator`): each entry now
-- records the name of the API key that made it (key names are never reused), and only that key
-- or an admin may remove it. Entries made before carry no owner: only an admin may remove those.
ALTER TABLE sigint.allowlist ADD COLUMN created_by text;
ALTER TABLE sigint.safe_zones ADD COLUMN created_by text;
-- The scorer reads the zones near the places it scores, not the whole table.
CREATE INDEX safe_zones_location ON sigint.safe_zones USING gist (location);
-- Keyset pages of the lists.
CREATE INDEX allowlist_created ON sigint.allowlist (created_at DESC, radio, identifier);
-- The new scope may be given to keys.
ALTER TABLE sigint.api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE sigint.api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (scopes <@ ARRAY['ingest', 'read', 'operator', 'admin'] AND cardinality(scopes) > 0);
