-- The following detector (docs/detector.md): what a BLE advertisement and a wifi network
-- announce, the registry's tracker class and flags, scores per (transmitter, capture device),
-- the allow-list and safe zones.

-- Read by the tracker classifier (BLE) and the evil-twin check (wifi security).
ALTER TABLE sigint.signal_detections
    ADD COLUMN security            text,
    ADD COLUMN ble_manufacturer_id integer CHECK (ble_manufacturer_id BETWEEN 0 AND 65535),
    ADD COLUMN ble_service_uuids   text[] NOT NULL DEFAULT '{}',
    ADD COLUMN ble_advertisement   text;

ALTER TABLE sigint.transmitters
    -- Security classes seen (open, wep, wpa, wpa2, wpa3, enterprise), ascending.
    ADD COLUMN security           text[] NOT NULL DEFAULT '{}',
    ADD COLUMN tracker_class      text,
    ADD COLUMN tracker_evidence   text,
    -- Flags the row shows on its own (attack-tool prefix, mobile access point, a cell seen
    -- farther apart than any cell covers): [{flag, evidence}].
    ADD COLUMN flags              jsonb NOT NULL DEFAULT '[]',
    -- Flags that need other rows (evil twin, a cell whose area code changed).
    ADD COLUMN related_flags      jsonb NOT NULL DEFAULT '[]',
    -- The highest following score over capture devices, and its level.
    ADD COLUMN surveillance_score real,
    ADD COLUMN level              text NOT NULL DEFAULT 'none';

CREATE INDEX transmitters_score ON sigint.transmitters (surveillance_score, radio, identifier)
    WHERE surveillance_score IS NOT NULL;
-- Evil-twin candidates: wifi rows that announce a security (rows without one never need it,
-- and every registry update of an indexed row rewrites its GIN entries).
CREATE INDEX transmitters_names ON sigint.transmitters USING gin (names)
    WHERE radio = 'wifi' AND cardinality(security) > 0;
-- One cell heard under several area codes: its rows share mcc, mnc and cell id.
CREATE INDEX transmitters_cell ON sigint.transmitters
    (split_part(identifier, '-', 1), split_part(identifier, '-', 2), split_part(identifier, '-', 4))
    WHERE radio = 'cellular';

-- Where each capture device was, minute by minute (sums, so a minute's fixes average): the
-- path against which a transmitter's presence is measured.
CREATE TABLE sigint.device_minutes (
    device_id uuid        NOT NULL,
    minute    timestamptz NOT NULL,
    lat_sum   double precision NOT NULL,
    lon_sum   double precision NOT NULL,
    fixes     integer     NOT NULL,
    PRIMARY KEY (device_id, minute)
);

-- Pairs whose score is stale: filled by the registry updater, drained by the scorer.
CREATE TABLE sigint.following_queue (
    radio      sigint.signal_type NOT NULL,
    identifier text NOT NULL,
    device_id  uuid NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (radio, identifier, device_id)
);

CREATE TABLE sigint.following (
    radio        sigint.signal_type NOT NULL,
    identifier   text        NOT NULL,
    device_id    uuid        NOT NULL,
    score        real        NOT NULL CHECK (score BETWEEN 0 AND 100),
    level        text        NOT NULL CHECK (level IN ('none', 'watch', 'suspicious', 'alert')),
    gates_passed boolean     NOT NULL,
    -- When the pair was first and last seen together in the scored window.
    together_from timestamptz,
    together_to   timestamptz,
    explanation  jsonb       NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    -- Last time this pair raised an alert (at most every 8 hours).
    alerted_at   timestamptz,
    PRIMARY KEY (radio, identifier, device_id)
);
CREATE INDEX following_level ON sigint.following (level, computed_at DESC);
CREATE INDEX following_device ON sigint.following (device_id, together_to) WHERE gates_passed;

CREATE TABLE sigint.allowlist (
    radio      sigint.signal_type NOT NULL,
    identifier text        NOT NULL,
    note       text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (radio, identifier)
);

CREATE TABLE sigint.safe_zones (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    location   geometry(Point, 4326) NOT NULL,
    radius_m   double precision NOT NULL CHECK (radius_m > 0 AND radius_m <= 5000),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Detections stored before the detector existed, and already folded into the registry (the
-- updater does the same for those still queued), get their capture paths (their pairs are
-- queued for scoring by 20261130000004, from their sighting counts).
INSERT INTO sigint.device_minutes (device_id, minute, lat_sum, lon_sum, fixes)
SELECT d.device_id, date_trunc('minute', d.detected_at), sum(ST_Y(d.location)),
       sum(ST_X(d.location)), count(*)
FROM sigint.signal_detections d
WHERE d.device_id IS NOT NULL
  AND (d.accuracy_meters IS NULL OR d.accuracy_meters <= 100)
  AND (d.altitude_meters IS NULL OR d.altitude_meters <= 3000)
  AND NOT EXISTS (SELECT 1 FROM sigint.registry_queue q
                  WHERE q.detection_id = d.id AND q.detected_at = d.detected_at)
GROUP BY 1, 2;

