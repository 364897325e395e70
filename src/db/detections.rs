//! SQL for `sigint.signal_detections`: batched idempotent insert, search, lookup and stats.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Postgres, QueryBuilder, Transaction};
use uuid::Uuid;

use crate::domain::search::{degree_envelope, Area, DetectionSearch};
use crate::domain::{Detection, Position};

/// Makes sure a monthly partition exists for every month in the batch. Runs outside the insert
/// transaction so the DDL commits on its own and never holds locks across a long insert.
pub async fn ensure_partitions(
    conn: &mut PgConnection,
    detections: &[Detection],
) -> Result<(), sqlx::Error> {
    let months: BTreeSet<NaiveDate> = detections
        .iter()
        .filter_map(|d| NaiveDate::from_ymd_opt(d.detected_at.year(), d.detected_at.month(), 1))
        .collect();
    for month in months {
        let query = sqlx::query(r#"SELECT sigint.ensure_partition($1)"#).bind(month);
        crate::db::observe("ensure_partition", query.execute(&mut *conn)).await?;
    }
    Ok(())
}

/// Inserts the batch in one statement (UNNEST of column arrays, so one round trip whatever the
/// batch size) and returns how many rows were new, by signal type; the rest already existed
/// under the natural key and were left untouched.
pub async fn insert_batch(
    tx: &mut Transaction<'_, Postgres>,
    detections: &[Detection],
) -> Result<BTreeMap<String, u64>, sqlx::Error> {
    if detections.is_empty() {
        return Ok(BTreeMap::new());
    }
    // Every writer takes the unique-index locks in the same (natural-key) order, so two batches
    // that overlap in different orders wait for each other instead of deadlocking.
    let mut sorted: Vec<&Detection> = detections.iter().collect();
    sorted.sort_by_key(|d| d.natural_key());
    let detections = sorted.as_slice();
    let col = |f: &dyn Fn(&Detection) -> Option<String>| -> Vec<Option<String>> {
        detections.iter().map(|d| f(d)).collect()
    };
    let query = sqlx::query_scalar::<_, String>(
        r#"
        INSERT INTO sigint.signal_detections (
            detected_at, capture_duration_ms, location, altitude_meters, accuracy_meters,
            signal_type, protocol_version, ssid, bssid, channel, frequency_mhz,
            signal_strength_dbm, bt_address, bt_name, bt_class, bt_rssi, cell_id, lac, mcc, mnc,
            network_type, device_id, device_name, is_suspicious, surveillance_score, raw_data, tags)
        SELECT t.detected_at, t.capture_duration_ms,
               ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326), t.altitude_meters, t.accuracy_meters,
               t.signal_type::sigint.signal_type, t.protocol_version, t.ssid, t.bssid::macaddr,
               t.channel, t.frequency_mhz, t.signal_strength_dbm, t.bt_address::macaddr,
               t.bt_name, t.bt_class, t.bt_rssi, t.cell_id, t.lac, t.mcc, t.mnc, t.network_type,
               t.device_id, t.device_name, t.is_suspicious, t.surveillance_score,
               t.raw_data::jsonb,
               ARRAY(SELECT jsonb_array_elements_text(t.tags::jsonb))
        FROM UNNEST(
            $1::timestamptz[], $2::int[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::int[], $12::int[], $13::int[],
            $14::text[], $15::text[], $16::int[], $17::int[], $18::int8[], $19::int[],
            $20::int2[], $21::int2[], $22::text[], $23::uuid[], $24::text[], $25::bool[],
            $26::float4[], $27::text[], $28::text[]
        ) AS t(detected_at, capture_duration_ms, lon, lat, altitude_meters, accuracy_meters,
               signal_type, protocol_version, ssid, bssid, channel, frequency_mhz,
               signal_strength_dbm, bt_address, bt_name, bt_class, bt_rssi, cell_id, lac, mcc,
               mnc, network_type, device_id, device_name, is_suspicious, surveillance_score,
               raw_data, tags)
        ON CONFLICT DO NOTHING
        RETURNING signal_type::text
        "#,
    )
    .bind(
        detections
            .iter()
            .map(|d| d.detected_at)
            .collect::<Vec<DateTime<Utc>>>(),
    )
    .bind(
        detections
            .iter()
            .map(|d| d.capture_duration_ms)
            .collect::<Vec<_>>(),
    )
    .bind(
        detections
            .iter()
            .map(|d| d.position.lon())
            .collect::<Vec<f64>>(),
    )
    .bind(
        detections
            .iter()
            .map(|d| d.position.lat())
            .collect::<Vec<f64>>(),
    )
    .bind(
        detections
            .iter()
            .map(|d| d.altitude_meters)
            .collect::<Vec<_>>(),
    )
    .bind(
        detections
            .iter()
            .map(|d| d.accuracy_meters)
            .collect::<Vec<_>>(),
    )
    .bind(
        detections
            .iter()
            .map(|d| d.signal_type.as_str())
            .collect::<Vec<&str>>(),
    )
    .bind(col(&|d| d.protocol_version.clone()))
    .bind(col(&|d| d.ssid.clone()))
    .bind(col(&|d| d.bssid.map(|m| m.to_string())))
    .bind(detections.iter().map(|d| d.channel).collect::<Vec<_>>())
    .bind(
        detections
            .iter()
            .map(|d| d.frequency_mhz)
            .collect::<Vec<_>>(),
    )
    .bind(
        detections
            .iter()
            .map(|d| d.signal_strength_dbm)
            .collect::<Vec<_>>(),
    )
    .bind(col(&|d| d.bt_address.map(|m| m.to_string())))
    .bind(col(&|d| d.bt_name.clone()))
    .bind(detections.iter().map(|d| d.bt_class).collect::<Vec<_>>())
    .bind(detections.iter().map(|d| d.bt_rssi).collect::<Vec<_>>())
    .bind(detections.iter().map(|d| d.cell_id).collect::<Vec<_>>())
    .bind(detections.iter().map(|d| d.lac).collect::<Vec<_>>())
    .bind(detections.iter().map(|d| d.mcc).collect::<Vec<_>>())
    .bind(detections.iter().map(|d| d.mnc).collect::<Vec<_>>())
    .bind(col(&|d| d.network_type.clone()))
    .bind(
        detections
            .iter()
            .map(|d| d.device_id)
            .collect::<Vec<Option<Uuid>>>(),
    )
    .bind(col(&|d| d.device_name.clone()))
    .bind(
        detections
            .iter()
            .map(|d| d.is_suspicious)
            .collect::<Vec<bool>>(),
    )
    .bind(
        detections
            .iter()
            .map(|d| d.surveillance_score)
            .collect::<Vec<_>>(),
    )
    .bind(col(&|d| d.raw_data.as_ref().map(|v| v.to_string())))
    .bind(
        detections
            .iter()
            .map(|d| serde_json::to_string(&d.tags).unwrap_or_else(|_| "[]".to_owned()))
            .collect::<Vec<String>>(),
    );
    let inserted = crate::db::observe("insert_batch", query.fetch_all(&mut **tx)).await?;
    let mut by_type = BTreeMap::new();
    for kind in inserted {
        *by_type.entry(kind).or_insert(0) += 1;
    }
    Ok(by_type)
}

/// One stored detection as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct DetectionRow {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub longitude: f64,
    #[serde(skip)]
    pub latitude: f64,
    pub detected_at: DateTime<Utc>,
    pub capture_duration_ms: Option<i32>,
    pub altitude_meters: Option<f64>,
    pub accuracy_meters: Option<f64>,
    pub signal_type: String,
    pub protocol_version: Option<String>,
    pub ssid: Option<String>,
    pub bssid: Option<String>,
    pub channel: Option<i32>,
    pub frequency_mhz: Option<i32>,
    pub signal_strength_dbm: Option<i32>,
    pub bt_address: Option<String>,
    pub bt_name: Option<String>,
    pub bt_class: Option<i32>,
    pub bt_rssi: Option<i32>,
    pub cell_id: Option<i64>,
    pub lac: Option<i32>,
    pub mcc: Option<i16>,
    pub mnc: Option<i16>,
    pub network_type: Option<String>,
    pub device_id: Option<Uuid>,
    pub device_name: Option<String>,
    pub is_suspicious: bool,
    pub surveillance_score: Option<f32>,
    pub raw_data: Option<serde_json::Value>,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Geodesic distance to the search point, for nearest searches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
}

