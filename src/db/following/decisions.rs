//! The operators' decisions the detector obeys: the allow-list (transmitters that are theirs)
//! and safe zones (home, office), each bounded, owned by the key that made it, and rescoring the
//! pairs they touch.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::inputs::zone_of;
use crate::db::observe;
use crate::domain::following::Zone;
use crate::domain::registry::TransmitterKey;

/// One allow-listed transmitter.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Allowed {
    pub radio: String,
    pub identifier: String,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The API key (name) that made the entry; none for entries older than ownership.
    pub created_by: Option<String>,
}

/// A safe zone with its maker.
#[derive(Clone, Debug)]
pub struct OwnedZone {
    pub zone: Zone,
    pub created_by: Option<String>,
}

/// How many entries the allow-list and the safe zones may each hold.
pub const MAX_ENTRIES: i64 = 10_000;

/// The outcome of removing an operator's decision.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    NotFound,
    /// Made by another key (named, or none for entries older than ownership).
    NotYours(Option<String>),
}

/// The outcome of adding an allow-list entry.
#[derive(Debug)]
pub enum Allowing {
    Added(Allowed),
    /// This key's own entry, its note replaced.
    Renoted(Allowed),
    /// Already there, made by another key (named).
    Taken(Option<String>),
    Full,
}

/// Queues every pair of the transmitter (scored or merely seen) for rescoring.
async fn requeue_transmitter(
    conn: &mut PgConnection,
    key: &TransmitterKey,
) -> Result<(), sqlx::Error> {
    observe(
        "following_requeue",
        sqlx::query(
            "INSERT INTO sigint.following_queue (radio, identifier, device_id) \
             SELECT t.radio, t.identifier, d FROM sigint.transmitters t, unnest(t.devices) AS d \
             WHERE t.radio = $1::sigint.signal_type AND t.identifier = $2 AND t.radio <> 'cellular' \
             ON CONFLICT DO NOTHING",
        )
        .bind(key.radio.as_str())
        .bind(&key.identifier)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Adds an allow-list entry made by `owner`, or re-notes `owner`'s own.
pub async fn allow(
    conn: &mut PgConnection,
    key: &TransmitterKey,
    note: Option<&str>,
    owner: &str,
) -> Result<Allowing, sqlx::Error> {
    const COLUMNS: &str = "radio::text AS radio, identifier, note, created_at, created_by";
    let existing: Option<Allowed> = observe(
        "allowlist_get",
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sigint.allowlist \
             WHERE radio = $1::sigint.signal_type AND identifier = $2 FOR UPDATE"
        ))
        .bind(key.radio.as_str())
        .bind(&key.identifier)
        .fetch_optional(&mut *conn),
    )
    .await?;
    if let Some(entry) = existing {
        if entry.created_by.as_deref() != Some(owner) {
            return Ok(Allowing::Taken(entry.created_by));
        }
        let entry: Allowed = observe(
            "allowlist_note",
            sqlx::query_as(&format!(
                "UPDATE sigint.allowlist SET note = $3 \
                 WHERE radio = $1::sigint.signal_type AND identifier = $2 RETURNING {COLUMNS}"
            ))
            .bind(key.radio.as_str())
            .bind(&key.identifier)
            .bind(note)
            .fetch_one(&mut *conn),
        )
        .await?;
        return Ok(Allowing::Renoted(entry));
    }
    if count(conn, "sigint.allowlist").await? >= MAX_ENTRIES {
        return Ok(Allowing::Full);
    }
    let entry: Allowed = observe(
        "allowlist_add",
        sqlx::query_as(&format!(
            "INSERT INTO sigint.allowlist (radio, identifier, note, created_by) \
             VALUES ($1::sigint.signal_type, $2, $3, $4) RETURNING {COLUMNS}"
        ))
        .bind(key.radio.as_str())
        .bind(&key.identifier)
        .bind(note)
        .bind(owner)
        .fetch_one(&mut *conn),
    )
    .await?;
    requeue_transmitter(conn, key).await?;
    Ok(Allowing::Added(entry))
}

async fn count(conn: &mut PgConnection, table: &'static str) -> Result<i64, sqlx::Error> {
    observe(
        "operator_entries",
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut *conn),
    )
    .await
}

/// Removes an allow-list entry if `owner` made it (or `any_owner`, an admin).
pub async fn disallow(
    conn: &mut PgConnection,
    key: &TransmitterKey,
    owner: &str,
    any_owner: bool,
) -> Result<Removal, sqlx::Error> {
    let made_by: Option<Option<String>> = observe(
        "allowlist_owner",
        sqlx::query_scalar(
            "SELECT created_by FROM sigint.allowlist \
             WHERE radio = $1::sigint.signal_type AND identifier = $2 FOR UPDATE",
        )
        .bind(key.radio.as_str())
        .bind(&key.identifier)
        .fetch_optional(&mut *conn),
    )
    .await?;
    let Some(made_by) = made_by else {
        return Ok(Removal::NotFound);
    };
    if !any_owner && made_by.as_deref() != Some(owner) {
        return Ok(Removal::NotYours(made_by));
    }
    observe(
        "allowlist_remove",
        sqlx::query(
            "DELETE FROM sigint.allowlist WHERE radio = $1::sigint.signal_type AND identifier = $2",
        )
        .bind(key.radio.as_str())
        .bind(&key.identifier)
        .execute(&mut *conn),
    )
    .await?;
    requeue_transmitter(conn, key).await?;
    Ok(Removal::Removed)
}

