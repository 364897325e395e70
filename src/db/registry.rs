//! The transmitter registry's SQL: claiming queued detections, reading and writing registry
//! rows, the updater's lag, and the registry's search and track queries.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::db::filters::{like_pattern, push_within};
use crate::domain::following::Level;
use crate::domain::registry::{Entry, Estimate, MacKind, Sighting, TransmitterKey};
use crate::domain::rogue::{Flag, Security};
use crate::domain::search::{Sort, TransmitterSearch};
use crate::domain::tracker::{Classification, TrackerClass};
use crate::domain::{Mac, SignalType};

/// Takes up to `limit` queued detections off the queue (in the caller's transaction, so a
/// rollback puts them back) with what the registry needs of each. Detections whose partition
/// was dropped since are simply gone.
pub async fn claim(conn: &mut PgConnection, limit: i64) -> Result<Vec<Sighting>, sqlx::Error> {
    const SQL: &str = r#"
        WITH claimed AS (
            DELETE FROM sigint.registry_queue
            WHERE ctid = ANY (ARRAY(
                SELECT ctid FROM sigint.registry_queue LIMIT $1 FOR UPDATE SKIP LOCKED))
            RETURNING detection_id, detected_at
        )
        SELECT d.id, d.detected_at, d.signal_type::text AS radio,
               d.bssid::text AS bssid, d.bt_address::text AS bt_address,
               d.mcc, d.mnc, d.lac, d.cell_id,
               COALESCE(d.ssid, d.bt_name) AS name,
               COALESCE(d.signal_strength_dbm, d.bt_rssi) AS signal_dbm,
               -- An estimated position is the registry's own guess: never fed back into it.
               ST_Y(p.fix) AS lat, ST_X(p.fix) AS lon,
               d.accuracy_meters, d.altitude_meters, d.device_id, d.security,
               d.ble_manufacturer_id, d.ble_service_uuids, d.ble_advertisement
        FROM claimed c
        JOIN sigint.signal_detections d ON d.id = c.detection_id AND d.detected_at = c.detected_at
        CROSS JOIN LATERAL (SELECT CASE WHEN d.position_source IS DISTINCT FROM 'estimated'
                                        THEN d.location END AS fix) p
    "#;
    let rows = crate::db::observe(
        "registry_claim",
        sqlx::query(SQL).bind(limit).fetch_all(&mut *conn),
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let radio: String = row.try_get("radio")?;
        let Ok(radio) = radio.parse::<SignalType>() else {
            continue;
        };
        let mac = |column: &str| -> Result<Option<Mac>, sqlx::Error> {
            Ok(row
                .try_get::<Option<String>, _>(column)?
                .and_then(|m| m.parse().ok()))
        };
        let key = match radio {
            SignalType::Wifi => mac("bssid")?.map(|m| TransmitterKey::mac(radio, m)),
            SignalType::Bluetooth | SignalType::Ble => {
                mac("bt_address")?.map(|m| TransmitterKey::mac(radio, m))
            }
            SignalType::Cellular => {
                match (
                    row.try_get::<Option<i16>, _>("mcc")?,
                    row.try_get::<Option<i16>, _>("mnc")?,
                    row.try_get::<Option<i64>, _>("cell_id")?,
                ) {
                    (Some(mcc), Some(mnc), Some(cell)) => {
                        Some(TransmitterKey::cell(mcc, mnc, row.try_get("lac")?, cell))
                    }
                    _ => None,
                }
            }
        };
        let Some(key) = key else { continue };
        out.push(Sighting {
            id: row.try_get("id")?,
            key,
            at: row.try_get("detected_at")?,
            fix: row
                .try_get::<Option<f64>, _>("lat")?
                .zip(row.try_get::<Option<f64>, _>("lon")?),
            accuracy_m: row.try_get("accuracy_meters")?,
            altitude_m: row.try_get("altitude_meters")?,
            signal_dbm: row.try_get("signal_dbm")?,
            device: row.try_get("device_id")?,
            name: row.try_get("name")?,
            security: row.try_get("security")?,
            manufacturer_id: row.try_get("ble_manufacturer_id")?,
            service_uuids: row.try_get("ble_service_uuids")?,
            advertisement: row.try_get("ble_advertisement")?,
        });
    }
    Ok(out)
}

