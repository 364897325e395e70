-- ShadowCheck core schema. Forward-only; the reasons behind each choice are in docs/schema.md.

-- In compose the extensions are created by the database's init SQL as superuser; IF NOT EXISTS
-- makes this a no-op there and lets the embedded cluster and tests (superuser) create them here.
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE SCHEMA IF NOT EXISTS sigint;

CREATE TYPE sigint.signal_type AS ENUM ('wifi', 'bluetooth', 'ble', 'cellular');

-- A plain sequence rather than an identity column: partitions created later by
-- sigint.ensure_partition() are attached with LIKE, and a shared sequence default behaves the same
-- on PostgreSQL 15 and 17 (identity semantics for partitions changed in 17).
CREATE SEQUENCE sigint.signal_detections_id_seq AS bigint;

CREATE TABLE sigint.signal_detections (
    id                  bigint      NOT NULL DEFAULT nextval('sigint.signal_detections_id_seq'),
    detected_at         timestamptz NOT NULL,
    capture_duration_ms integer     CHECK (capture_duration_ms >= 0),
    location            geometry(Point, 4326) NOT NULL,
    altitude_meters     double precision,
    accuracy_meters     double precision CHECK (accuracy_meters >= 0),
    signal_type         sigint.signal_type NOT NULL,
    protocol_version    text,
    -- wifi
    ssid                text,
    bssid               macaddr,
    channel             integer,
    frequency_mhz       integer,
    signal_strength_dbm integer,
    -- bluetooth / ble
    bt_address          macaddr,
    bt_name             text,
    bt_class            integer,
    bt_rssi             integer,
    -- cellular (lac also carries LTE/NR tracking area codes)
    cell_id             bigint,
    lac                 integer,
    mcc                 smallint,
    mnc                 smallint,
    network_type        text,
    -- capture device and analysis
    device_id           uuid,
    device_name         text,
    is_suspicious       boolean     NOT NULL DEFAULT false,
    surveillance_score  real        CHECK (surveillance_score BETWEEN 0 AND 100),
    raw_data            jsonb,
    tags                text[]      NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- The identifier that names the transmitter must be present for its type.
    CONSTRAINT signal_detections_identifier CHECK (
        CASE signal_type
            WHEN 'wifi' THEN bssid IS NOT NULL
            WHEN 'cellular' THEN cell_id IS NOT NULL AND mcc IS NOT NULL AND mnc IS NOT NULL
            ELSE bt_address IS NOT NULL
        END
    ),
    PRIMARY KEY (id, detected_at)
) PARTITION BY RANGE (detected_at);

ALTER SEQUENCE sigint.signal_detections_id_seq OWNED BY sigint.signal_detections.id;

-- The natural key that makes ingest idempotent: one device seeing one transmitter at one instant.
-- NULLS NOT DISTINCT so rows without a device_id (or without a lac) still deduplicate. It leads
-- with detected_at, so it is also the time-range index (no separate detected_at B-tree).
CREATE UNIQUE INDEX signal_detections_natural_key ON sigint.signal_detections
    (detected_at, signal_type, device_id, bssid, bt_address, mcc, mnc, lac, cell_id) NULLS NOT DISTINCT;

CREATE INDEX signal_detections_location ON sigint.signal_detections USING gist (location);
CREATE INDEX signal_detections_type_time ON sigint.signal_detections (signal_type, detected_at);
CREATE INDEX signal_detections_device ON sigint.signal_detections (device_id, detected_at)
    WHERE device_id IS NOT NULL;
CREATE INDEX signal_detections_bssid ON sigint.signal_detections (bssid) WHERE bssid IS NOT NULL;
CREATE INDEX signal_detections_bt_address ON sigint.signal_detections (bt_address)
    WHERE bt_address IS NOT NULL;
CREATE INDEX signal_detections_ssid_trgm ON sigint.signal_detections USING gin (ssid gin_trgm_ops)
    WHERE ssid IS NOT NULL;
CREATE INDEX signal_detections_suspicious ON sigint.signal_detections (detected_at)
    WHERE is_suspicious;

CREATE FUNCTION sigint.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER signal_detections_touch_updated_at
    BEFORE UPDATE ON sigint.signal_detections
    FOR EACH ROW EXECUTE FUNCTION sigint.touch_updated_at();

-- Monthly partitions, created on demand by ingest. The table is built standalone and then
-- ATTACHed, which takes only SHARE UPDATE EXCLUSIVE on the parent, so concurrent readers and
-- writers are not blocked. SECURITY DEFINER lets a least-privilege API role call it without
-- holding DDL rights itself.
CREATE FUNCTION sigint.ensure_partition(month_start date) RETURNS text
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
    -- Serialise creators of the same month; the loser sees the winner's table.
    PERFORM pg_advisory_xact_lock(hashtext('sigint.' || part_name));
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

-- Retention: dropping a month is a catalog operation, not a DELETE of millions of rows.
CREATE FUNCTION sigint.drop_partitions_before(cutoff timestamptz) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_bound
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'sigint.signal_detections'::regclass
    LOOP
        IF part.upper_bound <= cutoff THEN
            EXECUTE format('DROP TABLE sigint.%I', part.relname);
            RETURN NEXT part.relname;
        END IF;
    END LOOP;
END
$$;

-- The current month and the next two exist from the start, so the first ingest after a month
-- boundary does not pay for DDL.
SELECT sigint.ensure_partition(((now() AT TIME ZONE 'UTC') + make_interval(months => m))::date) FROM generate_series(0, 2) AS m;

CREATE VIEW sigint.recent_detections AS
    SELECT * FROM sigint.signal_detections WHERE detected_at >= now() - interval '24 hours';

-- Idempotency-Key replay store: the first response to a key is kept so a retry gets it back.
CREATE TABLE sigint.idempotency_keys (
    idempotency_key text        PRIMARY KEY,
    request_hash    bytea       NOT NULL,
    status_code     smallint,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created_at ON sigint.idempotency_keys (created_at);
