-- A finer histogram of `location` (statistics target 1000 instead of 100). With the default,
-- PostGIS estimated a 10 km box over a city at 0.2 % of the rows when it held 9.5 %, so the
-- planner sorted every match of a box to return the first 1000 by id (224 ms on 1M rows)
-- instead of walking the id index and filtering (5 ms). Search pages, OGC API pages and
-- tiles all ask such questions. ANALYZE samples 300,000 rows per partition instead of 30,000.
ALTER TABLE sigint.signal_detections ALTER COLUMN location SET STATISTICS 1000;

-- New monthly partitions get the same target.
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
    -- LIKE does not copy a column's statistics target.
    EXECUTE format('ALTER TABLE sigint.%I ALTER COLUMN location SET STATISTICS 1000', part_name);
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
