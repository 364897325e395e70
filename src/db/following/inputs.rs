//! What the scorer reads about the pairs it scores: their fixes (or, without GPS, their times
//! and how much the device's surroundings changed), the device's path, the safe zones near, what
//! the registry knows of each transmitter, and a rotating tracker's other addresses.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::db::observe;
use crate::domain::following::{self, AddressSpan, Churn, Fix, PathPoint, Zone};
use crate::domain::registry::TransmitterKey;
use crate::domain::tracker::TrackerClass;
use crate::domain::SignalType;

/// Each pair's most recent sightings (at most `limit` each), oldest first, in the order of
/// `pairs`: one statement per address column, so the MAC indexes serve every pair.
pub async fn fixes(
    conn: &mut PgConnection,
    pairs: &[(TransmitterKey, Uuid)],
    limit: i64,
) -> Result<Vec<Vec<Fix>>, sqlx::Error> {
    let mut out: Vec<Vec<Fix>> = vec![Vec::new(); pairs.len()];
    for column in ["bssid", "bt_address"] {
        let idx: Vec<usize> = (0..pairs.len())
            .filter(|&i| match pairs[i].0.radio {
                SignalType::Wifi => column == "bssid",
                SignalType::Bluetooth | SignalType::Ble => column == "bt_address",
                SignalType::Cellular => false,
            })
            .collect();
        if idx.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT k.i, f.id, f.detected_at, f.lat, f.lon, f.accuracy_meters, f.altitude_meters \
             FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::int8[]) AS k(radio, identifier, device, i) \
             CROSS JOIN LATERAL (SELECT d.id, d.detected_at, ST_Y(d.location) AS lat, ST_X(d.location) AS lon, \
                 d.accuracy_meters, d.altitude_meters FROM sigint.signal_detections d \
                 WHERE d.{column} = k.identifier::macaddr AND d.signal_type = k.radio::sigint.signal_type \
                   AND d.device_id = k.device AND d.location IS NOT NULL AND d.position_source IS NULL \
                 ORDER BY d.detected_at DESC LIMIT $5) AS f \
             ORDER BY k.i, f.detected_at, f.id"
        );
        let radios: Vec<&str> = idx.iter().map(|&i| pairs[i].0.radio.as_str()).collect();
        let ids: Vec<&str> = idx
            .iter()
            .map(|&i| pairs[i].0.identifier.as_str())
            .collect();
        let devices: Vec<Uuid> = idx.iter().map(|&i| pairs[i].1).collect();
        let order: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        let rows = observe(
            "following_fixes",
            sqlx::query(&sql)
                .bind(radios)
                .bind(ids)
                .bind(devices)
                .bind(order)
                .bind(limit)
                .fetch_all(&mut *conn),
        )
        .await?;
        for r in rows {
            let i: i64 = r.try_get("i")?;
            let Some(list) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) else {
                continue;
            };
            list.push(Fix {
                id: r.try_get("id")?,
                at: r.try_get("detected_at")?,
                lat: r.try_get("lat")?,
                lon: r.try_get("lon")?,
                accuracy_m: r.try_get("accuracy_meters")?,
                altitude_m: r.try_get("altitude_meters")?,
            });
        }
    }
    Ok(out)
}

/// Each device's per-minute path over its window (from, to).
pub async fn paths(
    conn: &mut PgConnection,
    windows: &BTreeMap<Uuid, (DateTime<Utc>, DateTime<Utc>)>,
) -> Result<HashMap<Uuid, Vec<PathPoint>>, sqlx::Error> {
    let devices: Vec<Uuid> = windows.keys().copied().collect();
    let from: Vec<DateTime<Utc>> = windows.values().map(|w| w.0).collect();
    let to: Vec<DateTime<Utc>> = windows.values().map(|w| w.1).collect();
    let rows: Vec<(Uuid, DateTime<Utc>, f64, f64)> = observe(
        "following_path",
        sqlx::query_as(
            "SELECT m.device_id, m.minute, m.lat_sum / m.fixes, m.lon_sum / m.fixes \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS k(device, f, t) \
             JOIN sigint.device_minutes m ON m.device_id = k.device AND m.minute BETWEEN k.f AND k.t \
             ORDER BY m.device_id, m.minute",
        )
        .bind(devices)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn),
    )
    .await?;
    let mut out: HashMap<Uuid, Vec<PathPoint>> = HashMap::new();
    for (device, minute, lat, lon) in rows {
        out.entry(device)
            .or_default()
            .push(PathPoint { minute, lat, lon });
    }
    Ok(out)
}

