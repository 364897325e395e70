//! `sigint.threat_events` and the notification sinks' cursors: threats as they appear, read by
//! open pages (server-sent events) and delivered in order by each sink.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::db::observe;
use crate::domain::registry::TransmitterKey;

/// One threat as it appeared.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct ThreatEvent {
    pub id: i64,
    pub radio: String,
    pub identifier: String,
    pub device_id: Uuid,
    pub level: String,
    pub level_before: Option<String>,
    pub score: f32,
    pub tracker_class: Option<String>,
    pub summary: String,
    pub created_at: DateTime<Utc>,
}

/// A pair that has just risen to `suspicious` or `alert`.
pub struct Rise<'a> {
    pub key: &'a TransmitterKey,
    pub device: Uuid,
    pub level: &'static str,
    pub level_before: Option<&'a str>,
    pub score: f32,
    pub tracker_class: Option<&'static str>,
    pub summary: String,
}

/// Records the rises, in the scorer's transaction.
pub async fn record(conn: &mut PgConnection, rises: &[Rise<'_>]) -> Result<(), sqlx::Error> {
    if rises.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Postgres>::new(
        "INSERT INTO sigint.threat_events (radio, identifier, device_id, level, level_before, \
         score, tracker_class, summary) ",
    );
    q.push_values(rises, |mut b, r| {
        b.push_bind(r.key.radio.as_str())
            .push_unseparated("::sigint.signal_type")
            .push_bind(&r.key.identifier)
            .push_bind(r.device)
            .push_bind(r.level)
            .push_unseparated("::sigint.follow_level")
            .push_bind(r.level_before)
            .push_unseparated("::sigint.follow_level")
            .push_bind(r.score)
            .push_bind(r.tracker_class)
            .push_bind(&r.summary);
    });
    observe("threat_events_record", q.build().execute(&mut *conn)).await?;
    // Wakes every process's poller when this transaction commits.
    observe(
        "threat_events_notify",
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// The channel a commit with new threats notifies.
pub const CHANNEL: &str = "shadowcheck_threats";

const COLUMNS: &str = "id, radio::text AS radio, identifier, device_id, level::text AS level, \
    level_before::text AS level_before, score, tracker_class, summary, created_at";

/// Events after `id`, oldest first, at most `limit`.
pub async fn after(
    conn: &mut PgConnection,
    id: i64,
    limit: i64,
) -> Result<Vec<ThreatEvent>, sqlx::Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM sigint.threat_events WHERE id > $1 ORDER BY id LIMIT $2");
    observe(
        "threat_events_after",
        sqlx::query_as::<_, ThreatEvent>(&sql)
            .bind(id)
            .bind(limit)
            .fetch_all(&mut *conn),
    )
    .await
}

/// The newest event's id (0: none yet).
pub async fn newest(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    observe(
        "threat_events_newest",
        sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM sigint.threat_events")
            .fetch_one(&mut *conn),
    )
    .await
}

/// A sink's cursor. A sink seen for the first time starts at the newest event, so turning one
/// on does not replay the past. (Replicas delivering for the same sink may each send an event:
/// delivery is at least once.)
pub async fn cursor(conn: &mut PgConnection, sink: &str) -> Result<i64, sqlx::Error> {
    observe(
        "notification_cursor",
        sqlx::query_scalar(
            "WITH made AS (INSERT INTO sigint.notification_cursors (sink, last_event_id) \
               SELECT $1, COALESCE(max(id), 0) FROM sigint.threat_events \
               ON CONFLICT (sink) DO NOTHING RETURNING last_event_id) \
             SELECT last_event_id FROM made \
             UNION ALL SELECT last_event_id FROM sigint.notification_cursors WHERE sink = $1 \
             LIMIT 1",
        )
        .bind(sink)
        .fetch_one(&mut *conn),
    )
    .await
}

/// Moves the cursor past `event_id`, counting it delivered or dead.
pub async fn advance(
    conn: &mut PgConnection,
    sink: &str,
    event_id: i64,
    delivered: bool,
) -> Result<(), sqlx::Error> {
    observe(
        "notification_cursor_advance",
        sqlx::query(
            "UPDATE sigint.notification_cursors SET last_event_id = GREATEST(last_event_id, $2), \
               delivered = delivered + CASE WHEN $3 THEN 1 ELSE 0 END, \
               dead_letters = dead_letters + CASE WHEN $3 THEN 0 ELSE 1 END, updated_at = now() \
             WHERE sink = $1",
        )
        .bind(sink)
        .bind(event_id)
        .bind(delivered)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Keeps an event a sink gave up on.
pub async fn dead_letter(
    conn: &mut PgConnection,
    sink: &str,
    event_id: i64,
    attempts: u32,
    error: &str,
) -> Result<(), sqlx::Error> {
    observe(
        "notification_dead_letter",
        sqlx::query(
            "INSERT INTO sigint.notification_dead_letters (sink, event_id, attempts, last_error) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (sink, event_id) DO NOTHING",
        )
        .bind(sink)
        .bind(event_id)
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .bind(error)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Per sink: delivered and dead-lettered counts.
pub async fn sink_counts(conn: &mut PgConnection) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    observe(
        "notification_counts",
        sqlx::query_as(
            "SELECT sink, delivered, dead_letters FROM sigint.notification_cursors ORDER BY sink",
        )
        .fetch_all(&mut *conn),
    )
    .await
}
