-- How often each capture device has heard each transmitter, kept by the registry updater: a
-- pair is queued for scoring only once it has the sightings the first gate needs, so the
-- scorer's per-pair reads are spent on pairs that can score (most pairs never reach three).
CREATE TABLE sigint.pair_sightings (
    radio      sigint.signal_type NOT NULL,
    identifier text NOT NULL,
    device_id  uuid NOT NULL,
    sightings  bigint NOT NULL,
    PRIMARY KEY (radio, identifier, device_id)
);

INSERT INTO sigint.pair_sightings (radio, identifier, device_id, sightings)
SELECT d.signal_type, COALESCE(d.bssid, d.bt_address)::text, d.device_id, count(*)
FROM sigint.signal_detections d
WHERE d.device_id IS NOT NULL AND d.signal_type <> 'cellular'
  AND NOT EXISTS (SELECT 1 FROM sigint.registry_queue q
                  WHERE q.detection_id = d.id AND q.detected_at = d.detected_at)
GROUP BY 1, 2, 3;

-- Pairs already heard three times are scored once the updater starts.
INSERT INTO sigint.following_queue (radio, identifier, device_id)
SELECT radio, identifier, device_id FROM sigint.pair_sightings WHERE sightings >= 3
ON CONFLICT DO NOTHING;

-- The scorer takes the longest-waiting pairs first.
CREATE INDEX following_queue_queued_at ON sigint.following_queue (queued_at);