const COLUMNS: &str = r#"
    d.id, ST_X(d.location) AS longitude, ST_Y(d.location) AS latitude, d.detected_at,
    d.capture_duration_ms, d.altitude_meters, d.accuracy_meters, d.signal_type::text AS signal_type,
    d.protocol_version, d.ssid, d.bssid::text AS bssid, d.channel, d.frequency_mhz,
    d.signal_strength_dbm, d.bt_address::text AS bt_address, d.bt_name, d.bt_class, d.bt_rssi,
    d.cell_id, d.lac, d.mcc, d.mnc, d.network_type, d.device_id, d.device_name, d.is_suspicious,
    d.surveillance_score, d.raw_data, d.tags, d.created_at, d.updated_at"#;

/// Appends the non-spatial filters of `search` as `AND ...` terms, all bound, never formatted.
fn push_filters(q: &mut QueryBuilder<'_, Postgres>, search: &DetectionSearch) {
    if let Some(start) = search.start() {
        q.push(" AND d.detected_at >= ").push_bind(start);
    }
    if let Some(end) = search.end() {
        q.push(" AND d.detected_at < ").push_bind(end);
    }
    if !search.signal_types().is_empty() {
        let types: Vec<&str> = search.signal_types().iter().map(|t| t.as_str()).collect();
        q.push(" AND d.signal_type = ANY(")
            .push_bind(types)
            .push("::sigint.signal_type[])");
    }
    if let Some(mac) = search.bssid() {
        q.push(" AND d.bssid = ")
            .push_bind(mac.to_string())
            .push("::macaddr");
    }
    if let Some(mac) = search.bt_address() {
        q.push(" AND d.bt_address = ")
            .push_bind(mac.to_string())
            .push("::macaddr");
    }
    if let Some(ssid) = search.ssid() {
        let escaped = ssid
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        q.push(" AND d.ssid ILIKE ")
            .push_bind(format!("%{escaped}%"));
    }
    if let Some(device) = search.device_id() {
        q.push(" AND d.device_id = ").push_bind(device);
    }
    if let Some(flag) = search.is_suspicious() {
        q.push(" AND d.is_suspicious = ").push_bind(flag);
    }
    if let Some(dbm) = search.min_signal_dbm() {
        q.push(" AND COALESCE(d.signal_strength_dbm, d.bt_rssi) >= ")
            .push_bind(dbm);
    }
}

