//! Mapbox Vector Tiles built in PostGIS (`ST_AsMVT`), as martin does, but never too dense to
//! draw: a tile with more than `max_points` matching points is answered as grid cells holding
//! counts, computed from the coordinates with plain arithmetic on the spatial index's rows.

use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::domain::search::DetectionSearch;
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

fn push_envelope(q: &mut QueryBuilder<'_, Postgres>, b: BBox) {
    q.push("ST_MakeEnvelope(")
        .push_bind(b.min_lon)
        .push(", ")
        .push_bind(b.min_lat)
        .push(", ")
        .push_bind(b.max_lon)
        .push(", ")
        .push_bind(b.max_lat)
        .push(", 4326)");
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
fn push_tile_xy(q: &mut QueryBuilder<'_, Postgres>, tile: TileCoord, lon: &str, lat: &str) {
    let scale = f64::from(1u32 << tile.z());
    q.push(format!("(({lon} + 180.0) / 360.0 * "))
        .push_bind(scale)
        .push(" - ")
        .push_bind(f64::from(tile.x()))
        .push(format!(") * {EXTENT}.0 AS tx, ((1.0 - ln(tan(radians(least(greatest({lat}, -85.0511287798), 85.0511287798)) / 2.0 + pi() / 4.0)) / pi()) / 2.0 * "))
        .push_bind(scale)
        .push(" - ")
        .push_bind(f64::from(tile.y()))
        .push(format!(") * {EXTENT}.0 AS ty"));
}

/// Cells: every matching point in the tile (not the buffer, so no point counts twice),
/// grouped by cell, drawn at the mean position of its points.
fn push_cells(
    q: &mut QueryBuilder<'_, Postgres>,
    layer: &str,
    shape: TileShape,
    points_sql: impl FnOnce(&mut QueryBuilder<'_, Postgres>),
    sums: &str,
) {
    q.push("SELECT ST_AsMVT(c, ")
        .push_bind(layer.to_owned())
        .push(format!(
            ", {EXTENT}, 'geom') FROM (SELECT ST_MakePoint(round(avg(p.tx)), round(avg(p.ty))) AS geom, true AS cluster, count(*)::int8 AS count, {sums} FROM ("
        ));
    points_sql(q);
    q.push(") p WHERE p.tx >= 0 AND p.tx < ")
        .push(EXTENT)
        .push(" AND p.ty >= 0 AND p.ty < ")
        .push(EXTENT)
        .push(" GROUP BY floor(p.tx / ")
        .push(shape.cell)
        .push("), floor(p.ty / ")
        .push(shape.cell)
        .push(")) c");
}

/// Counts matching rows up to `cap` (a bounded index scan, however dense the tile).
async fn count_up_to(
    conn: &mut PgConnection,
    query: &'static str,
    from_where: impl FnOnce(&mut QueryBuilder<'_, Postgres>),
    cap: u32,
) -> Result<u32, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new("SELECT count(*) FROM (SELECT 1 ");
    from_where(&mut q);
    q.push(" LIMIT ").push_bind(i64::from(cap)).push(") s");
    let n: i64 = crate::db::observe(query, q.build_query_scalar().fetch_one(conn)).await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn detections_from(q: &mut QueryBuilder<'_, Postgres>, area: BBox, search: &DetectionSearch) {
    q.push("FROM sigint.signal_detections d WHERE d.location && ");
    push_envelope(q, area);
    crate::db::detections::push_filters(q, search);
}

/// The detections layer of `tile`, matching `search`'s filters (its area is the tile's).
/// Empty bytes when nothing matches.
pub async fn detections(
    conn: &mut PgConnection,
    tile: TileCoord,
    search: &DetectionSearch,
    shape: TileShape,
) -> Result<(Vec<u8>, TileKind), sqlx::Error> {
    let area = buffered(tile);
    let n = count_up_to(
        conn,
        "tile_detections_count",
        |q| detections_from(q, area, search),
        shape.max_points + 1,
    )
    .await?;
    if n == 0 {
        return Ok((Vec::new(), TileKind::Points));
    }
    let mut q = QueryBuilder::<Postgres>::new("");
    let kind = if n <= shape.max_points {
        q.push(format!(
            r#"
SELECT ST_AsMVT(f, 'detections', {EXTENT}, 'geom', 'id') FROM (
    SELECT d.id,
           ST_AsMVTGeom(ST_Transform(d.location, 3857), ST_TileEnvelope("#
        ))
        .push_bind(i32::from(tile.z()))
        .push(", ")
        .push_bind(tile.x() as i32)
        .push(", ")
        .push_bind(tile.y() as i32)
        .push(format!(
            r#"), {EXTENT}, {BUFFER}, true) AS geom,
           d.signal_type::text AS signal_type,
           to_char(d.detected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS detected_at,
           COALESCE(d.bssid::text, d.bt_address::text,
                    d.mcc || '-' || d.mnc || '-' || COALESCE(d.lac::text, '') || '-' || d.cell_id) AS identifier,
           COALESCE(d.ssid, d.bt_name, d.network_type) AS name,
           COALESCE(d.signal_strength_dbm, d.bt_rssi) AS signal_dbm,
           d.device_id::text AS device_id,
           d.is_suspicious,
           d.surveillance_score AS score
    "#
        ));
        detections_from(&mut q, area, search);
        q.push(") f");
        TileKind::Points
    } else {
        push_cells(
            &mut q,
            "detections",
            shape,
            |q| {
                q.push("SELECT ");
                push_tile_xy(q, tile, "ST_X(d.location)", "ST_Y(d.location)");
                q.push(", d.signal_type, d.detected_at, d.is_suspicious ");
                detections_from(q, area, search);
            },
            r#"count(*) FILTER (WHERE p.signal_type = 'wifi')::int8 AS wifi,
               count(*) FILTER (WHERE p.signal_type = 'bluetooth')::int8 AS bluetooth,
               count(*) FILTER (WHERE p.signal_type = 'ble')::int8 AS ble,
               count(*) FILTER (WHERE p.signal_type = 'cellular')::int8 AS cellular,
               count(*) FILTER (WHERE p.is_suspicious)::int8 AS suspicious,
               to_char(min(p.detected_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS first_seen,
               to_char(max(p.detected_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_seen,
               mode() WITHIN GROUP (ORDER BY p.signal_type)::text AS signal_type"#,
        );
        TileKind::Cells
    };
    let tile: Option<Vec<u8>> =
        crate::db::observe("tile_detections", q.build_query_scalar().fetch_one(conn)).await?;
    Ok((tile.unwrap_or_default(), kind))
}

fn transmitters_from(q: &mut QueryBuilder<'_, Postgres>, area: BBox, search: &DetectionSearch) {
    q.push("FROM sigint.transmitters t WHERE t.location && ");
    push_envelope(q, area);
    if let Some(start) = search.start() {
        q.push(" AND t.last_seen >= ").push_bind(start);
    }
    if let Some(end) = search.end() {
        q.push(" AND t.first_seen < ").push_bind(end);
    }
    if !search.signal_types().is_empty() {
        let types: Vec<&str> = search.signal_types().iter().map(|t| t.as_str()).collect();
        q.push(" AND t.radio = ANY(")
            .push_bind(types)
            .push("::sigint.signal_type[])");
    }
    if let Some(device) = search.device_id() {
        q.push(" AND ").push_bind(device).push(" = ANY(t.devices)");
    }
    match search.is_suspicious() {
        Some(true) => {
            q.push(" AND t.level <> 'none'");
        }
        Some(false) => {
            q.push(" AND t.level = 'none'");
        }
        None => {}
    }
    if let Some(score) = search.min_score() {
        q.push(" AND t.surveillance_score >= ").push_bind(score);
    }
}

/// The transmitters layer: each transmitter at its estimated position.
pub async fn transmitters(
    conn: &mut PgConnection,
    tile: TileCoord,
    search: &DetectionSearch,
    shape: TileShape,
) -> Result<(Vec<u8>, TileKind), sqlx::Error> {
    let area = buffered(tile);
    let n = count_up_to(
        conn,
        "tile_transmitters_count",
        |q| transmitters_from(q, area, search),
        shape.max_points + 1,
    )
    .await?;
    if n == 0 {
        return Ok((Vec::new(), TileKind::Points));
    }
    let mut q = QueryBuilder::<Postgres>::new("");
    let kind = if n <= shape.max_points {
        q.push(format!(
            r#"
SELECT ST_AsMVT(f, 'transmitters', {EXTENT}, 'geom') FROM (
    SELECT ST_AsMVTGeom(ST_Transform(t.location, 3857), ST_TileEnvelope("#
        ))
        .push_bind(i32::from(tile.z()))
        .push(", ")
        .push_bind(tile.x() as i32)
        .push(", ")
        .push_bind(tile.y() as i32)
        .push(format!(
            r#"), {EXTENT}, {BUFFER}, true) AS geom,
           t.radio::text AS signal_type,
           t.identifier,
           t.names[1] AS name,
           t.detections,
           to_char(t.first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS first_seen,
           to_char(t.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_seen,
           t.vendor,
           t.tracker_class,
           t.level,
           t.surveillance_score AS score,
           t.spread_m
    "#
        ));
        transmitters_from(&mut q, area, search);
        q.push(") f");
        TileKind::Points
    } else {
        push_cells(
            &mut q,
            "transmitters",
            shape,
            |q| {
                q.push("SELECT ");
                push_tile_xy(q, tile, "ST_X(t.location)", "ST_Y(t.location)");
                q.push(", t.radio, t.level ");
                transmitters_from(q, area, search);
            },
            r#"count(*) FILTER (WHERE p.radio = 'wifi')::int8 AS wifi,
               count(*) FILTER (WHERE p.radio = 'bluetooth')::int8 AS bluetooth,
               count(*) FILTER (WHERE p.radio = 'ble')::int8 AS ble,
               count(*) FILTER (WHERE p.radio = 'cellular')::int8 AS cellular,
               count(*) FILTER (WHERE p.level <> 'none')::int8 AS suspicious,
               mode() WITHIN GROUP (ORDER BY p.radio)::text AS signal_type"#,
        );
        TileKind::Cells
    };
    let tile: Option<Vec<u8>> =
        crate::db::observe("tile_transmitters", q.build_query_scalar().fetch_one(conn)).await?;
    Ok((tile.unwrap_or_default(), kind))
}

/// The extent of the data, for TileJSON `bounds`: that of the registry's transmitters (one row
/// per transmitter, so far fewer than detections); `None` while the registry is empty.
pub async fn detection_bounds(conn: &mut PgConnection) -> Result<Option<BBox>, sqlx::Error> {
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
