//! SQL for `sigint.idempotency_keys`: the first answer to a caller's `Idempotency-Key`, kept for
//! replay. Keys are scoped to the caller (the API key), so callers never see each other's.

use serde_json::Value;
use sqlx::PgConnection;

/// What a key's row says when this request did not create it.
pub enum Claim {
    /// This request holds the key now (inside the caller's transaction).
    New,
    /// Another request holds or held it: its body hash and, once committed, its answer.
    Taken {
        request_hash: Vec<u8>,
        answer: Option<Value>,
    },
}

/// Claims `key` for this request. A concurrent request with the same key blocks here until the
/// first commits, then sees its answer.
pub async fn claim(
    tx: &mut PgConnection,
    caller: &str,
    key: &str,
    request_hash: &[u8],
) -> Result<Claim, sqlx::Error> {
    let inserted = sqlx::query(
        r#"INSERT INTO sigint.idempotency_keys (caller, idempotency_key, request_hash)
           VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"#,
    )
    .bind(caller)
    .bind(key)
    .bind(request_hash)
    .execute(&mut *tx);
    if super::observe("idempotency_claim", inserted)
        .await?
        .rows_affected()
        == 1
    {
        return Ok(Claim::New);
    }
    let existing = sqlx::query_as::<_, (Vec<u8>, Option<Value>)>(
        r#"SELECT request_hash, response_body FROM sigint.idempotency_keys
           WHERE caller = $1 AND idempotency_key = $2"#,
    )
    .bind(caller)
    .bind(key)
    .fetch_one(&mut *tx);
    let (request_hash, answer) = super::observe("idempotency_lookup", existing).await?;
    Ok(Claim::Taken {
        request_hash,
        answer,
    })
}

/// Records the answer for a key this request claimed (same transaction as the rows).
pub async fn complete(
    tx: &mut PgConnection,
    caller: &str,
    key: &str,
    answer: &Value,
) -> Result<(), sqlx::Error> {
    let query = sqlx::query(
        r#"UPDATE sigint.idempotency_keys SET response_body = $3
           WHERE caller = $1 AND idempotency_key = $2"#,
    )
    .bind(caller)
    .bind(key)
    .bind(answer);
    super::observe("idempotency_complete", query.execute(tx)).await?;
    Ok(())
}

/// Forgets keys older than `ttl_hours`: a retry after that stores nothing twice anyway
/// (natural-key dedup), it only no longer gets the identical first answer back.
pub async fn purge(pool: &super::Pool, ttl_hours: u32) -> Result<u64, sqlx::Error> {
    let query = sqlx::query(
        r#"DELETE FROM sigint.idempotency_keys WHERE created_at < now() - make_interval(hours => $1)"#,
    )
    .bind(i32::try_from(ttl_hours).unwrap_or(i32::MAX));
    let mut tx = pool.begin().await?;
    let purged = super::observe("purge_idempotency_keys", query.execute(&mut *tx))
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(purged)
}