/// A page of the allow-list, newest first, after a keyset cursor (created_at, key).
pub async fn allowlist(
    conn: &mut PgConnection,
    limit: i64,
    after: Option<&(DateTime<Utc>, TransmitterKey)>,
) -> Result<Vec<Allowed>, sqlx::Error> {
    observe(
        "allowlist_list",
        sqlx::query_as::<_, Allowed>(
            "SELECT radio::text AS radio, identifier, note, created_at, created_by \
             FROM sigint.allowlist \
             WHERE $1::timestamptz IS NULL \
                OR (created_at, radio::text, identifier) < ($1, $2, $3) \
             ORDER BY created_at DESC, radio::text DESC, identifier DESC LIMIT $4",
        )
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1.radio.as_str()))
        .bind(after.map(|a| a.1.identifier.clone()))
        .bind(limit + 1)
        .fetch_all(&mut *conn),
    )
    .await
}

/// A new safe zone made by `owner`; pairs with a level are rescored (a zone can only remove
/// their places). `None` when the zones are full.
pub async fn add_zone(
    conn: &mut PgConnection,
    name: &str,
    lat: f64,
    lon: f64,
    radius_m: f64,
    owner: &str,
) -> Result<Option<OwnedZone>, sqlx::Error> {
    if count(conn, "sigint.safe_zones").await? >= MAX_ENTRIES {
        return Ok(None);
    }
    let id: i64 = observe(
        "safe_zone_add",
        sqlx::query_scalar(
            "INSERT INTO sigint.safe_zones (name, location, radius_m, created_by) \
             VALUES ($1, ST_SetSRID(ST_MakePoint($3, $2), 4326), $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(lat)
        .bind(lon)
        .bind(radius_m)
        .bind(owner)
        .fetch_one(&mut *conn),
    )
    .await?;
    observe(
        "following_requeue",
        sqlx::query(
            "INSERT INTO sigint.following_queue (radio, identifier, device_id) \
             SELECT radio, identifier, device_id FROM sigint.following WHERE level <> 'none' \
             ON CONFLICT DO NOTHING",
        )
        .execute(&mut *conn),
    )
    .await?;
    Ok(Some(OwnedZone {
        zone: Zone {
            id,
            name: name.to_owned(),
            lat,
            lon,
            radius_m,
        },
        created_by: Some(owner.to_owned()),
    }))
}

/// A page of the safe zones by id, after `after`.
pub async fn zones(
    conn: &mut PgConnection,
    limit: i64,
    after: Option<i64>,
) -> Result<Vec<OwnedZone>, sqlx::Error> {
    let rows: Vec<(i64, String, f64, f64, f64, Option<String>)> = observe(
        "safe_zones_list",
        sqlx::query_as(
            "SELECT id, name, ST_Y(location), ST_X(location), radius_m, created_by \
             FROM sigint.safe_zones WHERE id > coalesce($1, 0) ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&mut *conn),
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, lat, lon, radius_m, created_by)| OwnedZone {
            zone: zone_of((id, name, lat, lon, radius_m)),
            created_by,
        })
        .collect())
}