/// The registry rows of `keys` that exist, locked until the transaction ends. Their position
/// and spread are left for [`Entry::settle`], which the updater calls after absorbing.
pub async fn load(
    conn: &mut PgConnection,
    keys: &[TransmitterKey],
) -> Result<Vec<Entry>, sqlx::Error> {
    const SQL: &str = r#"
        SELECT t.radio::text AS radio, t.identifier, t.first_seen, t.last_seen, t.detections,
               t.days, t.devices, t.names, t.best_signal_dbm, t.best_signal_at,
               ST_Y(t.best_location) AS best_lat, ST_X(t.best_location) AS best_lon,
               t.fixes, t.estimate, t.estimate_bin, t.security, t.tracker_class,
               t.tracker_evidence
        FROM sigint.transmitters t
        JOIN UNNEST($1::text[], $2::text[]) AS k(radio, identifier)
          ON t.radio = k.radio::sigint.signal_type AND t.identifier = k.identifier
        ORDER BY t.radio, t.identifier
        FOR UPDATE OF t
    "#;
    let radios: Vec<&str> = keys.iter().map(|k| k.radio.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.identifier.as_str()).collect();
    let rows = crate::db::observe(
        "registry_load",
        sqlx::query(SQL)
            .bind(&radios)
            .bind(&ids)
            .fetch_all(&mut *conn),
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let radio: String = row.try_get("radio")?;
        let Ok(radio) = radio.parse::<SignalType>() else {
            continue;
        };
        let best = match (
            row.try_get::<Option<f64>, _>("best_lat")?,
            row.try_get::<Option<f64>, _>("best_lon")?,
        ) {
            (Some(lat), Some(lon)) => Some((lat, lon)),
            _ => None,
        };
        // Bytes since 20261130000003; JSON in rows not updated since.
        let estimate = match row.try_get::<Option<Vec<u8>>, _>("estimate_bin")? {
            Some(b) => Estimate::from_bytes(&b).unwrap_or_default(),
            None => row
                .try_get::<Option<sqlx::types::Json<Estimate>>, _>("estimate")?
                .map(|j| j.0)
                .unwrap_or_default(),
        };
        let tracker = match (
            row.try_get::<Option<String>, _>("tracker_class")?
                .as_deref()
                .and_then(TrackerClass::parse),
            row.try_get::<Option<String>, _>("tracker_evidence")?,
        ) {
            (Some(class), Some(evidence)) => Some(Classification { class, evidence }),
            _ => None,
        };
        out.push(Entry {
            key: TransmitterKey {
                radio,
                identifier: row.try_get("identifier")?,
            },
            first_seen: row.try_get("first_seen")?,
            last_seen: row.try_get("last_seen")?,
            detections: row.try_get("detections")?,
            days: row.try_get::<Vec<NaiveDate>, _>("days")?,
            devices: row.try_get::<Vec<Uuid>, _>("devices")?,
            names: row.try_get::<Vec<String>, _>("names")?,
            best_signal_dbm: row.try_get("best_signal_dbm")?,
            best_signal_at: row.try_get("best_signal_at")?,
            best_location: best,
            location: None,
            spread_m: None,
            fixes: row.try_get("fixes")?,
            estimate,
            security: security_classes(row.try_get("security")?),
            tracker,
            flags: Vec::new(),
        });
    }
    Ok(out)
}

