//! SQL for `sigint.signal_detections`: batched idempotent insert, search, lookup and stats.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row, Transaction};
use uuid::Uuid;

use crate::db::filters::{push_filters, push_point, push_radius, push_within};
use crate::domain::fields::{Cell, Field, Kind, FIELDS};
use crate::domain::search::{Area, DetectionSearch};
use crate::domain::tile::key_ranges;
use crate::domain::Bounds;
use crate::domain::Detection;

/// Makes sure a monthly partition exists for every month in the batch. Runs outside the insert
/// transaction so the DDL commits on its own and never holds locks across a long insert.
/// Each statement commits on its own (directly connected) or together (through a pooler).
pub async fn ensure_partitions(
    pool: &super::Pool,
    detections: &[Detection],
) -> Result<(), sqlx::Error> {
    let months: BTreeSet<NaiveDate> = detections
        .iter()
        .filter_map(|d| NaiveDate::from_ymd_opt(d.detected_at.year(), d.detected_at.month(), 1))
        .collect();
    let mut conn = pool.acquire().await?;
    for month in months {
        let query = sqlx::query(r#"SELECT sigint.ensure_partition($1)"#).bind(month);
        crate::db::observe("ensure_partition", query.execute(&mut *conn)).await?;
    }
    conn.commit().await
}

/// `INSERT ... SELECT FROM UNNEST(<one array per field>)`, derived from the field table once.
fn insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let (mut columns, mut values) = (Vec::new(), Vec::new());
        for field in FIELDS {
            let n = field.name;
            let value = match field.kind {
                // Latitude and longitude make one column, below.
                Kind::Coordinate { .. } => continue,
                Kind::Mac => format!("t.{n}::macaddr"),
                Kind::SignalType => format!("t.{n}::sigint.signal_type"),
                Kind::Object { .. } => format!("t.{n}::jsonb"),
                Kind::Tags { .. } | Kind::ServiceUuids { .. } => {
                    format!("ARRAY(SELECT jsonb_array_elements_text(t.{n}::jsonb))")
                }
                // Integers travel as int8 and narrow by assignment cast into their column.
                _ => format!("t.{n}"),
            };
            columns.push(n.to_owned());
            values.push(value);
        }
        columns.push("location".to_owned());
        values.push("ST_SetSRID(ST_MakePoint(t.longitude, t.latitude), 4326)".to_owned());
        let arrays: Vec<String> = FIELDS
            .iter()
            .enumerate()
            .map(|(i, f)| format!("${}::{}[]", i + 1, array_type(f.kind)))
            .collect();
        let names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
        // New rows are queued for the transmitter registry in the same statement, so they
        // enter the queue exactly when they commit.
        format!(
            "WITH inserted AS (INSERT INTO sigint.signal_detections ({}) SELECT {} FROM UNNEST({}) AS t({}) \
             ON CONFLICT DO NOTHING RETURNING id, detected_at, signal_type, location IS NULL AS unfixed), \
             queued AS (INSERT INTO sigint.registry_queue (detection_id, detected_at) \
             SELECT id, detected_at FROM inserted) \
             SELECT signal_type::text, id, detected_at, unfixed FROM inserted",
            columns.join(", "),
            values.join(", "),
            arrays.join(", "),
            names.join(", ")
        )
    })
}

/// The element type a field's values are sent as.
fn array_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Timestamp => "timestamptz",
        Kind::Coordinate { .. } | Kind::Number { .. } => "float8",
        Kind::Real { .. } => "float4",
        Kind::Integer { .. } => "int8",
        Kind::Uuid => "uuid",
        Kind::Boolean => "bool",
        Kind::Text { .. }
        | Kind::Word { .. }
        | Kind::Mac
        | Kind::SignalType
        | Kind::Object { .. }
        | Kind::Tags { .. }
        | Kind::Hex { .. }
        | Kind::ServiceUuids { .. } => "text",
    }
}

type InsertQuery<'q> =
    sqlx::query::QueryAs<'q, Postgres, (String, i64, DateTime<Utc>, bool), PgArguments>;

