-- The transmitter registry: one row per radio and identifier, kept by the registry updater
-- (src/analysis/registry.rs). Every insert of detections also queues their keys in the same
-- statement, so a row is queued exactly when it commits: the updater cannot pass over a
-- detection whose transaction commits late, as a watermark over ids could.
CREATE TABLE sigint.registry_queue (
    detection_id bigint      NOT NULL,
    detected_at  timestamptz NOT NULL,
    queued_at    timestamptz NOT NULL DEFAULT now()
);

-- Detections stored before the registry existed are registered too.
INSERT INTO sigint.registry_queue (detection_id, detected_at)
SELECT id, detected_at FROM sigint.signal_detections;

CREATE TABLE sigint.transmitters (
    radio           sigint.signal_type NOT NULL,
    -- Lowercase colon-separated MAC, or `mcc-mnc-lac-cell_id` for a cell (lac empty when unknown).
    identifier      text        NOT NULL,
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    detections      bigint      NOT NULL,
    -- Distinct UTC days seen, ascending.
    days            date[]      NOT NULL,
    -- Distinct capture devices (at most 256 kept) and names/SSIDs (at most 32 kept).
    devices         uuid[]      NOT NULL,
    names           text[]      NOT NULL,
    best_signal_dbm integer,
    best_signal_at  timestamptz,
    best_location   geometry(Point, 4326),
    -- Signal-weighted centroid of fixes with accuracy <= 100 m, and the p95 distance of those
    -- fixes from it (estimated from a uniform sample).
    location        geometry(Point, 4326),
    spread_m        double precision,
    fixes           bigint      NOT NULL,
    mac_kind        text,
    -- IEEE registry organisation of a vendor-assigned address (longest prefix: MA-S, MA-M, MA-L).
    vendor          text,
    -- The updater's running sums and sample, so each new detection costs O(1).
    estimate        jsonb       NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (radio, identifier)
);

CREATE INDEX transmitters_location ON sigint.transmitters USING gist (location);
CREATE INDEX transmitters_last_seen ON sigint.transmitters (last_seen, radio, identifier);
CREATE INDEX transmitters_detections ON sigint.transmitters (detections, radio, identifier);

-- The track of one cell: bssid and bt_address have their own indexes already.
CREATE INDEX signal_detections_cell ON sigint.signal_detections (mcc, mnc, cell_id)
    WHERE signal_type = 'cellular';