/// Writes `entries` (new or updated) in one statement.
pub async fn save(conn: &mut PgConnection, entries: &[Entry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    const SQL: &str = r#"
        INSERT INTO sigint.transmitters AS t (radio, identifier, first_seen, last_seen, detections,
            days, devices, names, best_signal_dbm, best_signal_at, best_location, location,
            spread_m, fixes, mac_kind, vendor, estimate, estimate_bin, security, tracker_class,
            tracker_evidence,
            flags)
        SELECT r.radio::sigint.signal_type, r.identifier, r.first_seen, r.last_seen, r.detections,
               r.days, r.devices, r.names, r.best_signal_dbm, r.best_signal_at,
               CASE WHEN r.best_lat IS NOT NULL
                    THEN ST_SetSRID(ST_MakePoint(r.best_lon, r.best_lat), 4326) END,
               CASE WHEN r.lat IS NOT NULL THEN ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326) END,
               r.spread_m, r.fixes, r.mac_kind, r.vendor, NULL, b.estimate, r.security,
               r.tracker_class, r.tracker_evidence, r.flags
        FROM jsonb_to_recordset($1::text::jsonb) AS r(radio text, identifier text,
            first_seen timestamptz, last_seen timestamptz, detections bigint, days date[],
            devices uuid[], names text[], best_signal_dbm integer, best_signal_at timestamptz,
            best_lat float8, best_lon float8, lat float8, lon float8, spread_m float8,
            fixes bigint, mac_kind text, vendor text, security text[],
            tracker_class text, tracker_evidence text, flags jsonb, ord bigint)
        JOIN UNNEST($2::bytea[]) WITH ORDINALITY AS b(estimate, ord) USING (ord)
        ON CONFLICT (radio, identifier) DO UPDATE SET
            first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen,
            detections = EXCLUDED.detections, days = EXCLUDED.days, devices = EXCLUDED.devices,
            names = EXCLUDED.names, best_signal_dbm = EXCLUDED.best_signal_dbm,
            best_signal_at = EXCLUDED.best_signal_at, best_location = EXCLUDED.best_location,
            location = EXCLUDED.location, spread_m = EXCLUDED.spread_m, fixes = EXCLUDED.fixes,
            mac_kind = EXCLUDED.mac_kind, vendor = EXCLUDED.vendor, estimate = NULL,
            estimate_bin = EXCLUDED.estimate_bin,
            security = EXCLUDED.security, tracker_class = EXCLUDED.tracker_class,
            tracker_evidence = EXCLUDED.tracker_evidence, flags = EXCLUDED.flags,
            updated_at = now()
    "#;
    // Serialised straight to one JSON text (no intermediate values): a chunk's rows cost
    // their text once.
    #[derive(Serialize)]
    struct Out<'a> {
        radio: &'static str,
        identifier: &'a str,
        first_seen: DateTime<Utc>,
        last_seen: DateTime<Utc>,
        detections: i64,
        days: &'a [NaiveDate],
        devices: &'a [Uuid],
        names: &'a [String],
        best_signal_dbm: Option<i32>,
        best_signal_at: Option<DateTime<Utc>>,
        best_lat: Option<f64>,
        best_lon: Option<f64>,
        lat: Option<f64>,
        lon: Option<f64>,
        spread_m: Option<f64>,
        fixes: i64,
        mac_kind: Option<&'static str>,
        vendor: Option<&'static str>,
        security: &'a [Security],
        /// 1-based position, pairing the row with its estimate bytes.
        ord: usize,
        tracker_class: Option<&'static str>,
        tracker_evidence: Option<&'a str>,
        flags: &'a [Flag],
    }
    let rows: Vec<Out<'_>> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| Out {
            radio: e.key.radio.as_str(),
            identifier: &e.key.identifier,
            first_seen: e.first_seen,
            last_seen: e.last_seen,
            detections: e.detections,
            days: &e.days,
            devices: &e.devices,
            names: &e.names,
            best_signal_dbm: e.best_signal_dbm,
            best_signal_at: e.best_signal_at,
            best_lat: e.best_location.map(|p| p.0),
            best_lon: e.best_location.map(|p| p.1),
            lat: e.location.map(|p| p.0),
            lon: e.location.map(|p| p.1),
            spread_m: e.spread_m,
            fixes: e.fixes,
            mac_kind: e.key.mac_kind().map(MacKind::as_str),
            vendor: e.key.vendor(),
            security: &e.security,
            ord: i + 1,
            tracker_class: e.tracker.as_ref().map(|t| t.class.as_str()),
            tracker_evidence: e.tracker.as_ref().map(|t| t.evidence.as_str()),
            flags: &e.flags,
        })
        .collect();
    let estimates: Vec<Vec<u8>> = entries.iter().map(|e| e.estimate.to_bytes()).collect();
    let text = crate::db::json_text(&rows)?;
    drop(rows);
    crate::db::observe(
        "registry_save",
        sqlx::query(SQL)
            .bind(text)
            .bind(estimates)
            .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Only one updater folds detections in at a time (across every process on the database):
/// two would each merge into a stale copy of the same new row.
pub async fn try_lock_updater(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('sigint.registry_updater'))")
        .fetch_one(&mut *conn)
        .await
}

/// Detections waiting for the registry, and how long the oldest has waited (seconds).
pub async fn lag(conn: &mut PgConnection) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(queued_at)), 0)::float8 \
         FROM sigint.registry_queue",
    )
    .fetch_one(&mut *conn)
    .await
}