/// Binds one field of every detection as one array, typed as `array_type` says.
fn bind_field<'q>(
    query: InsertQuery<'q>,
    field: &Field,
    rows: &'q [&'q Detection],
) -> InsertQuery<'q> {
    let cells = rows.iter().map(|d| (field.get)(d));
    match field.kind {
        // `raw_data` is the bulk of a large batch: bound by reference, not copied again.
        Kind::Object { .. } => query.bind(
            rows.iter()
                .map(|d| d.raw_data.as_ref().map(|r| r.as_str()))
                .collect::<Vec<Option<&str>>>(),
        ),
        Kind::Timestamp => query.bind(
            cells
                .map(|c| match c {
                    Cell::Timestamp(t) => Some(t),
                    _ => None,
                })
                .collect::<Vec<Option<DateTime<Utc>>>>(),
        ),
        Kind::Coordinate { .. } | Kind::Number { .. } => query.bind(
            cells
                .map(|c| match c {
                    Cell::Number(v) => v,
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Kind::Real { .. } => query.bind(
            cells
                .map(|c| match c {
                    Cell::Real(v) => v,
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Kind::Integer { .. } => query.bind(
            cells
                .map(|c| match c {
                    Cell::Integer(v) => v,
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Kind::Uuid => query.bind(
            cells
                .map(|c| match c {
                    Cell::Uuid(v) => v,
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Kind::Boolean => query.bind(
            cells
                .map(|c| match c {
                    Cell::Boolean(v) => Some(v),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Kind::Text { .. }
        | Kind::Word { .. }
        | Kind::Mac
        | Kind::SignalType
        | Kind::Tags { .. }
        | Kind::Hex { .. }
        | Kind::ServiceUuids { .. } => query.bind(
            cells
                .map(|c| match c {
                    Cell::Text(v) => v,
                    Cell::Tags(tags) => serde_json::to_string(&tags).ok(),
                    _ => None,
                })
                .collect::<Vec<Option<String>>>(),
        ),
    }
}

/// Most rows, and most `raw_data` bytes, in one insert statement.
const CHUNK_ROWS: usize = 2_000;
const CHUNK_RAW_BYTES: usize = 2 * 1024 * 1024;

/// Splits key-ordered rows into runs within [`CHUNK_ROWS`] and [`CHUNK_RAW_BYTES`].
fn chunks<'a>(sorted: &'a [&'a Detection]) -> Vec<&'a [&'a Detection]> {
    let mut out = Vec::new();
    let (mut start, mut raw) = (0, 0);
    for (i, d) in sorted.iter().enumerate() {
        let size = d.raw_data.as_ref().map_or(0, |r| r.as_str().len());
        if i > start && (i - start == CHUNK_ROWS || raw + size > CHUNK_RAW_BYTES) {
            out.push(&sorted[start..i]);
            (start, raw) = (i, 0);
        }
        raw += size;
    }
    out.push(&sorted[start..]);
    out
}

/// What an insert stored.
#[derive(Debug, Default)]
pub struct Inserted {
    /// New rows by signal type; the rest already existed under the natural key, untouched.
    pub by_type: BTreeMap<String, u64>,
    /// The new rows stored without a position (id, detected_at), to be placed if they can be.
    pub unfixed: Vec<(i64, DateTime<Utc>)>,
}

/// Inserts the batch with UNNEST of column arrays (one round trip per few thousand rows).
pub async fn insert_batch(
    tx: &mut Transaction<'_, Postgres>,
    detections: &[Detection],
) -> Result<Inserted, sqlx::Error> {
    let mut out = Inserted::default();
    if detections.is_empty() {
        return Ok(out);
    }
    // Every writer takes the unique-index locks in the same (natural-key) order, so two batches
    // that overlap in different orders wait for each other instead of deadlocking.
    let mut sorted: Vec<&Detection> = detections.iter().collect();
    sorted.sort_by_key(|d| d.natural_key());
    // Statements of bounded size, in key order: a large batch is not encoded (and buffered for
    // sending) whole, and the lock order across statements stays the natural-key order.
    for chunk in chunks(&sorted) {
        let mut query = sqlx::query_as(insert_sql());
        for field in FIELDS {
            query = bind_field(query, field, chunk);
        }
        let inserted = crate::db::observe("insert_batch", query.fetch_all(&mut **tx)).await?;
        for (kind, id, at, unfixed) in inserted {
            *out.by_type.entry(kind).or_insert(0) += 1;
            if unfixed {
                out.unfixed.push((id, at));
            }
        }
    }
    Ok(out)
}

/// One stored detection as the API shows it: its id, its point, and every field of the table
/// (plus `created_at`, `updated_at` and, for nearest searches, `distance_m`) as properties.
#[derive(Clone, Debug)]
pub struct DetectionRow {
    pub id: i64,
    /// Absent when the capture had no fix.
    pub longitude: Option<f64>,
    pub latitude: Option<f64>,
    pub properties: Map<String, Value>,
}

/// The select list, derived from the field table once.
fn columns() -> &'static str {
    static COLUMNS: OnceLock<String> = OnceLock::new();
    COLUMNS.get_or_init(|| {
        let mut list = vec![
            "d.id".to_owned(),
            "d.created_at".to_owned(),
            "d.updated_at".to_owned(),
            "d.position_source".to_owned(),
        ];
        for field in FIELDS {
            let n = field.name;
            list.push(match field.kind {
                Kind::Coordinate { .. } if n == "latitude" => "ST_Y(d.location) AS latitude".into(),
                Kind::Coordinate { .. } => format!("ST_X(d.location) AS {n}"),
                Kind::Mac | Kind::SignalType => format!("d.{n}::text AS {n}"),
                Kind::Integer { .. } => format!("d.{n}::int8 AS {n}"),
                _ => format!("d.{n}"),
            });
        }
        list.join(", ")
    })
}

impl<'r> sqlx::FromRow<'r, PgRow> for DetectionRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let mut properties = Map::new();
        for field in FIELDS {
            let n = field.name;
            let value = match field.kind {
                // The point is the feature's geometry, not a property.
                Kind::Coordinate { .. } => continue,
                Kind::Timestamp => json!(row.try_get::<DateTime<Utc>, _>(n)?),
                Kind::Number { .. } => json!(row.try_get::<Option<f64>, _>(n)?),
                // As written (12.1, not 12.100000381469727).
                Kind::Real { .. } => row
                    .try_get::<Option<f32>, _>(n)?
                    .and_then(|v| v.to_string().parse::<f64>().ok())
                    .map_or(Value::Null, |v| json!(v)),
                Kind::Integer { .. } => json!(row.try_get::<Option<i64>, _>(n)?),
                Kind::Uuid => json!(row.try_get::<Option<Uuid>, _>(n)?),
                Kind::Boolean => json!(row.try_get::<bool, _>(n)?),
                Kind::Object { .. } => row.try_get::<Option<Value>, _>(n)?.unwrap_or(Value::Null),
                Kind::Tags { .. } | Kind::ServiceUuids { .. } => {
                    json!(row.try_get::<Vec<String>, _>(n)?)
                }
                Kind::Text { .. }
                | Kind::Word { .. }
                | Kind::Mac
                | Kind::SignalType
                | Kind::Hex { .. } => {
                    json!(row.try_get::<Option<String>, _>(n)?)
                }
            };
            properties.insert(n.to_owned(), value);
        }
        for n in ["created_at", "updated_at"] {
            properties.insert(n.to_owned(), json!(row.try_get::<DateTime<Utc>, _>(n)?));
        }
        let latitude: Option<f64> = row.try_get("latitude")?;
        // fix (the capture's own), sensor (a fixed sensor's position), estimated, or none.
        let source = row.try_get::<Option<String>, _>("position_source")?;
        let source = source.or_else(|| latitude.map(|_| "fix".to_owned()));
        properties.insert("position_source".to_owned(), json!(source));
        if let Some(distance) = row.try_get::<Option<f64>, _>("distance_m")? {
            properties.insert("distance_m".to_owned(), json!(distance));
        }
        Ok(Self {
            id: row.try_get("id")?,
            longitude: row.try_get("longitude")?,
            latitude,
            properties,
        })
    }
}

/// Runs a search, returning up to `limit + 1` rows so the caller knows whether a next page exists.
///
/// Searches run unprepared (`persistent(false)`), so each is planned with its own values: after
/// five runs of one statement PostgreSQL may keep a generic plan, blind to how large a box or
/// a key range list is, and for the key-range page that plan took 160 ms where a planned one
/// took 22 (1M rows, measured).
pub async fn search(
    conn: &mut PgConnection,
    search: &DetectionSearch,
) -> Result<Vec<DetectionRow>, sqlx::Error> {
    let fetch = i64::from(search.limit()) + 1;
    if let Area::Nearest { center, n } = search.area() {
        let mut q = QueryBuilder::<Postgres>::new("");
        // Exact geodesic k-nearest in two index-driven steps: the planar KNN finds n
        // candidates; the farthest of them bounds the true answer's radius; a geodesic radius
        // search inside that bound (box pre-filter on the GiST index) ranks the final n.
        q.push("SELECT max(ST_Distance(c.location::geography, ");
        push_point(&mut q, center.lon(), center.lat());
        q.push(
            "::geography)) FROM (SELECT d.location FROM sigint.signal_detections d \
                WHERE d.location IS NOT NULL",
        );
        push_filters(&mut q, search.filters());
        q.push(" ORDER BY d.location <-> ");
        push_point(&mut q, center.lon(), center.lat());
        q.push(" LIMIT ").push_bind(i64::from(*n)).push(") AS c");
        let bound: Option<f64> = crate::db::observe(
            "search_nearest_bound",
            q.build_query_scalar()
                .persistent(false)
                .fetch_one(&mut *conn),
        )
        .await?;
        let Some(bound) = bound else {
            return Ok(Vec::new());
        };
        // A millimetre of slack for floating point.
        let radius = bound + 0.001;
        let mut q = QueryBuilder::<Postgres>::new("SELECT ");
        q.push(columns());
        q.push(", ST_Distance(d.location::geography, ");
        push_point(&mut q, center.lon(), center.lat());
        q.push("::geography) AS distance_m FROM sigint.signal_detections d WHERE true");
        push_radius(&mut q, *center, radius);
        push_filters(&mut q, search.filters());
        q.push(" ORDER BY distance_m, d.id LIMIT ")
            .push_bind(i64::from(*n));
        return fetch_rows(conn, "search_nearest", q).await;
    }
    if let Area::BBox(bounds) = search.area() {
        // A page of a box in id order. Walking the id index reads the table in order, a heap
        // page per ~30 rows, so a box holding much of the table fills the page after a few
        // thousand rows: a short walk first, and what it found says whether walking on (from
        // where it stopped) will fill the page. A sparser box reads its remaining rows' ids
        // from the key ranges of the tiles covering it, in the covering index (no heap page per
        // row, as the spatial index would cost), and then only the page's rows.
        let mut rows: Vec<DetectionRow> = Vec::new();
        let mut from = search.after();
        let mut walked = 0;
        let mut window = BOX_WALK_FIRST;
        loop {
            let want = fetch - rows.len() as i64;
            let walk = search_sql(search, from, want, Some(window));
            rows.extend(fetch_rows(conn, "search_box_walk", walk).await?);
            if rows.len() as i64 == fetch {
                return Ok(rows);
            }
            walked += window;
            match walk_end(conn, from, window).await? {
                // Never before a row already taken: a row committed between the walk and this
                // count (a lower id than rows already there) would move the end back over them.
                Some(end) => from = Some(rows.last().map_or(end, |r| end.max(r.id))),
                // The walk reached the last row: the box has no more.
                None => return Ok(rows),
            }
            match box_walk_next(walked, rows.len() as i64, fetch) {
                Some(more) => window = more,
                None => break,
            }
        }
        let keys = box_by_keys_sql(search, bounds, from, fetch - rows.len() as i64);
        rows.extend(fetch_rows(conn, "search_box_keys", keys).await?);
        return Ok(rows);
    }
    fetch_rows(
        conn,
        "search",
        search_sql(search, search.after(), fetch, None),
    )
    .await
}

/// The rows of a search statement, run unprepared (planned for its own values, see `search`)
/// and timed as `name`.
async fn fetch_rows(
    conn: &mut PgConnection,
    name: &'static str,
    mut q: QueryBuilder<'static, Postgres>,
) -> Result<Vec<DetectionRow>, sqlx::Error> {
    let query = q.build_query_as::<DetectionRow>().persistent(false);
    crate::db::observe(name, query.fetch_all(&mut *conn)).await
}

/// Rows a box search walks in id order first.
const BOX_WALK_FIRST: i64 = 2_000;
/// The most rows a box search walks: beyond it the box's key ranges cost less.
const BOX_WALK_MAX: i64 = 48_000;

/// After walking `walked` rows that held `found` of the `fetch` wanted: how many more rows to
/// walk to fill the page (with a margin), or `None` when the box is too sparse for walking to
/// pay.
fn box_walk_next(walked: i64, found: i64, fetch: i64) -> Option<i64> {
    if found == 0 {
        return None;
    }
    let more = (walked * (fetch - found) / found * 5 / 4).max(BOX_WALK_FIRST);
    (walked + more <= BOX_WALK_MAX).then_some(more)
}

/// The id of the `window`th row after `from` in id order (the last a walk of that many read),
/// or `None` when fewer are left.
async fn walk_end(
    conn: &mut PgConnection,
    from: Option<i64>,
    window: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new("SELECT w.id FROM sigint.signal_detections w");
    if let Some(from) = from {
        q.push(" WHERE w.id > ").push_bind(from);
    }
    q.push(" ORDER BY w.id OFFSET ")
        .push_bind(window - 1)
        .push(" LIMIT 1");
    crate::db::observe(
        "search_box_walk_end",
        q.build_query_scalar()
            .persistent(false)
            .fetch_optional(&mut *conn),
    )
    .await
}

/// Most tiles a box's key ranges come from (fewer, larger tiles read more rows outside it).
const BOX_KEY_TILES: u64 = 64;

/// Up to `limit` rows of a box search (`bounds`, its area) after the id `after`, in id order:
/// the ids of its matching rows from the key ranges of the tiles covering it (an index-only
/// scan of `signal_detections_tile_key` per range, the box tested on the indexed position),
/// then those rows.
fn box_by_keys_sql(
    search: &DetectionSearch,
    bounds: &Bounds,
    after: Option<i64>,
    limit: i64,
) -> QueryBuilder<'static, Postgres> {
    let (firsts, lasts): (Vec<i64>, Vec<i64>) = bounds
        .parts()
        .iter()
        .flat_map(|b| key_ranges(b, BOX_KEY_TILES))
        .unzip();
    let mut q = QueryBuilder::<Postgres>::new("SELECT ");
    q.push(columns());
    q.push(
        ", NULL::float8 AS distance_m FROM sigint.signal_detections d JOIN \
         (SELECT w.id, w.detected_at FROM unnest(",
    )
    .push_bind(firsts)
    .push("::int8[], ")
    .push_bind(lasts)
    .push(
        "::int8[]) AS r(first, last) CROSS JOIN LATERAL \
         (SELECT d.id, d.detected_at FROM sigint.signal_detections d \
          WHERE d.tile_key BETWEEN r.first AND r.last",
    );
    push_conditions(&mut q, search, after);
    // OFFSET 0 keeps the range scans apart: flattened, the planner may walk the primary key
    // with the ranges as a filter instead, which is the walk that just failed.
    q.push(" OFFSET 0) w ORDER BY w.id LIMIT ")
        .push_bind(limit)
        .push(") k ON d.id = k.id AND d.detected_at = k.detected_at ORDER BY d.id");
    q
}

/// A search other than nearest-N after the id `after` (in place of the search's own cursor),
/// in id order, at most `limit` rows; with `walk`, only among the next `walk` rows in id order.
fn search_sql(
    search: &DetectionSearch,
    after: Option<i64>,
    limit: i64,
    walk: Option<i64>,
) -> QueryBuilder<'static, Postgres> {
    let mut q = QueryBuilder::<Postgres>::new("SELECT ");
    q.push(columns());
    q.push(", NULL::float8 AS distance_m FROM ");
    match walk {
        None => {
            q.push("sigint.signal_detections d");
        }
        Some(rows) => {
            q.push("(SELECT * FROM sigint.signal_detections w");
            if let Some(after) = after {
                q.push(" WHERE w.id > ").push_bind(after);
            }
            q.push(" ORDER BY w.id LIMIT ").push_bind(rows).push(") d");
        }
    }
    q.push(" WHERE true");
    push_conditions(&mut q, search, after);
    q.push(" ORDER BY d.id LIMIT ").push_bind(limit);
    q
}

/// ` AND ...` for each condition of a search other than nearest-N on `d`: its area, its
/// filters, and the cursor `after`.
fn push_conditions(
    q: &mut QueryBuilder<'static, Postgres>,
    search: &DetectionSearch,
    after: Option<i64>,
) {
    match search.area() {
        Area::BBox(b) => {
            q.push(" AND ");
            push_within(q, "d.location", b);
        }
        Area::Radius { center, radius_m } => push_radius(q, *center, *radius_m),
        Area::Anywhere | Area::Nearest { .. } => {}
    }
    push_filters(q, search.filters());
    if let Some(after) = after {
        q.push(" AND d.id > ").push_bind(after);
    }
}

/// Every row of a search, streamed in id order (nearest-N: in distance order, at most N)
/// inside a read-only transaction whose statements may run `timeout`: an export of any size
/// holds one row at a time. `each` is awaited per row (so a slow reader slows the query
/// instead of filling memory) and stops the stream by returning `Break`. Returns whether every
/// row was handed over: after a `Break` the query may still be sending, so the caller should
/// close the connection rather than reuse it (reusing it would read every remaining row).
pub async fn stream<F, Fut>(
    conn: &mut PgConnection,
    search: &DetectionSearch,
    timeout: std::time::Duration,
    mut each: F,
) -> Result<bool, sqlx::Error>
where
    F: FnMut(DetectionRow) -> Fut + Send,
    Fut: std::future::Future<Output = std::ops::ControlFlow<()>> + Send,
{
    use futures_util::TryStreamExt;
    let mut tx = sqlx::Connection::begin(conn).await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "SET LOCAL statement_timeout = {}",
        timeout.as_millis()
    ))
    .execute(&mut *tx)
    .await?;
    if matches!(search.area(), Area::Nearest { .. }) {
        for row in self::search(&mut tx, search).await? {
            if each(row).await.is_break() {
                return Ok(false);
            }
        }
        tx.rollback().await?;
        return Ok(true);
    }
    let mut q = search_sql(search, search.after(), i64::from(search.limit()), None);
    {
        let mut rows = q
            .build_query_as::<DetectionRow>()
            .persistent(false)
            .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            if each(row).await.is_break() {
                return Ok(false);
            }
        }
    }
    tx.rollback().await?;
    Ok(true)
}

/// The first and last detection times (each an index end, however large the table).
pub async fn time_extent(
    conn: &mut PgConnection,
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), sqlx::Error> {
    crate::db::observe(
        "time_extent",
        sqlx::query_as(
            r#"SELECT (SELECT min(detected_at) FROM sigint.signal_detections),
                      (SELECT max(detected_at) FROM sigint.signal_detections)"#,
        )
        .fetch_one(conn),
    )
    .await
}

pub async fn get(conn: &mut PgConnection, id: i64) -> Result<Option<DetectionRow>, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new("SELECT ");
    q.push(columns());
    q.push(", NULL::float8 AS distance_m FROM sigint.signal_detections d WHERE d.id = ")
        .push_bind(id);
    let query = q.build_query_as::<DetectionRow>();
    crate::db::observe("get_detection", query.fetch_optional(&mut *conn)).await
}

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub total: i64,
    pub by_signal_type: serde_json::Map<String, serde_json::Value>,
    pub first_detected_at: Option<DateTime<Utc>>,
    pub last_detected_at: Option<DateTime<Utc>>,
    /// `[minLon, minLat, maxLon, maxLat]`, absent when the table is empty.
    pub extent: Option<[f64; 4]>,
}

pub async fn stats(conn: &mut PgConnection) -> Result<Stats, sqlx::Error> {
    let by_type_query = sqlx::query_as::<_, (String, i64)>(
        r#"SELECT signal_type::text, count(*) FROM sigint.signal_detections GROUP BY 1 ORDER BY 1"#,
    );
    let by_type = crate::db::observe("stats_by_type", by_type_query.fetch_all(&mut *conn)).await?;
    type Summary = (
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );
    let summary_query = sqlx::query_as::<_, Summary>(
        r#"
        SELECT s.first_at, s.last_at, ST_XMin(s.e), ST_YMin(s.e), ST_XMax(s.e), ST_YMax(s.e)
        FROM (SELECT min(detected_at) AS first_at, max(detected_at) AS last_at,
                     ST_Extent(location) AS e
              FROM sigint.signal_detections) AS s
        "#,
    );
    let (first, last, xmin, ymin, xmax, ymax) =
        crate::db::observe("stats_summary", summary_query.fetch_one(&mut *conn)).await?;
    let mut by_signal_type = serde_json::Map::new();
    for kind in crate::domain::SignalType::ALL {
        by_signal_type.insert(kind.as_str().to_owned(), 0.into());
    }
    let mut total = 0;
    for (kind, count) in by_type {
        total += count;
        by_signal_type.insert(kind, count.into());
    }
    let extent = match (xmin, ymin, xmax, ymax) {
        (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
        _ => None,
    };
    Ok(Stats {
        total,
        by_signal_type,
        first_detected_at: first,
        last_detected_at: last,
        extent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_walk_goes_on_only_while_it_can_fill_the_page() {
        // Dense enough: on for what the rows so far say the rest needs, with a margin.
        assert_eq!(box_walk_next(2_000, 400, 1_001), Some(3_756));
        // One row short still walks a short stretch, not two rows.
        assert_eq!(box_walk_next(2_000, 1_000, 1_001), Some(2_000));
        // Too sparse, or nothing at all: the key ranges.
        assert_eq!(box_walk_next(2_000, 50, 1_001), None);
        assert_eq!(box_walk_next(2_000, 0, 1_001), None);
        // Never past the longest walk.
        assert_eq!(box_walk_next(46_000, 900, 1_001), None);
    }
}
