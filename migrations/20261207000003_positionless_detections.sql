-- Detections without a position: a capture without a GPS fix (a Raspberry Pi in a car, a
-- sensor on a shelf, a Kismet log whose rows say 0,0) is stored with a NULL location, tagged
-- `no-fix`, instead of being refused. It counts for the registry, the detector's time-only
-- evidence and every non-spatial query; spatial operators never match NULL, so maps, tiles,
-- boxes, radii and nearest-N never show it. Dropping NOT NULL on the partitioned parent drops
-- it on every partition; no row is rewritten.
ALTER TABLE sigint.signal_detections ALTER COLUMN location DROP NOT NULL;