/// One registry row as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct TransmitterRow {
    /// A stable integer id (OGC API feature id).
    pub transmitter_id: i64,
    pub radio: String,
    pub identifier: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub detections: i64,
    pub distinct_days: i32,
    pub devices: Vec<Uuid>,
    pub names: Vec<String>,
    pub best_signal_dbm: Option<i32>,
    pub best_signal_at: Option<DateTime<Utc>>,
    pub best_latitude: Option<f64>,
    pub best_longitude: Option<f64>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub spread_m: Option<f64>,
    pub fixes: i64,
    pub mac_kind: Option<String>,
    pub vendor: Option<String>,
    /// Security classes seen (wifi).
    pub security: Vec<String>,
    pub tracker_class: Option<String>,
    pub tracker_evidence: Option<String>,
    /// Rogue flags, each with its evidence.
    pub flags: serde_json::Value,
    /// The highest following score over capture devices, and its level.
    pub surveillance_score: Option<f32>,
    pub level: String,
    pub updated_at: DateTime<Utc>,
}

const ROW_COLUMNS: &str =
    "t.id AS transmitter_id, t.radio::text AS radio, t.identifier, t.first_seen, t.last_seen, \
    t.detections, COALESCE(cardinality(t.days), 0) AS distinct_days, t.devices, t.names, \
    t.best_signal_dbm, t.best_signal_at, ST_Y(t.best_location) AS best_latitude, \
    ST_X(t.best_location) AS best_longitude, ST_Y(t.location) AS latitude, \
    ST_X(t.location) AS longitude, t.spread_m, t.fixes, t.mac_kind, t.vendor, t.security, \
    t.tracker_class, t.tracker_evidence, t.flags || t.related_flags AS flags, \
    t.surveillance_score, t.level::text AS level, t.updated_at";

/// Up to `limit + 1` rows, so the caller knows whether a next page exists. Unprepared, planned
/// for its values (see `detections::search`).
pub async fn search(
    conn: &mut PgConnection,
    s: &TransmitterSearch,
) -> Result<Vec<TransmitterRow>, sqlx::Error> {
    let sort = s.sort;
    let sort_expr = match sort {
        Sort::LastSeen => "t.last_seen",
        Sort::Detections => "t.detections",
        Sort::Score => "t.surveillance_score",
    };
    let mut q = QueryBuilder::<Postgres>::new("SELECT ");
    q.push(ROW_COLUMNS);
    q.push(" FROM sigint.transmitters t WHERE true");
    if !s.radios.is_empty() {
        let radios: Vec<&str> = s.radios.iter().map(|r| r.as_str()).collect();
        q.push(" AND t.radio::text = ANY(")
            .push_bind(radios)
            .push(")");
    }
    if let Some(b) = &s.bbox {
        q.push(" AND ");
        push_within(&mut q, "t.location", b);
    }
    if let Some(from) = s.seen_from {
        q.push(" AND t.last_seen >= ").push_bind(from);
    }
    if let Some(until) = s.seen_until {
        q.push(" AND t.first_seen <= ").push_bind(until);
    }
    if let Some(name) = &s.name {
        q.push(" AND EXISTS (SELECT 1 FROM unnest(t.names) n WHERE n ILIKE ")
            .push_bind(like_pattern(name.as_str()))
            .push(")");
    }
    if let Some(vendor) = &s.vendor {
        q.push(" AND t.vendor ILIKE ")
            .push_bind(like_pattern(vendor.as_str()));
    }
    if let Some(device) = s.device_id {
        q.push(" AND ").push_bind(device).push(" = ANY(t.devices)");
    }
    if !s.trackers.is_empty() {
        let trackers: Vec<&str> = s.trackers.iter().map(|c| c.as_str()).collect();
        q.push(" AND t.tracker_class = ANY(")
            .push_bind(trackers)
            .push(")");
    }
    if let Some(min) = s.min_level {
        let levels: Vec<&str> = Level::ALL
            .into_iter()
            .filter(|l| *l >= min)
            .map(Level::as_str)
            .collect();
        q.push(" AND t.level = ANY(")
            .push_bind(levels)
            .push("::text[]::sigint.follow_level[])");
    }
    if let Some(min) = s.min_score {
        q.push(" AND t.surveillance_score >= ")
            .push_bind(min.value());
    }
    if sort == Sort::Score {
        q.push(" AND t.surveillance_score IS NOT NULL");
    }
    if let Some(flag) = &s.flag {
        q.push(
            " AND (t.flags || t.related_flags) @> jsonb_build_array(jsonb_build_object('flag', ",
        )
        .push_bind(flag.as_str())
        .push("::text))");
    }
    if let Some(after) = &s.after {
        q.push(" AND (")
            .push(sort_expr)
            .push(", t.radio::text, t.identifier) < (");
        match sort {
            Sort::LastSeen => q.push_bind(after.last_seen),
            Sort::Detections => q.push_bind(after.detections),
            Sort::Score => q.push_bind(after.score),
        };
        q.push(", ")
            .push_bind(after.key.radio.as_str())
            .push(", ")
            .push_bind(after.key.identifier.clone())
            .push(")");
    }
    q.push(" ORDER BY ")
        .push(sort_expr)
        .push(" DESC, t.radio::text DESC, t.identifier DESC LIMIT ")
        .push_bind(i64::from(s.limit) + 1);
    crate::db::observe(
        "registry_search",
        q.build_query_as::<TransmitterRow>()
            .persistent(false)
            .fetch_all(&mut *conn),
    )
    .await
}

