//! Positions that are not a capture's own fix: a fixed sensor's surveyed position for its rows
//! without one, an estimate from the transmitters the registry knows that the same device heard
//! in the same scan, and the registry's positions `/v1/geolocate` answers from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use crate::domain::geolocate::{self, Known};
use crate::domain::registry::TransmitterKey;
use crate::domain::{Mac, Position, SignalType};

/// Transmitters heard within this many seconds of a row, by the same device, are its scan.
pub const SCAN_WINDOW_SECS: f64 = 10.0;
/// At most this many neighbours are read per row: a scan, not a day.
const MAX_NEIGHBOURS: i64 = 200;
/// The spread assumed for a transmitter the registry placed from a single fix.
const SINGLE_FIX_SPREAD_M: f64 = 100.0;

/// The registry's key of detection `n` as SQL (see `TransmitterKey`).
const KEY_OF_N: &str = "CASE n.signal_type WHEN 'wifi' THEN n.bssid::text \
     WHEN 'cellular' THEN concat_ws('-', n.mcc, n.mnc, coalesce(n.lac::text, ''), n.cell_id) \
     ELSE n.bt_address::text END";

/// How many unfixed rows were placed, and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    pub sensor: u64,
    pub estimated: u64,
}

/// Places the new rows stored without a position, in the inserting transaction: those of a
/// fixed sensor at the sensor, the others at an estimate when their scan allows one. Rows that
/// can be neither stay without a position.
pub async fn place_unfixed(
    conn: &mut PgConnection,
    unfixed: &[(i64, DateTime<Utc>)],
) -> Result<Placed, sqlx::Error> {
    if unfixed.is_empty() {
        return Ok(Placed::default());
    }
    let (ids, ats): (Vec<i64>, Vec<DateTime<Utc>>) = unfixed.iter().copied().unzip();
    let at_sensor: Vec<i64> = crate::db::observe(
        "place_at_sensor",
        sqlx::query_scalar(
            "UPDATE sigint.signal_detections d \
                SET location = c.position, accuracy_meters = c.accuracy_m, position_source = 'sensor' \
               FROM UNNEST($1::int8[], $2::timestamptz[]) AS k(id, at), sigint.capture_devices c \
              WHERE d.id = k.id AND d.detected_at = k.at AND d.location IS NULL \
                AND c.id = d.device_id AND c.kind = 'fixed_sensor' AND c.position IS NOT NULL \
             RETURNING d.id",
        )
        .bind(&ids)
        .bind(&ats)
        .fetch_all(&mut *conn),
    )
    .await?;
    let mut placed = Placed {
        sensor: at_sensor.len() as u64,
        estimated: 0,
    };
    let (ids, ats): (Vec<i64>, Vec<DateTime<Utc>>) = unfixed
        .iter()
        .filter(|(id, _)| !at_sensor.contains(id))
        .copied()
        .unzip();
    if ids.is_empty() {
        return Ok(placed);
    }
    let sql = format!(
        "SELECT k.id, k.at, n.radio, n.ident, n.ssid, n.signal, ST_Y(t.location) AS lat, \
                ST_X(t.location) AS lon, t.spread_m \
           FROM UNNEST($1::int8[], $2::timestamptz[]) AS k(id, at) \
           JOIN sigint.signal_detections u ON u.id = k.id AND u.detected_at = k.at \
           CROSS JOIN LATERAL ( \
               SELECT n.signal_type, n.signal_type::text AS radio, {KEY_OF_N} AS ident, n.ssid, \
                      COALESCE(n.signal_strength_dbm, n.bt_rssi) AS signal \
                 FROM sigint.signal_detections n \
                WHERE n.device_id = u.device_id \
                  AND n.detected_at BETWEEN u.detected_at - make_interval(secs => $3) \
                                        AND u.detected_at + make_interval(secs => $3) \
                LIMIT $4) n \
           JOIN sigint.transmitters t ON t.radio = n.signal_type AND t.identifier = n.ident \
          WHERE u.device_id IS NOT NULL AND t.location IS NOT NULL"
    );
    let rows = crate::db::observe(
        "place_estimate_inputs",
        sqlx::query(&sql)
            .bind(&ids)
            .bind(&ats)
            .bind(SCAN_WINDOW_SECS)
            .bind(MAX_NEIGHBOURS)
            .fetch_all(&mut *conn),
    )
    .await?;
    let mut scans: BTreeMap<(i64, DateTime<Utc>), Vec<Known>> = BTreeMap::new();
    for row in rows {
        let radio: String = row.try_get("radio")?;
        let ident: String = row.try_get("ident")?;
        let ssid: Option<String> = row.try_get("ssid")?;
        let Some(known) = known_row(
            &radio,
            &ident,
            ssid.as_deref(),
            row.try_get("signal")?,
            (row.try_get("lat")?, row.try_get("lon")?),
            row.try_get("spread_m")?,
        ) else {
            continue;
        };
        scans
            .entry((row.try_get("id")?, row.try_get("at")?))
            .or_default()
            .push(known);
    }
    let mut update = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((id, at), heard) in scans {
        if let Some(e) = geolocate::locate(&heard) {
            update.0.push(id);
            update.1.push(at);
            update.2.push(e.position.lat());
            update.3.push(e.position.lon());
            update.4.push(e.accuracy_m);
        }
    }
    if update.0.is_empty() {
        return Ok(placed);
    }
    placed.estimated = crate::db::observe(
        "place_estimated",
        sqlx::query(
            "UPDATE sigint.signal_detections d \
                SET location = ST_SetSRID(ST_MakePoint(e.lon, e.lat), 4326), \
                    accuracy_meters = e.accuracy, position_source = 'estimated' \
               FROM UNNEST($1::int8[], $2::timestamptz[], $3::float8[], $4::float8[], $5::float8[]) \
                    AS e(id, at, lat, lon, accuracy) \
              WHERE d.id = e.id AND d.detected_at = e.at AND d.location IS NULL",
        )
        .bind(&update.0)
        .bind(&update.1)
        .bind(&update.2)
        .bind(&update.3)
        .bind(&update.4)
        .execute(&mut *conn),
    )
    .await?
    .rows_affected();
    Ok(placed)
}

