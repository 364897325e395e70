//! SQL for `sigint.imports`: one row per finished file import, with its report.

use serde_json::Value;
use uuid::Uuid;

pub struct ImportRecord<'a> {
    pub id: Uuid,
    pub format: &'a str,
    pub filename: Option<&'a str>,
    pub source: &'a Value,
    pub report: Value,
}

pub async fn record(pool: &super::Pool, import: ImportRecord<'_>) -> Result<(), sqlx::Error> {
    let query = sqlx::query(
        r#"INSERT INTO sigint.imports (id, format, filename, source, report) VALUES ($1, $2, $3, $4, $5)"#,
    )
    .bind(import.id)
    .bind(import.format)
    .bind(import.filename)
    .bind(import.source)
    .bind(import.report);
    let mut tx = pool.begin().await?;
    super::observe("record_import", query.execute(&mut *tx)).await?;
    tx.commit().await
}
