//! What the detector found, as the API lists it: a transmitter's scores per capture device, and
//! the threats (pairs at or above a level), keyset-paged.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::observe;
use crate::domain::registry::TransmitterKey;

/// One scored pair, as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct ScoreRow {
    pub radio: String,
    pub identifier: String,
    pub device_id: Uuid,
    pub score: f32,
    pub level: String,
    pub gates_passed: bool,
    pub together_from: Option<DateTime<Utc>>,
    pub together_to: Option<DateTime<Utc>>,
    pub computed_at: DateTime<Utc>,
    pub alerted_at: Option<DateTime<Utc>>,
    pub explanation: Value,
    /// A person's note on the transmitter, and whether they watch it.
    pub note: Option<String>,
    pub watched: bool,
}

const SCORE_COLUMNS: &str =
    "f.radio::text AS radio, f.identifier, f.device_id, f.score, f.level::text AS level, \
    f.gates_passed, f.together_from, f.together_to, f.computed_at, f.alerted_at, f.explanation, \
    n.note, COALESCE(n.watched, false) AS watched";

/// The notes beside each scored pair.
const WITH_NOTES: &str = "sigint.following f LEFT JOIN sigint.transmitter_notes n \
    ON n.radio = f.radio AND n.identifier = f.identifier";

/// A transmitter's scores per capture device, highest first.
pub async fn scores_of(
    conn: &mut PgConnection,
    key: &TransmitterKey,
) -> Result<Vec<ScoreRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SCORE_COLUMNS} FROM {WITH_NOTES} \
         WHERE f.radio = $1::sigint.signal_type AND f.identifier = $2 ORDER BY f.score DESC"
    );
    observe(
        "following_scores_of",
        sqlx::query_as::<_, ScoreRow>(&sql)
            .bind(key.radio.as_str())
            .bind(&key.identifier)
            .fetch_all(&mut *conn),
    )
    .await
}

/// Threats: pairs at or above the given levels, and every pair of a watched transmitter, newest
/// together first; keyset on (together_to, radio, identifier, device).
pub async fn threats(
    conn: &mut PgConnection,
    levels: &[&str],
    device: Option<Uuid>,
    after: Option<&(DateTime<Utc>, TransmitterKey, Uuid)>,
    limit: i64,
) -> Result<Vec<ScoreRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SCORE_COLUMNS} FROM {WITH_NOTES} \
         WHERE (f.level = ANY($1::text[]::sigint.follow_level[]) OR n.watched) AND ($2::uuid IS NULL OR f.device_id = $2) \
           AND ($3::timestamptz IS NULL OR (COALESCE(f.together_to, f.computed_at), f.radio::text, f.identifier, f.device_id) < ($3, $4, $5, $6)) \
         ORDER BY COALESCE(f.together_to, f.computed_at) DESC, f.radio::text DESC, f.identifier DESC, f.device_id DESC \
         LIMIT $7"
    );
    observe(
        "following_threats",
        sqlx::query_as::<_, ScoreRow>(&sql)
            .bind(levels)
            .bind(device)
            .bind(after.map(|a| a.0))
            .bind(after.map(|a| a.1.radio.as_str()))
            .bind(after.map(|a| a.1.identifier.clone()))
            .bind(after.map(|a| a.2))
            .bind(limit + 1)
            .fetch_all(&mut *conn),
    )
    .await
}

/// One pair's score, whatever its level.
pub async fn pair(
    conn: &mut PgConnection,
    key: &TransmitterKey,
    device: Uuid,
) -> Result<Option<ScoreRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SCORE_COLUMNS} FROM {WITH_NOTES} \
         WHERE f.radio = $1::sigint.signal_type AND f.identifier = $2 AND f.device_id = $3"
    );
    observe(
        "following_pair",
        sqlx::query_as::<_, ScoreRow>(&sql)
            .bind(key.radio.as_str())
            .bind(&key.identifier)
            .bind(device)
            .fetch_optional(&mut *conn),
    )
    .await
}
