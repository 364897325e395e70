//! Mapbox Vector Tiles built in PostGIS (`ST_AsMVT`), as martin does, but never too dense to
//! draw: a tile with more than `max_points` matching points is answered as grid cells holding
//! counts, computed from the coordinates with plain arithmetic on the spatial index's rows.

use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::db::filters::{push_envelope, push_filters, push_signal_types};
use crate::domain::search::Filters;
use crate::domain::tile::TileCoord;
use crate::domain::BBox;

/// Tile coordinate space: 4096 units a side (the MVT default, what MapLibre expects).
pub const EXTENT: u32 = 4096;
/// Points this close outside a tile are drawn in it too, so circles at an edge are not cut.
const BUFFER: u32 = 64;

/// How a tile is drawn.
#[derive(Clone, Copy, Debug)]
pub struct TileShape {
    /// Above this many matching points the tile holds cells instead.
    pub max_points: u32,
    /// Cell side in tile units (4096 / cell cells a side).
    pub cell: u32,
}

/// What one tile answer holds, for the caller's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileKind {
    Points,
    Cells,
}

/// The tile grown by the buffer, in degrees (latitude scaled at the tile's own edges).
pub fn buffered(tile: TileCoord) -> BBox {
    let b = tile.bbox();
    let f = f64::from(BUFFER) / f64::from(EXTENT);
    let dlon = (b.max_lon - b.min_lon) * f;
    let dlat = (b.max_lat - b.min_lat) * f;
    BBox {
        min_lon: (b.min_lon - dlon).max(-180.0),
        max_lon: (b.max_lon + dlon).min(180.0),
        min_lat: (b.min_lat - dlat).max(-90.0),
        max_lat: (b.max_lat + dlat).min(90.0),
    }
}

/// Pushes the tile-space x and y (0..4096, y down) of `lon`/`lat` columns: web mercator in
/// normalised world units, times 2^z, minus the tile's column and row. Cheaper than
/// ST_Transform per row, and exact to the same float precision.
fn push_tile_x(q: &mut QueryBuilder<'_, Postgres>, tile: TileCoord, lon: &str) {
    q.push(format!("(({lon} + 180.0) / 360.0 * "))
        .push_bind(f64::from(1u32 << tile.z()))
        .push(" - ")
        .push_bind(f64::from(tile.x()))
        .push(format!(") * {EXTENT}.0"));
}

fn push_tile_y(q: &mut QueryBuilder<'_, Postgres>, tile: TileCoord, lat: &str) {
    q.push(format!("((1.0 - ln(tan(radians(least(greatest({lat}, -85.0511287798), 85.0511287798)) / 2.0 + pi() / 4.0)) / pi()) / 2.0 * "))
        .push_bind(f64::from(1u32 << tile.z()))
        .push(" - ")
        .push_bind(f64::from(tile.y()))
        .push(format!(") * {EXTENT}.0"));
}

/// The latitudes of the edges between a tile's rows of cells, south to north (what
/// `width_bucket` wants): equal steps in mercator y, as the tile's own units are.
fn lat_edges(tile: TileCoord, cells: u32) -> Vec<f64> {
    let n = f64::from(1u32 << tile.z());
    let mut edges: Vec<f64> = (0..=cells)
        .map(|k| {
            let y = f64::from(tile.y()) + f64::from(k) / f64::from(cells);
            (std::f64::consts::PI * (1.0 - 2.0 * y / n))
                .sinh()
                .atan()
                .to_degrees()
        })
        .collect();
    edges.reverse();
    edges
}

/// What differs between layers: the table's rows as points with their properties, and what a
/// cell sums up.
struct LayerSql {
    name: &'static str,
    /// Longitude and latitude of a row.
    lon: &'static str,
    lat: &'static str,
    /// `expr AS name` list of a point's properties (the first may be its feature `id`).
    properties: &'static str,
    /// Whether `id` is the MVT feature id.
    has_id: bool,
    /// Columns the cells are summed from, the sums (over `p`), and the sums as the cell's
    /// properties (over `g`); the cell's `signal_type` is the most counted of the four.
    cell_columns: &'static str,
    cell_sums: &'static str,
    cell_outputs: &'static str,
}

