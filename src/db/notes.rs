//! `sigint.transmitter_notes`: a person's note on a transmitter and whether to watch it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::db::observe;
use crate::domain::registry::TransmitterKey;

/// A transmitter's note as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Note {
    pub note: Option<String>,
    /// Kept on the threats list whatever the detector's level.
    pub watched: bool,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "note, watched, updated_by, updated_at";

pub async fn get(
    conn: &mut PgConnection,
    key: &TransmitterKey,
) -> Result<Option<Note>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sigint.transmitter_notes \
         WHERE radio = $1::sigint.signal_type AND identifier = $2"
    );
    observe(
        "note_get",
        sqlx::query_as::<_, Note>(&sql)
            .bind(key.radio.as_str())
            .bind(&key.identifier)
            .fetch_optional(&mut *conn),
    )
    .await
}

/// Replaces the transmitter's note.
pub async fn put(
    conn: &mut PgConnection,
    key: &TransmitterKey,
    note: Option<&str>,
    watched: bool,
    by: &str,
) -> Result<Note, sqlx::Error> {
    let sql = format!(
        "INSERT INTO sigint.transmitter_notes (radio, identifier, note, watched, updated_by) \
         VALUES ($1::sigint.signal_type, $2, $3, $4, $5) \
         ON CONFLICT (radio, identifier) DO UPDATE SET note = EXCLUDED.note, \
           watched = EXCLUDED.watched, updated_by = EXCLUDED.updated_by, updated_at = now() \
         RETURNING {COLUMNS}"
    );
    observe(
        "note_put",
        sqlx::query_as::<_, Note>(&sql)
            .bind(key.radio.as_str())
            .bind(&key.identifier)
            .bind(note)
            .bind(watched)
            .bind(by)
            .fetch_one(&mut *conn),
    )
    .await
}

/// Removes it; whether there was one.
pub async fn delete(conn: &mut PgConnection, key: &TransmitterKey) -> Result<bool, sqlx::Error> {
    let done = observe(
        "note_delete",
        sqlx::query(
            "DELETE FROM sigint.transmitter_notes \
             WHERE radio = $1::sigint.signal_type AND identifier = $2",
        )
        .bind(key.radio.as_str())
        .bind(&key.identifier)
        .execute(&mut *conn),
    )
    .await?;
    Ok(done.rows_affected() > 0)
}
