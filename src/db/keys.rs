//! SQL for `sigint.api_keys`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct KeyRecord {
    pub id: i64,
    pub name: String,
    pub key_prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Stores a new key by its hash; fails with a unique violation when the name is taken.
pub async fn insert(
    db: impl PgExecutor<'_>,
    name: &str,
    prefix: &str,
    hash: &[u8],
    scopes: &[String],
) -> Result<KeyRecord, sqlx::Error> {
    sqlx::query_as(
        r#"INSERT INTO sigint.api_keys (name, key_prefix, key_hash, scopes) VALUES ($1, $2, $3, $4)
           RETURNING id, name, key_prefix, scopes, created_at, last_used_at, revoked_at"#,
    )
    .bind(name)
    .bind(prefix)
    .bind(hash)
    .bind(scopes)
    .fetch_one(db)
    .await
}

pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<KeyRecord>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT id, name, key_prefix, scopes, created_at, last_used_at, revoked_at
           FROM sigint.api_keys ORDER BY id"#,
    )
    .fetch_all(db)
    .await
}

/// Revokes by name or key prefix; returns the revoked key, if any matched.
/// Revokes the one active key named `name_or_prefix` or with that prefix. Several matches
/// revoke nothing and are returned for the caller to name one.
pub async fn revoke(
    conn: &mut sqlx::PgConnection,
    name_or_prefix: &str,
) -> Result<Revocation, sqlx::Error> {
    let matches: Vec<KeyRecord> = sqlx::query_as(
        r#"SELECT id, name, key_prefix, scopes, created_at, last_used_at, revoked_at
             FROM sigint.api_keys
            WHERE (name = $1 OR key_prefix = $1) AND revoked_at IS NULL
            ORDER BY id FOR UPDATE"#,
    )
    .bind(name_or_prefix)
    .fetch_all(&mut *conn)
    .await?;
    match matches.as_slice() {
        [] => Ok(Revocation::NoneMatched),
        [one] => {
            let revoked: KeyRecord = sqlx::query_as(
                r#"UPDATE sigint.api_keys SET revoked_at = now() WHERE id = $1
                   RETURNING id, name, key_prefix, scopes, created_at, last_used_at, revoked_at"#,
            )
            .bind(one.id)
            .fetch_one(&mut *conn)
            .await?;
            Ok(Revocation::Revoked(revoked))
        }
        _ => Ok(Revocation::Ambiguous(matches)),
    }
}

/// What `revoke` did.
pub enum Revocation {
    Revoked(KeyRecord),
    NoneMatched,
    Ambiguous(Vec<KeyRecord>),
}

/// The key with this hash, revoked or not, with its stored hash for a constant-time comparison.
pub async fn find_by_hash(
    db: impl PgExecutor<'_>,
    hash: &[u8],
) -> Result<Option<(KeyRecord, Vec<u8>)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        record: KeyRecord,
        key_hash: Vec<u8>,
    }
    let row: Option<Row> = sqlx::query_as(
        r#"SELECT id, name, key_prefix, scopes, created_at, last_used_at, revoked_at, key_hash
           FROM sigint.api_keys WHERE key_hash = $1"#,
    )
    .bind(hash)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.record, r.key_hash)))
}

/// Records use, at most once a minute per key, so authentication does not write on every request.
pub async fn touch(db: impl PgExecutor<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"UPDATE sigint.api_keys SET last_used_at = now()
           WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"#,
    )
    .bind(id)
    .execute(db)
    .await
    .map(|_| ())
}

pub async fn count_active(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT count(*) FROM sigint.api_keys WHERE revoked_at IS NULL"#)
        .fetch_one(db)
        .await
}