/// One registry row.
pub async fn get(
    conn: &mut PgConnection,
    key: &TransmitterKey,
) -> Result<Option<TransmitterRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM sigint.transmitters t \
         WHERE t.radio = $1::sigint.signal_type AND t.identifier = $2"
    );
    crate::db::observe(
        "registry_get",
        sqlx::query_as::<_, TransmitterRow>(&sql)
            .bind(key.radio.as_str())
            .bind(&key.identifier)
            .fetch_optional(&mut *conn),
    )
    .await
}

/// One transmitter by its integer id.
pub async fn get_by_id(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<TransmitterRow>, sqlx::Error> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM sigint.transmitters t WHERE t.id = $1");
    crate::db::observe(
        "registry_get_by_id",
        sqlx::query_as::<_, TransmitterRow>(&sql)
            .bind(id)
            .fetch_optional(&mut *conn),
    )
    .await
}

/// One sighting on a transmitter's track.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct TrackPoint {
    pub id: i64,
    pub detected_at: DateTime<Utc>,
    /// Absent for a sighting without a fix (it still says when).
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub accuracy_meters: Option<f64>,
    /// `sensor` or `estimated` when the position is not the capture's own fix.
    pub position_source: Option<String>,
    pub signal_dbm: Option<i32>,
    pub device_id: Option<Uuid>,
}

/// The most recent `limit` sightings of a transmitter, returned oldest first.
pub async fn track(
    conn: &mut PgConnection,
    key: &TransmitterKey,
    limit: i64,
) -> Result<Vec<TrackPoint>, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new(
        "SELECT * FROM (SELECT d.id, d.detected_at, ST_Y(d.location) AS latitude, \
         ST_X(d.location) AS longitude, d.accuracy_meters, d.position_source, \
         COALESCE(d.signal_strength_dbm, d.bt_rssi) AS signal_dbm, d.device_id \
         FROM sigint.signal_detections d WHERE d.signal_type = ",
    );
    q.push_bind(key.radio.as_str()).push("::sigint.signal_type");
    match key.cell_parts() {
        Some((mcc, mnc, lac, cell)) => {
            q.push(" AND d.mcc = ")
                .push_bind(mcc)
                .push(" AND d.mnc = ")
                .push_bind(mnc)
                .push(" AND d.cell_id = ")
                .push_bind(cell)
                .push(" AND d.lac IS NOT DISTINCT FROM ")
                .push_bind(lac);
        }
        None if key.radio == SignalType::Wifi => {
            q.push(" AND d.bssid = ")
                .push_bind(key.identifier.clone())
                .push("::macaddr");
        }
        None => {
            q.push(" AND d.bt_address = ")
                .push_bind(key.identifier.clone())
                .push("::macaddr");
        }
    }
    q.push(" ORDER BY d.detected_at DESC, d.id DESC LIMIT ")
        .push_bind(limit)
        .push(") AS recent ORDER BY detected_at, id");
    crate::db::observe(
        "registry_track",
        q.build_query_as::<TrackPoint>().fetch_all(&mut *conn),
    )
    .await
}

/// Stored security class names as classes (a name this version does not know is left out).
pub(crate) fn security_classes(names: Vec<String>) -> Vec<Security> {
    let mut classes: Vec<Security> = names.iter().filter_map(|n| Security::parse(n)).collect();
    classes.sort();
    classes.dedup();
    classes
}
