-- A person's own word on a transmitter: a free-text note ("the neighbour's car", "bag tag
-- bought 2026-03") and whether to watch it. A watched transmitter stays on the threats list
-- whatever the detector's level, so its new sightings are in view. One row per transmitter,
-- replaced by the next note, removed by an operator.
CREATE TABLE sigint.transmitter_notes (
    radio      sigint.signal_type NOT NULL,
    identifier text NOT NULL,
    note       text CHECK (char_length(note) <= 1000),
    watched    boolean NOT NULL DEFAULT false,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (radio, identifier)
);

CREATE INDEX transmitter_notes_watched ON sigint.transmitter_notes (radio, identifier) WHERE watched;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shadowcheck_app') THEN
        GRANT DELETE ON sigint.transmitter_notes TO shadowcheck_app;
    END IF;
END
$$;