/// A heard transmitter the registry placed, if it may be used (see `geolocate::usable`).
fn known_row(
    radio: &str,
    identifier: &str,
    ssid: Option<&str>,
    signal_dbm: Option<i32>,
    (lat, lon): (f64, f64),
    spread_m: Option<f64>,
) -> Option<Known> {
    let radio: SignalType = radio.parse().ok()?;
    if radio != SignalType::Cellular {
        let mac: Mac = identifier.parse().ok()?;
        if !geolocate::usable(&mac, ssid) {
            return None;
        }
    }
    Some(Known {
        radio,
        position: Position::new(lat, lon).ok()?,
        spread_m: spread_m.unwrap_or(SINGLE_FIX_SPREAD_M),
        signal_dbm,
    })
}

/// One transmitter a client heard: what `/v1/geolocate` looks up.
#[derive(Clone, Debug)]
pub struct Heard {
    pub key: TransmitterKey,
    pub signal_dbm: Option<i32>,
}

/// The registry's positions of the heard transmitters it knows (the caller has already left
/// out the unusable ones).
pub async fn known(conn: &mut PgConnection, heard: &[Heard]) -> Result<Vec<Known>, sqlx::Error> {
    if heard.is_empty() {
        return Ok(Vec::new());
    }
    let radios: Vec<&str> = heard.iter().map(|h| h.key.radio.as_str()).collect();
    let ids: Vec<&str> = heard.iter().map(|h| h.key.identifier.as_str()).collect();
    let signals: Vec<Option<i32>> = heard.iter().map(|h| h.signal_dbm).collect();
    let rows = crate::db::observe(
        "geolocate_known",
        sqlx::query(
            "SELECT k.radio, k.signal, ST_Y(t.location) AS lat, ST_X(t.location) AS lon, t.spread_m \
               FROM UNNEST($1::text[], $2::text[], $3::int4[]) AS k(radio, identifier, signal) \
               JOIN sigint.transmitters t \
                 ON t.radio = k.radio::sigint.signal_type AND t.identifier = k.identifier \
              WHERE t.location IS NOT NULL",
        )
        .bind(&radios)
        .bind(&ids)
        .bind(&signals)
        .fetch_all(&mut *conn),
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let radio: String = row.try_get("radio")?;
        let (lat, lon): (f64, f64) = (row.try_get("lat")?, row.try_get("lon")?);
        let (Ok(radio), Ok(position)) = (radio.parse::<SignalType>(), Position::new(lat, lon))
        else {
            continue;
        };
        out.push(Known {
            radio,
            position,
            spread_m: row
                .try_get::<Option<f64>, _>("spread_m")?
                .unwrap_or(SINGLE_FIX_SPREAD_M),
            signal_dbm: row.try_get("signal")?,
        });
    }
    Ok(out)
}
