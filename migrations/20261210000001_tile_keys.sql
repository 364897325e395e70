-- Tile keys: each detection's web-mercator position at zoom 31 as a Morton (Z-order) code, so the
-- positions of any tile of zoom <= 31 are one range of keys, and a tile's grid cells are ranges
-- within it (the key shifted right by two bits per zoom level).
--
-- Why: a dense tile is drawn as counted cells, which reads every matching row of the tile.
-- Through the GiST index that is a heap fetch per row (a 200,000-row city tile at zoom 10:
-- ~400 ms). A btree over the key that carries what the cells need answers the same tile from
-- the index alone (an index-only range scan).

-- The Morton code is built from a table of each byte's bits spread apart (bit i to bit 2i), and
-- every function below is plain SQL over pg_catalog: the planner inlines them into the column's
-- expression (measured: ~2 us a row on insert; the same code as non-inlined functions cost 36 us
-- a row, a third of a COPY's time), and they need no search_path (pg_restore runs with an
-- empty one). Not STRICT, which would stop the inlining; NULL in, NULL out all the same (a row
-- without a position has no key: least/greatest alone would clamp a NULL to the world's corner).
CREATE FUNCTION sigint.morton_bytes() RETURNS int8[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT '{
        0,1,4,5,16,17,20,21,64,65,68,69,80,81,84,85,
        256,257,260,261,272,273,276,277,320,321,324,325,336,337,340,341,
        1024,1025,1028,1029,1040,1041,1044,1045,1088,1089,1092,1093,1104,1105,1108,1109,
        1280,1281,1284,1285,1296,1297,1300,1301,1344,1345,1348,1349,1360,1361,1364,1365,
        4096,4097,4100,4101,4112,4113,4116,4117,4160,4161,4164,4165,4176,4177,4180,4181,
        4352,4353,4356,4357,4368,4369,4372,4373,4416,4417,4420,4421,4432,4433,4436,4437,
        5120,5121,5124,5125,5136,5137,5140,5141,5184,5185,5188,5189,5200,5201,5204,5205,
        5376,5377,5380,5381,5392,5393,5396,5397,5440,5441,5444,5445,5456,5457,5460,5461,
        16384,16385,16388,16389,16400,16401,16404,16405,16448,16449,16452,16453,16464,16465,16468,16469,
        16640,16641,16644,16645,16656,16657,16660,16661,16704,16705,16708,16709,16720,16721,16724,16725,
        17408,17409,17412,17413,17424,17425,17428,17429,17472,17473,17476,17477,17488,17489,17492,17493,
        17664,17665,17668,17669,17680,17681,17684,17685,17728,17729,17732,17733,17744,17745,17748,17749,
        20480,20481,20484,20485,20496,20497,20500,20501,20544,20545,20548,20549,20560,20561,20564,20565,
        20736,20737,20740,20741,20752,20753,20756,20757,20800,20801,20804,20805,20816,20817,20820,20821,
        21504,21505,21508,21509,21520,21521,21524,21525,21568,21569,21572,21573,21584,21585,21588,21589,
        21760,21761,21764,21765,21776,21777,21780,21781,21824,21825,21828,21829,21840,21841,21844,21845
    }'::int8[]
$$;

-- The zoom-31 pixel column of a longitude, and row (north to south) of a latitude; latitudes
-- beyond web mercator's +-85.0511 clamp to its edge.
CREATE FUNCTION sigint.tile_x(lon float8) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT least(greatest(floor((lon + 180.0) / 360.0 * 2147483648.0), 0), 2147483647)::bigint
$$;

CREATE FUNCTION sigint.tile_y(lat float8) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT least(greatest(floor((1.0 - asinh(tan(radians(
        least(greatest(lat, -85.0511287798), 85.0511287798)))) / pi()) / 2.0 * 2147483648.0),
        0), 2147483647)::bigint
$$;

-- The key of a position: the column's bits on the even bits, the row's on the odd ones.
-- Mirrored in Rust by domain::tile::key_of (a test holds the two to each other).
CREATE FUNCTION sigint.tile_key(lon float8, lat float8) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN lon IS NULL OR lat IS NULL THEN NULL ELSE
           (((sigint.morton_bytes())[(sigint.tile_x(lon) & 255) + 1])
         | ((sigint.morton_bytes())[((sigint.tile_x(lon) >> 8) & 255) + 1] << 16)
         | ((sigint.morton_bytes())[((sigint.tile_x(lon) >> 16) & 255) + 1] << 32)
         | ((sigint.morton_bytes())[((sigint.tile_x(lon) >> 24) & 255) + 1] << 48))
         | ((((sigint.morton_bytes())[(sigint.tile_y(lat) & 255) + 1])
         | ((sigint.morton_bytes())[((sigint.tile_y(lat) >> 8) & 255) + 1] << 16)
         | ((sigint.morton_bytes())[((sigint.tile_y(lat) >> 16) & 255) + 1] << 32)
         | ((sigint.morton_bytes())[((sigint.tile_y(lat) >> 24) & 255) + 1] << 48)) << 1)
    END
$$;

-- Stored, so every way a row gets or changes its position (a fix, a sensor's position, an
-- estimate) keeps its key. Rewrites the table once.
-- (The column's expression is stored resolved, so ST_X/ST_Y need no search_path either.)
ALTER TABLE sigint.signal_detections
    ADD COLUMN tile_key bigint GENERATED ALWAYS AS (sigint.tile_key(ST_X(location), ST_Y(location))) STORED;

-- What a cell sums (type, time, flag), where it is drawn (the mean position), and what the
-- default filters read (position_source), so the cells of a tile never touch the table; and the
-- primary key, so a box's page finds its rows' ids the same way (then reads only those rows).
CREATE INDEX signal_detections_tile_key ON sigint.signal_detections (tile_key)
    INCLUDE (id, location, signal_type, detected_at, is_suspicious, position_source)
    WHERE tile_key IS NOT NULL;

-- New monthly partitions: a partition must compute tile_key as its parent does (ATTACH refuses
-- a plain column), which LIKE copies only when asked.
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
        'CREATE TABLE sigint.%I (LIKE sigint.signal_detections INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)',
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
