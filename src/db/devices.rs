//! `sigint.capture_devices` and `sigint.device_reporters`: registered capture devices, and which
//! keys report for which device.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::domain::device::DeviceSpec;
use crate::domain::Detection;

/// A registered device as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Device {
    pub id: Uuid,
    pub name: String,
    /// phone, kismet_rig, esp32, stumbler or fixed_sensor.
    pub kind: String,
    /// A fixed sensor's position: its rows without a fix of their own are stored here.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub accuracy_m: Option<f64>,
    pub note: Option<String>,
    /// Its first and last detection (none yet: null).
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// The names of the keys that have sent its detections.
    pub reported_by: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT c.id, c.name, c.kind, ST_Y(c.position) AS latitude, \
     ST_X(c.position) AS longitude, c.accuracy_m::float8 AS accuracy_m, c.note, c.created_by, \
     c.created_at, c.updated_at, \
     (SELECT min(d.detected_at) FROM sigint.signal_detections d WHERE d.device_id = c.id) AS first_seen, \
     (SELECT max(d.detected_at) FROM sigint.signal_detections d WHERE d.device_id = c.id) AS last_seen, \
     ARRAY(SELECT r.key_name FROM sigint.device_reporters r WHERE r.device_id = c.id \
           ORDER BY r.key_name LIMIT 100) AS reported_by \
     FROM sigint.capture_devices c";

fn device(row: &sqlx::postgres::PgRow) -> Result<Device, sqlx::Error> {
    Ok(Device {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        accuracy_m: row.try_get("accuracy_m")?,
        note: row.try_get("note")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        reported_by: row.try_get("reported_by")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Registers `id`, or replaces its description (`true` when it was new).
pub async fn put(
    conn: &mut PgConnection,
    id: Uuid,
    spec: &DeviceSpec,
    by: &str,
) -> Result<bool, sqlx::Error> {
    let fixed = spec.fixed.as_ref();
    let new: bool = crate::db::observe(
        "device_put",
        sqlx::query_scalar(
            "INSERT INTO sigint.capture_devices AS c (id, name, kind, position, accuracy_m, note, created_by) \
             VALUES ($1, $2, $3, CASE WHEN $4::float8 IS NULL THEN NULL \
                     ELSE ST_SetSRID(ST_MakePoint($5, $4), 4326) END, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, \
                 position = EXCLUDED.position, accuracy_m = EXCLUDED.accuracy_m, \
                 note = EXCLUDED.note, updated_at = now() \
             RETURNING (xmax = 0)",
        )
        .bind(id)
        .bind(spec.name.as_str())
        .bind(spec.kind.as_str())
        .bind(fixed.map(|f| f.position.lat()))
        .bind(fixed.map(|f| f.position.lon()))
        .bind(fixed.map(|f| f.accuracy_m as f32))
        .bind(spec.note.as_ref().map(|n| n.as_str()))
        .bind(by)
        .fetch_one(&mut *conn),
    )
    .await?;
    Ok(new)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Device>, sqlx::Error> {
    let sql = format!("{SELECT} WHERE c.id = $1");
    let row = crate::db::observe(
        "device_get",
        sqlx::query(&sql).bind(id).fetch_optional(&mut *conn),
    )
    .await?;
    row.as_ref().map(device).transpose()
}

/// Devices in id order after `after`, at most `limit`.
pub async fn list(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Device>, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new(SELECT);
    if let Some(after) = after {
        q.push(" WHERE c.id > ").push_bind(after);
    }
    q.push(" ORDER BY c.id LIMIT ").push_bind(limit);
    let rows = crate::db::observe("device_list", q.build().fetch_all(&mut *conn)).await?;
    rows.iter().map(device).collect()
}

/// Removes a registration (its detections stay); `false` when there was none.
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = crate::db::observe(
        "device_delete",
        sqlx::query("DELETE FROM sigint.capture_devices WHERE id = $1")
            .bind(id)
            .execute(&mut *conn),
    )
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Notes that `key_name` reported for the batch's devices: one statement per batch, a row per
/// (device, key) pair touched at most once a minute.
pub async fn record_reporter(
    conn: &mut PgConnection,
    batch: &[Detection],
    key_name: &str,
) -> Result<(), sqlx::Error> {
    let mut devices: Vec<Uuid> = batch.iter().filter_map(|d| d.device_id).collect();
    devices.sort_unstable();
    devices.dedup();
    if devices.is_empty() {
        return Ok(());
    }
    crate::db::observe(
        "device_reporters",
        sqlx::query(
            "INSERT INTO sigint.device_reporters AS r (device_id, key_name) \
             SELECT unnest($1::uuid[]), $2 \
             ON CONFLICT (device_id, key_name) DO UPDATE SET last_seen = now() \
             WHERE r.last_seen < now() - interval '1 minute'",
        )
        .bind(&devices)
        .bind(key_name)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}
