-- Idempotency keys belong to the caller (the API key), as in the IETF Idempotency-Key draft
-- and Stripe: one device reusing another's key value neither reads its stored answer nor gets
-- its own batch refused with 409. Rows from before have no caller and simply expire.
ALTER TABLE sigint.idempotency_keys ADD COLUMN caller text NOT NULL DEFAULT '';
ALTER TABLE sigint.idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE sigint.idempotency_keys ADD PRIMARY KEY (caller, idempotency_key);