/// Removes a safe zone if `owner` made it (or `any_owner`, an admin); pairs that had places in
/// it are rescored.
pub async fn remove_zone(
    conn: &mut PgConnection,
    id: i64,
    owner: &str,
    any_owner: bool,
) -> Result<Removal, sqlx::Error> {
    let found: Option<(String, Option<String>)> = observe(
        "safe_zone_owner",
        sqlx::query_as("SELECT name, created_by FROM sigint.safe_zones WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn),
    )
    .await?;
    let Some((name, made_by)) = found else {
        return Ok(Removal::NotFound);
    };
    if !any_owner && made_by.as_deref() != Some(owner) {
        return Ok(Removal::NotYours(made_by));
    }
    observe(
        "safe_zone_remove",
        sqlx::query("DELETE FROM sigint.safe_zones WHERE id = $1")
            .bind(id)
            .execute(&mut *conn),
    )
    .await?;
    observe(
        "following_requeue",
        sqlx::query(
            "INSERT INTO sigint.following_queue (radio, identifier, device_id) \
             SELECT radio, identifier, device_id FROM sigint.following \
             WHERE explanation->'places' @> jsonb_build_array(jsonb_build_object('safe_zone', $1::text)) \
             ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .execute(&mut *conn),
    )
    .await?;
    Ok(Removal::Removed)
}

/// An operator's verdict on a threat.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Feedback {
    pub verdict: String,
    pub note: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Records (or replaces) the verdict on the pair and queues it for rescoring.
pub async fn give_feedback(
    conn: &mut PgConnection,
    key: &TransmitterKey,
    device: Uuid,
    verdict: &str,
    note: Option<&str>,
    owner: &str,
) -> Result<Feedback, sqlx::Error> {
    let fb: Feedback = observe(
        "feedback_give",
        sqlx::query_as(
            "INSERT INTO sigint.feedback (radio, identifier, device_id, verdict, note, created_by) \
             VALUES ($1::sigint.signal_type, $2, $3, $4, $5, $6) \
             ON CONFLICT (radio, identifier, device_id) DO UPDATE SET verdict = EXCLUDED.verdict, \
                 note = EXCLUDED.note, created_by = EXCLUDED.created_by, created_at = now() \
             RETURNING verdict, note, created_by, created_at",
        )
        .bind(key.radio.as_str())
        .bind(&key.identifier)
        .bind(device)
        .bind(verdict)
        .bind(note)
        .bind(owner)
        .fetch_one(&mut *conn),
    )
    .await?;
    requeue_pair(conn, key, device).await?;
    Ok(fb)
}

/// Removes the verdict on the pair if `owner` gave it (or `any_owner`, an admin); the pair is
/// rescored.
pub async fn withdraw_feedback(
    conn: &mut PgConnection,
    key: &TransmitterKey,
    device: Uuid,
    owner: &str,
    any_owner: bool,
) -> Result<Removal, sqlx::Error> {
    let by: Option<Option<String>> = observe(
        "feedback_owner",
        sqlx::query_scalar(
            "SELECT created_by FROM sigint.feedback \
             WHERE radio = $1::sigint.signal_type AND identifier = $2 AND device_id = $3",
        )
        .bind(key.radio.as_str())
        .bind(&key.identifier)
        .bind(device)
        .fetch_optional(&mut *conn),
    )
    .await?;
    let Some(by) = by else {
        return Ok(Removal::NotFound);
    };
    if !any_owner && by.as_deref() != Some(owner) {
        return Ok(Removal::NotYours(by));
    }
    observe(
        "feedback_withdraw",
        sqlx::query(
            "DELETE FROM sigint.feedback \
             WHERE radio = $1::sigint.signal_type AND identifier = $2 AND device_id = $3",
        )
        .bind(key.radio.as_str())
        .bind(&key.identifier)
        .bind(device)
        .execute(&mut *conn),
    )
    .await?;
    requeue_pair(conn, key, device).await?;
    Ok(Removal::Removed)
}

async fn requeue_pair(
    conn: &mut PgConnection,
    key: &TransmitterKey,
    device: Uuid,
) -> Result<(), sqlx::Error> {
    observe(
        "feedback_requeue",
        sqlx::query(
            "INSERT INTO sigint.following_queue (radio, identifier, device_id) \
             VALUES ($1::sigint.signal_type, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(key.radio.as_str())
        .bind(&key.identifier)
        .bind(device)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// The verdicts on these pairs, by pair.
pub async fn feedback_on(
    conn: &mut PgConnection,
    pairs: &[(TransmitterKey, Uuid)],
) -> Result<HashMap<(TransmitterKey, Uuid), Feedback>, sqlx::Error> {
    let radios: Vec<&str> = pairs.iter().map(|p| p.0.radio.as_str()).collect();
    let ids: Vec<&str> = pairs.iter().map(|p| p.0.identifier.as_str()).collect();
    let devices: Vec<Uuid> = pairs.iter().map(|p| p.1).collect();
    #[derive(sqlx::FromRow)]
    struct Row {
        radio: String,
        identifier: String,
        device_id: Uuid,
        #[sqlx(flatten)]
        feedback: Feedback,
    }
    let rows: Vec<Row> = observe(
        "feedback_on",
        sqlx::query_as(
            "SELECT f.radio::text AS radio, f.identifier, f.device_id, f.verdict, f.note, \
                 f.created_by, f.created_at \
             FROM UNNEST($1::text[], $2::text[], $3::uuid[]) AS k(radio, identifier, device) \
             JOIN sigint.feedback f ON f.radio = k.radio::sigint.signal_type \
              AND f.identifier = k.identifier AND f.device_id = k.device",
        )
        .bind(radios)
        .bind(ids)
        .bind(devices)
        .fetch_all(&mut *conn),
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let key = TransmitterKey::parse(&r.radio, &r.identifier).ok()?;
            Some(((key, r.device_id), r.feedback))
        })
        .collect())
}

/// Verdicts given, by verdict: the detector's precision as its operators judge it.
pub async fn feedback_counts(conn: &mut PgConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    observe(
        "feedback_counts",
        sqlx::query_as("SELECT verdict, count(*) FROM sigint.feedback GROUP BY 1")
            .fetch_all(&mut *conn),
    )
    .await
}