/// The safe zones that may hold any point of `bbox` (west, south, east, north): every zone's
/// radius is at most 5 km, so the box grows by 0.1° (more than 5 km at any latitude the
/// detector scores). At most `MAX_ZONES_NEAR`, nearest the box's centre first.
pub async fn zones_near(conn: &mut PgConnection, bbox: [f64; 4]) -> Result<Vec<Zone>, sqlx::Error> {
    let rows: Vec<(i64, String, f64, f64, f64)> = observe(
        "following_zones",
        sqlx::query_as(
            "SELECT id, name, ST_Y(location), ST_X(location), radius_m FROM sigint.safe_zones \
             WHERE location && ST_Expand(ST_MakeEnvelope($1, $2, $3, $4, 4326), 0.1) \
             ORDER BY location <-> ST_Centroid(ST_MakeEnvelope($1, $2, $3, $4, 4326)) LIMIT $5",
        )
        .bind(bbox[0])
        .bind(bbox[1])
        .bind(bbox[2])
        .bind(bbox[3])
        .bind(MAX_ZONES_NEAR)
        .fetch_all(&mut *conn),
    )
    .await?;
    Ok(rows.into_iter().map(zone_of).collect())
}

/// Zones the scorer considers at once, whatever an operator has made.
const MAX_ZONES_NEAR: i64 = 1_000;

pub(crate) fn zone_of((id, name, lat, lon, radius_m): (i64, String, f64, f64, f64)) -> Zone {
    Zone {
        id,
        name,
        lat,
        lon,
        radius_m,
    }
}

/// What the scorer knows of a transmitter before its fixes.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubjectRow {
    pub allowlisted: bool,
    pub tracker: Option<TrackerClass>,
    /// Detections in the registry.
    pub detections: i64,
    /// Distinct days the registry has seen it on.
    pub days_seen: i64,
}

/// For each key, what the scorer knows of it.
pub async fn subjects(
    conn: &mut PgConnection,
    keys: &[TransmitterKey],
) -> Result<HashMap<TransmitterKey, SubjectRow>, sqlx::Error> {
    let radios: Vec<&str> = keys.iter().map(|k| k.radio.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.identifier.as_str()).collect();
    let rows = observe(
        "following_subjects",
        sqlx::query(
            "SELECT k.radio, k.identifier, (a.identifier IS NOT NULL) AS allowlisted, t.tracker_class, \
             COALESCE(t.detections, 0) AS detections, COALESCE(cardinality(t.days), 0)::int8 AS days_seen \
             FROM UNNEST($1::text[], $2::text[]) AS k(radio, identifier) \
             LEFT JOIN sigint.allowlist a ON a.radio = k.radio::sigint.signal_type AND a.identifier = k.identifier \
             LEFT JOIN sigint.transmitters t ON t.radio = k.radio::sigint.signal_type AND t.identifier = k.identifier",
        )
        .bind(radios)
        .bind(ids)
        .fetch_all(&mut *conn),
    )
    .await?;
    let mut out = HashMap::new();
    for row in rows {
        let radio: String = row.try_get("radio")?;
        let Ok(radio) = radio.parse::<SignalType>() else {
            continue;
        };
        let class: Option<String> = row.try_get("tracker_class")?;
        out.insert(
            TransmitterKey {
                radio,
                identifier: row.try_get("identifier")?,
            },
            SubjectRow {
                allowlisted: row.try_get("allowlisted")?,
                tracker: class.as_deref().and_then(TrackerClass::parse),
                detections: row.try_get("detections")?,
                days_seen: row.try_get("days_seen")?,
            },
        );
    }
    Ok(out)
}

