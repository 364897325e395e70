-- Capture devices as a resource: a phone, a Kismet rig, an ESP32 wardriver, a stumbler, or a
-- fixed sensor with a surveyed position. Detections name their device by `device_id`; a device
-- row is optional (rows from unregistered devices are stored as before). A fixed sensor's
-- position is given to its rows that have no fix of their own.
CREATE TABLE sigint.capture_devices (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 128),
    kind        text NOT NULL CHECK (kind IN ('phone', 'kismet_rig', 'esp32', 'stumbler', 'fixed_sensor')),
    -- Only for a stationary device: where it stands, and how well that is known.
    position    geometry(Point, 4326),
    accuracy_m  real CHECK (accuracy_m > 0 AND accuracy_m <= 10000),
    note        text CHECK (char_length(note) <= 500),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((position IS NULL) = (accuracy_m IS NULL))
);

-- Which keys report for which device (one row per pair, touched once per stored batch).
CREATE TABLE sigint.device_reporters (
    device_id  uuid NOT NULL,
    key_name   text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, key_name)
);

-- Where a detection's position came from when it is not the capture's own fix: `sensor` (the
-- fixed sensor's surveyed position) or `estimated` (from the transmitters the registry knows in
-- the same scan). NULL for the capture's own fix, or no position at all. Maps and spatial
-- queries leave estimated positions out unless asked; the registry and the detector never use
-- them. A NULL default adds the column without rewriting a row.
ALTER TABLE sigint.signal_detections
    ADD COLUMN position_source text CHECK (position_source IN ('sensor', 'estimated'));

-- An operator removes a device (its detections stay).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shadowcheck_app') THEN
        GRANT DELETE ON sigint.capture_devices TO shadowcheck_app;
    END IF;
END
$$;
