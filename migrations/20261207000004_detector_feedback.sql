-- An operator's verdict on one threat — a (transmitter, capture device) pair: `false_alarm`
-- keeps the pair below `suspicious` (its evidence is still scored and shown), `confirmed` is
-- kept as the operator's word. Both are shown in the pair's explanation and counted in the
-- detector's precision metric. ("This is mine" is the allow-list.) One verdict per pair,
-- replaced by a newer one, removed by the key that made it or an admin.
CREATE TABLE sigint.feedback (
    radio      sigint.signal_type NOT NULL,
    identifier text NOT NULL,
    device_id  uuid NOT NULL,
    verdict    text NOT NULL CHECK (verdict IN ('false_alarm', 'confirmed')),
    note       text CHECK (char_length(note) <= 500),
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (radio, identifier, device_id)
);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shadowcheck_app') THEN
        GRANT DELETE ON sigint.feedback TO shadowcheck_app;
    END IF;
END
$$;