/// The addresses of tracker class `class` that `device` heard, last heard at or after `from` and
/// first heard at or before `to`, with when the registry first and last heard each: the
/// candidates for one rotating tracker's successive addresses. At most 2,000, latest first.
pub async fn tracker_spans(
    conn: &mut PgConnection,
    class: TrackerClass,
    device: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<AddressSpan>, sqlx::Error> {
    let rows: Vec<(String, String, DateTime<Utc>, DateTime<Utc>)> = observe(
        "following_tracker_spans",
        sqlx::query_as(
            "SELECT radio::text, identifier, first_seen, last_seen FROM sigint.transmitters \
             WHERE tracker_class = $1 AND $2 = ANY(devices) AND last_seen >= $3 AND first_seen <= $4 \
             ORDER BY last_seen DESC LIMIT 2000",
        )
        .bind(class.as_str())
        .bind(device)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn),
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(radio, identifier, first, last)| {
            Some(AddressSpan {
                key: TransmitterKey::parse(&radio, &identifier).ok()?,
                first,
                last,
            })
        })
        .collect())
}

/// Each pair's sightings without a fix from `since` on (at most `limit` each, the most recent),
/// oldest first, in the order of `pairs`: the time-only evidence of a capture device without GPS.
pub async fn fixless_times(
    conn: &mut PgConnection,
    pairs: &[(TransmitterKey, Uuid)],
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Vec<DateTime<Utc>>>, sqlx::Error> {
    let mut out: Vec<Vec<DateTime<Utc>>> = vec![Vec::new(); pairs.len()];
    for column in ["bssid", "bt_address"] {
        let idx: Vec<usize> = (0..pairs.len())
            .filter(|&i| match pairs[i].0.radio {
                SignalType::Wifi => column == "bssid",
                SignalType::Bluetooth | SignalType::Ble => column == "bt_address",
                SignalType::Cellular => false,
            })
            .collect();
        if idx.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT k.i, f.detected_at \
             FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::int8[]) AS k(radio, identifier, device, i) \
             CROSS JOIN LATERAL (SELECT d.detected_at FROM sigint.signal_detections d \
                 WHERE d.{column} = k.identifier::macaddr AND d.signal_type = k.radio::sigint.signal_type \
                   AND d.device_id = k.device AND (d.location IS NULL OR d.position_source IS NOT NULL) \
                   AND d.detected_at >= $6 \
                 ORDER BY d.detected_at DESC LIMIT $5) AS f \
             ORDER BY k.i, f.detected_at"
        );
        let radios: Vec<&str> = idx.iter().map(|&i| pairs[i].0.radio.as_str()).collect();
        let ids: Vec<&str> = idx
            .iter()
            .map(|&i| pairs[i].0.identifier.as_str())
            .collect();
        let devices: Vec<Uuid> = idx.iter().map(|&i| pairs[i].1).collect();
        let order: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        let rows: Vec<(i64, DateTime<Utc>)> = observe(
            "following_fixless_times",
            sqlx::query_as(&sql)
                .bind(radios)
                .bind(ids)
                .bind(devices)
                .bind(order)
                .bind(limit)
                .bind(since)
                .fetch_all(&mut *conn),
        )
        .await?;
        for (i, at) in rows {
            if let Some(list) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                list.push(at);
            }
        }
    }
    Ok(out)
}

/// What `device` heard between `from` and `to`: how many transmitters, and how many of them in
/// one time window only (of `following::TIME_WINDOW_MINUTES`).
pub async fn churn(
    conn: &mut PgConnection,
    device: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Churn, sqlx::Error> {
    let (heard, heard_once): (i64, i64) = observe(
        "following_churn",
        sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE windows = 1) FROM ( \
                 SELECT count(DISTINCT date_bin($4::interval, d.detected_at, TIMESTAMPTZ '2000-01-01')) AS windows \
                 FROM sigint.signal_detections d \
                 WHERE d.device_id = $1 AND d.detected_at >= $2 AND d.detected_at <= $3 \
                 GROUP BY d.signal_type, d.bssid, d.bt_address, d.mcc, d.mnc, d.lac, d.cell_id) AS t",
        )
        .bind(device)
        .bind(from)
        .bind(to)
        .bind(format!("{} minutes", following::TIME_WINDOW_MINUTES))
        .fetch_one(&mut *conn),
    )
    .await?;
    Ok(Churn {
        heard: heard as usize,
        heard_once: heard_once as usize,
    })
}