const DETECTIONS: LayerSql = LayerSql {
    name: "detections",
    lon: "ST_X(d.location)",
    lat: "ST_Y(d.location)",
    properties: r#"d.id,
           d.signal_type::text AS signal_type,
           to_char(d.detected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS detected_at,
           COALESCE(d.bssid::text, d.bt_address::text,
                    d.mcc || '-' || d.mnc || '-' || COALESCE(d.lac::text, '') || '-' || d.cell_id) AS identifier,
           COALESCE(d.ssid, d.bt_name, d.network_type) AS name,
           COALESCE(d.signal_strength_dbm, d.bt_rssi) AS signal_dbm,
           d.device_id::text AS device_id,
           d.is_suspicious,
           d.surveillance_score AS score"#,
    has_id: true,
    cell_columns: "d.signal_type, d.detected_at, d.is_suspicious",
    cell_sums: r#"count(*) FILTER (WHERE p.signal_type = 'wifi')::int8 AS wifi,
               count(*) FILTER (WHERE p.signal_type = 'bluetooth')::int8 AS bluetooth,
               count(*) FILTER (WHERE p.signal_type = 'ble')::int8 AS ble,
               count(*) FILTER (WHERE p.signal_type = 'cellular')::int8 AS cellular,
               count(*) FILTER (WHERE p.is_suspicious)::int8 AS suspicious,
               to_char(min(p.detected_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS first_seen,
               to_char(max(p.detected_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_seen"#,
    cell_outputs: "g.wifi, g.bluetooth, g.ble, g.cellular, g.suspicious, g.first_seen, g.last_seen",
};

const TRANSMITTERS: LayerSql = LayerSql {
    name: "transmitters",
    lon: "ST_X(t.location)",
    lat: "ST_Y(t.location)",
    properties: r#"t.radio::text AS signal_type,
           t.identifier,
           t.names[1] AS name,
           t.detections,
           to_char(t.first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS first_seen,
           to_char(t.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_seen,
           t.vendor,
           t.tracker_class,
           t.level::text AS level,
           t.surveillance_score AS score,
           t.spread_m"#,
    has_id: false,
    cell_columns: "t.radio, t.level",
    cell_sums: r#"count(*) FILTER (WHERE p.radio = 'wifi')::int8 AS wifi,
               count(*) FILTER (WHERE p.radio = 'bluetooth')::int8 AS bluetooth,
               count(*) FILTER (WHERE p.radio = 'ble')::int8 AS ble,
               count(*) FILTER (WHERE p.radio = 'cellular')::int8 AS cellular,
               count(*) FILTER (WHERE p.level <> 'none')::int8 AS suspicious"#,
    cell_outputs: "g.wifi, g.bluetooth, g.ble, g.cellular, g.suspicious",
};

/// `, key FROM ... WHERE ...`: a layer's rows whose stored tile key (migration `tile_keys`) is in
/// a range (inclusive), with that key as `key`. A layer with one draws a dense tile's cells from
/// a single key range, read from the covering index alone.
type KeyedRows<'f> = dyn Fn(&mut QueryBuilder<'_, Postgres>, (i64, i64)) + Sync + 'f;

/// One tile of a layer. First, in one statement: up to `max_points + 1` matching rows of the
/// tile and its buffer, and the tile of them when there are no more than `max_points`; only a
/// denser tile costs a second statement, which groups every matching point of the tile itself
/// (not the buffer, so no point counts twice) into cells drawn at their points' mean position.
/// Positions become tile units by arithmetic on the coordinates (no ST_Transform per row).
/// Both run unprepared, planned for their tile (see `detections::search`).
async fn layer_tile(
    conn: &mut PgConnection,
    tile: TileCoord,
    shape: TileShape,
    layer: &LayerSql,
    from_where: impl Fn(&mut QueryBuilder<'_, Postgres>, BBox),
    from_keys: Option<&KeyedRows<'_>>,
) -> Result<(Vec<u8>, TileKind), sqlx::Error> {
    let area = buffered(tile);
    // Counted first without the properties (a dense tile never needs them); the points are
    // read again, with them, only when there are few enough.
    let mut q = QueryBuilder::<Postgres>::new(
        "WITH n AS MATERIALIZED (SELECT count(*) AS n FROM (SELECT 1 ",
    );
    from_where(&mut q, area);
    q.push(" LIMIT ")
        .push_bind(i64::from(shape.max_points) + 1)
        .push(") s) SELECT n.n, CASE WHEN n.n <= ")
        .push_bind(i64::from(shape.max_points))
        .push(format!(
            " THEN (SELECT ST_AsMVT(p, '{}', {EXTENT}, 'geom'{}) FROM (SELECT ST_MakePoint(round(",
            layer.name,
            if layer.has_id { ", 'id'" } else { "" }
        ));
    push_tile_x(&mut q, tile, layer.lon);
    q.push("), round(");
    push_tile_y(&mut q, tile, layer.lat);
    q.push(")) AS geom, ").push(layer.properties).push(" ");
    from_where(&mut q, area);
    q.push(") p) END FROM n");
    let (n, points): (i64, Option<Vec<u8>>) = crate::db::observe(
        if layer.has_id {
            "tile_detections"
        } else {
            "tile_transmitters"
        },
        q.build_query_as().persistent(false).fetch_one(&mut *conn),
    )
    .await?;
    if n <= i64::from(shape.max_points) {
        return Ok((points.unwrap_or_default(), TileKind::Points));
    }
    // Cells by plain arithmetic per row: a column from the longitude (linear), a row from the
    // latitude against the cells' edges computed here (no logarithm per row); the mercator
    // projection only for each cell's mean position. The most counted type from the counts (an
    // ordered-set `mode()` sorted every row of every cell).
    let cells_a_side = EXTENT / shape.cell;
    let mut q = QueryBuilder::<Postgres>::new("SELECT ST_AsMVT(c, ");
    q.push_bind(layer.name).push(format!(
        ", {EXTENT}, 'geom') FROM (SELECT ST_MakePoint(round("
    ));
    push_tile_x(&mut q, tile, "g.lon");
    q.push("), round(");
    push_tile_y(&mut q, tile, "g.lat");
    q.push(format!(
        ")) AS geom, true AS cluster, g.count, {}, \
         CASE greatest(g.wifi, g.bluetooth, g.ble, g.cellular) WHEN g.wifi THEN 'wifi' \
           WHEN g.bluetooth THEN 'bluetooth' WHEN g.ble THEN 'ble' ELSE 'cellular' END AS signal_type \
         FROM (SELECT avg(p.lon) AS lon, avg(p.lat) AS lat, count(*)::int8 AS count, {} \
         FROM (SELECT {} AS lon, {} AS lat, {} ",
        layer.cell_outputs, layer.cell_sums, layer.lon, layer.lat, layer.cell_columns
    ));
    match from_keys.zip(tile.cell_shift(cells_a_side)) {
        Some((from_keys, shift)) => {
            // The tile is one key range and each cell a range within it (its key at the cells'
            // zoom): no per-row geometry test, and the covering index answers alone.
            from_keys(&mut q, tile.key_range());
            // int8 >> int4: the shift is an int4.
            q.push(") p GROUP BY p.key >> ")
                .push_bind(shift as i32)
                .push(") g) c");
        }
        None => {
            let b = tile.bbox();
            let cell_deg = (b.max_lon - b.min_lon) / f64::from(cells_a_side);
            from_where(&mut q, area);
            // The tile itself, not its buffer, as tile units [0, 4096) on both axes are.
            q.push(") p WHERE p.lon >= ")
                .push_bind(b.min_lon)
                .push(" AND p.lon < ")
                .push_bind(b.max_lon)
                .push(" AND p.lat > ")
                .push_bind(b.min_lat)
                .push(" AND p.lat <= ")
                .push_bind(b.max_lat)
                .push(" GROUP BY floor((p.lon - ")
                .push_bind(b.min_lon)
                .push(") / ")
                .push_bind(cell_deg)
                .push("), width_bucket(p.lat, ")
                .push_bind(lat_edges(tile, cells_a_side))
                .push(")) g) c");
        }
    }
    let cells: Option<Vec<u8>> = crate::db::observe(
        if layer.has_id {
            "tile_detection_cells"
        } else {
            "tile_transmitter_cells"
        },
        q.build_query_scalar()
            .persistent(false)
            .fetch_one(&mut *conn),
    )
    .await?;
    Ok((cells.unwrap_or_default(), TileKind::Cells))
}

/// The detections layer of `tile`, matching `filters` (its area is the tile's).
/// Empty bytes when nothing matches.
pub async fn detections(
    conn: &mut PgConnection,
    tile: TileCoord,
    filters: &Filters,
    shape: TileShape,
) -> Result<(Vec<u8>, TileKind), sqlx::Error> {
    layer_tile(
        conn,
        tile,
        shape,
        &DETECTIONS,
        |q, area| {
            q.push("FROM sigint.signal_detections d WHERE d.location && ");
            push_envelope(q, area);
            push_filters(q, filters);
        },
        Some(&|q, (first, last)| {
            q.push(", d.tile_key AS key FROM sigint.signal_detections d WHERE d.tile_key BETWEEN ")
                .push_bind(first)
                .push(" AND ")
                .push_bind(last);
            push_filters(q, filters);
        }),
    )
    .await
}

/// The filters a transmitter can answer (one row for all its detections: no detection-only
/// ones, which the HTTP layer refuses for this layer).
fn transmitters_from(q: &mut QueryBuilder<'_, Postgres>, area: BBox, filters: &Filters) {
    q.push("FROM sigint.transmitters t WHERE t.location && ");
    push_envelope(q, area);
    if let Some(start) = filters.window.start() {
        q.push(" AND t.last_seen >= ").push_bind(start);
    }
    if let Some(end) = filters.window.end() {
        q.push(" AND t.first_seen < ").push_bind(end);
    }
    push_signal_types(q, "t.radio", &filters.signal_types);
    if let Some(device) = filters.device_id {
        q.push(" AND ").push_bind(device).push(" = ANY(t.devices)");
    }
    match filters.is_suspicious {
        Some(true) => {
            q.push(" AND t.level <> 'none'");
        }
        Some(false) => {
            q.push(" AND t.level = 'none'");
        }
        None => {}
    }
    if let Some(score) = filters.min_score {
        q.push(" AND t.surveillance_score >= ")
            .push_bind(score.value());
    }
}

/// The transmitters layer: each transmitter at its estimated position.
pub async fn transmitters(
    conn: &mut PgConnection,
    tile: TileCoord,
    filters: &Filters,
    shape: TileShape,
) -> Result<(Vec<u8>, TileKind), sqlx::Error> {
    layer_tile(
        conn,
        tile,
        shape,
        &TRANSMITTERS,
        |q, area| transmitters_from(q, area, filters),
        None,
    )
    .await
}

/// The extent of the data, for TileJSON `bounds`: that of the registry's transmitters (one row
/// per transmitter, so far fewer than detections); `None` while the registry is empty.
/// Where and when the data is: the registry's box (one row per transmitter) and the first and
/// last detection (index ends).
#[derive(Clone, Debug)]
pub struct Extent {
    pub bounds: Option<BBox>,
    pub first: Option<chrono::DateTime<chrono::Utc>>,
    pub last: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn extent(conn: &mut PgConnection) -> Result<Extent, sqlx::Error> {
    let bounds = detection_bounds(conn).await?;
    let (first, last) = crate::db::detections::time_extent(conn).await?;
    Ok(Extent {
        bounds,
        first,
        last,
    })
}

async fn detection_bounds(conn: &mut PgConnection) -> Result<Option<BBox>, sqlx::Error> {
    type Corners = (Option<f64>, Option<f64>, Option<f64>, Option<f64>);
    let row: Option<Corners> = crate::db::observe(
        "tile_bounds",
        sqlx::query_as(
            r#"
SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
FROM (SELECT ST_Extent(location) AS e FROM sigint.transmitters) s
"#,
        )
        .fetch_optional(conn),
    )
    .await?;
    Ok(match row {
        Some((Some(min_lon), Some(min_lat), Some(max_lon), Some(max_lat))) => Some(BBox {
            min_lon,
            min_lat,
            max_lon,
            max_lat,
        }),
        _ => None,
    })
}