fn push_point(q: &mut QueryBuilder<'_, Postgres>, lon: f64, lat: f64) {
    q.push("ST_SetSRID(ST_MakePoint(")
        .push_bind(lon)
        .push(", ")
        .push_bind(lat)
        .push("), 4326)");
}

/// `AND` within `radius_m` geodesic metres of `center`: an index-friendly box first (when the
/// circle stays clear of the poles and the antimeridian), then the exact spheroid test.
fn push_radius(q: &mut QueryBuilder<'_, Postgres>, center: Position, radius_m: f64) {
    if let Some((dlon, dlat)) = degree_envelope(center, radius_m) {
        q.push(" AND d.location && ST_Expand(");
        push_point(q, center.lon(), center.lat());
        q.push(", ")
            .push_bind(dlon)
            .push(", ")
            .push_bind(dlat)
            .push(")");
    }
    // Exact on the spheroid, but cheaply: the sphere and the spheroid disagree by under 0.6 %,
    // so rows outside the sphere circle grown by 0.7 % are out, rows inside the one shrunk by
    // 0.7 % are in, and only the thin ring between pays for the spheroid computation.
    q.push(" AND ST_DWithin(d.location::geography, ");
    push_point(q, center.lon(), center.lat());
    q.push("::geography, ")
        .push_bind(radius_m * 1.007)
        .push(", false)");
    q.push(" AND (ST_DWithin(d.location::geography, ");
    push_point(q, center.lon(), center.lat());
    q.push("::geography, ")
        .push_bind(radius_m * 0.993)
        .push(", false) OR ST_DWithin(d.location::geography, ");
    push_point(q, center.lon(), center.lat());
    q.push("::geography, ").push_bind(radius_m).push("))");
}

