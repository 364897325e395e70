-- Concurrent creators of one new month failed with `relation "signal_detections_y…" already
-- exists`: an advisory lock does not make PostgreSQL process catalog invalidations, so the
-- waiter's to_regclass re-check still saw its stale "no such table" and went on to CREATE TABLE.
-- Locking the parent itself does both jobs: it serialises creators, and taking a relation lock
-- refreshes the catalog cache, so the re-check sees the winner's table. SHARE UPDATE EXCLUSIVE is
-- what ATTACH PARTITION takes anyway; it does not block inserts or reads.
CREATE OR REPLACE FUNCTION sigint.ensure_partition(month_start date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, sigint AS $$
DECLARE
    -- Months are UTC months whatever the session's TimeZone, so bounds never drift.
    lower_bound timestamptz := date_trunc('month', month_start::timestamp) AT TIME ZONE 'UTC';
    upper_bound timestamptz := (date_trunc('month', month_start::timestamp) + interval '1 month') AT TIME ZONE 'UTC';
    part_name text := 'signal_detections_y' || to_char(month_start, 'YYYY') || 'm' || to_char(month_start, 'MM');
BEGIN
    IF to_regclass(format('sigint.%I', part_name)) IS NOT NULL THEN
        RETURN part_name;
    END IF;
    LOCK TABLE sigint.signal_detections IN SHARE UPDATE EXCLUSIVE MODE;
    IF to_regclass(format('sigint.%I', part_name)) IS NOT NULL THEN
        RETURN part_name;
    END IF;
    EXECUTE format(
        'CREATE TABLE sigint.%I (LIKE sigint.signal_detections INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
        part_name);
    -- The bound CHECK lets ATTACH skip its validation scan.
    EXECUTE format(
        'ALTER TABLE sigint.%I ADD CONSTRAINT %I CHECK (detected_at >= %L AND detected_at < %L)',
        part_name, part_name || '_bounds', lower_bound, upper_bound);
    EXECUTE format(
        'ALTER TABLE sigint.signal_detections ATTACH PARTITION sigint.%I FOR VALUES FROM (%L) TO (%L)',
        part_name, lower_bound, upper_bound);
    EXECUTE format('ALTER TABLE sigint.%I DROP CONSTRAINT %I', part_name, part_name || '_bounds');
    RETURN part_name;
END
$$;
