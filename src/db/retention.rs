//! Retention as DDL: whole monthly partitions are dropped, never rows deleted.

use chrono::{DateTime, Utc};

/// Drops every monthly partition that ends on or before `cutoff`; returns their names. Needs
/// the schema owner (the API role of the compose stack may not drop anything).
pub async fn drop_partitions_before(
    pool: &super::Pool,
    cutoff: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let query = sqlx::query_scalar::<_, String>(
        r#"SELECT dropped FROM sigint.drop_partitions_before($1) AS dropped ORDER BY dropped"#,
    )
    .bind(cutoff);
    let mut tx = pool.begin().await?;
    // Dropping a month locks the detections table; while it waits for a reader (a long export)
    // every insert queues behind it. Give up after a second and try again next pass instead.
    sqlx::query("SET LOCAL lock_timeout = '1s'")
        .execute(&mut *tx)
        .await?;
    let dropped = super::observe("drop_partitions_before", query.fetch_all(&mut *tx)).await?;
    tx.commit().await?;
    Ok(dropped)
}

/// Whether an error is PostgreSQL refusing the role the privilege (42501).
pub fn is_permission_denied(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "42501")
}