/// Runs a search, returning up to `limit + 1` rows so the caller knows whether a next page exists.
pub async fn search(
    conn: &mut PgConnection,
    search: &DetectionSearch,
) -> Result<Vec<DetectionRow>, sqlx::Error> {
    let fetch = i64::from(search.limit()) + 1;
    let mut q = QueryBuilder::<Postgres>::new("");
    match search.area() {
        Area::Nearest { center, n } => {
            // Exact geodesic k-nearest in two index-driven steps: the planar KNN finds n
            // candidates; the farthest of them bounds the true answer's radius; a geodesic radius
            // search inside that bound (box pre-filter on the GiST index) ranks the final n.
            q.push("SELECT max(ST_Distance(c.location::geography, ");
            push_point(&mut q, center.lon(), center.lat());
            q.push(
                "::geography)) FROM (SELECT d.location FROM sigint.signal_detections d WHERE true",
            );
            push_filters(&mut q, search);
            q.push(" ORDER BY d.location <-> ");
            push_point(&mut q, center.lon(), center.lat());
            q.push(" LIMIT ").push_bind(i64::from(*n)).push(") AS c");
            let bound: Option<f64> = crate::db::observe(
                "search_nearest_bound",
                q.build_query_scalar().fetch_one(&mut *conn),
            )
            .await?;
            let Some(bound) = bound else {
                return Ok(Vec::new());
            };
            // A millimetre of slack for floating point.
            let radius = bound + 0.001;
            let mut q = QueryBuilder::<Postgres>::new("SELECT ");
            q.push(COLUMNS);
            q.push(", ST_Distance(d.location::geography, ");
            push_point(&mut q, center.lon(), center.lat());
            q.push("::geography) AS distance_m FROM sigint.signal_detections d WHERE true");
            push_radius(&mut q, *center, radius);
            push_filters(&mut q, search);
            q.push(" ORDER BY distance_m, d.id LIMIT ")
                .push_bind(i64::from(*n));
            let query = q.build_query_as::<DetectionRow>();
            return crate::db::observe("search_nearest", query.fetch_all(&mut *conn)).await;
        }
        _ => {
            q.push("SELECT ");
            q.push(COLUMNS);
            q.push(", NULL::float8 AS distance_m FROM sigint.signal_detections d WHERE true");
        }
    }
    match search.area() {
        Area::BBox(b) => {
            q.push(" AND d.location && ST_MakeEnvelope(")
                .push_bind(b.min_lon)
                .push(", ")
                .push_bind(b.min_lat)
                .push(", ")
                .push_bind(b.max_lon)
                .push(", ")
                .push_bind(b.max_lat)
                .push(", 4326)");
        }
        Area::Radius { center, radius_m } => push_radius(&mut q, *center, *radius_m),
        Area::Anywhere | Area::Nearest { .. } => {}
    }
    push_filters(&mut q, search);
    if let Some(after) = search.after() {
        q.push(" AND d.id > ").push_bind(after);
    }
    q.push(" ORDER BY d.id LIMIT ").push_bind(fetch);
    let query = q.build_query_as::<DetectionRow>();
    crate::db::observe("search", query.fetch_all(&mut *conn)).await
}

pub async fn get(conn: &mut PgConnection, id: i64) -> Result<Option<DetectionRow>, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new("SELECT ");
    q.push(COLUMNS);
    q.push(", NULL::float8 AS distance_m FROM sigint.signal_detections d WHERE d.id = ")
        .push_bind(id);
    let query = q.build_query_as::<DetectionRow>();
    crate::db::observe("get_detection", query.fetch_optional(&mut *conn)).await
}

#[derive(Debug, Serialize)]
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
