//! Streaming file import: a blocking parser thread turns bytes into rows, batches of rows are
//! validated (same rules and privacy policy as the JSON API) and stored as they arrive, so a file
//! of any size is imported in bounded memory. Used by `POST /api/v1/imports` and `shadowcheck import`.

use std::io::Read;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::domain::privacy::PrivacyPolicy;
use crate::domain::ValidationPolicy;
use crate::error::ApiError;
use crate::ingest;

/// Rows per stored batch: the unit of memory and of one INSERT.
pub const BATCH_ROWS: usize = 1_000;
/// At most this many row errors are listed; the counts stay exact.
const MAX_LISTED_ERRORS: usize = 1_000;

#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LineError {
    pub line: u64,
    pub field: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub import_id: Uuid,
    pub format: String,
    pub filename: Option<String>,
    /// What the file says about the capture device (e.g. the WiGLE pre-header).
    #[schema(value_type = Object)]
    pub source: Value,
    pub dry_run: bool,
    pub rows_read: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub filtered: u64,
    pub errors: Vec<LineError>,
    pub errors_truncated: bool,
    /// False when the input ended early (truncated gzip, broken upload); `failure` says why.
    pub complete: bool,
    pub failure: Option<String>,
}

impl ImportReport {
    /// An empty report for a new import.
    pub fn new(format: &str, filename: Option<String>, dry_run: bool) -> Self {
        Self {
            import_id: Uuid::new_v4(),
            format: format.to_owned(),
            filename,
            source: Value::Null,
            dry_run,
            rows_read: 0,
            stored: 0,
            duplicates: 0,
            rejected: 0,
            filtered: 0,
            errors: Vec::new(),
            errors_truncated: false,
            complete: true,
            failure: None,
        }
    }
}

pub enum Destination {
    /// Validate only.
    DryRun,
    Database(PgPool),
}

pub struct ImportOptions {
    pub filename: Option<String>,
    pub device_id: Option<String>,
    pub max_future_skew: chrono::Duration,
    pub privacy: Arc<PrivacyPolicy>,
    /// Called with the running count of rows read (progress bars).
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

enum Message {
    Header(Value),
    Rows(Vec<crate::formats::wigle::Row>),
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not in the expected format at all (bad header): nothing was read.
    #[error("{0}")]
    Format(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Adapts a channel of byte chunks (filled by async code) into a blocking `Read`.
pub struct ChannelReader {
    rx: mpsc::Receiver<Result<bytes_chunk::Bytes, std::io::Error>>,
    current: bytes_chunk::Bytes,
}

mod bytes_chunk {
    pub use axum::body::Bytes;
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>) -> Self {
        Self {
            rx,
            current: axum::body::Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Wraps a reader so gzip input (by magic bytes, whatever the name or headers say) is inflated.
pub fn maybe_gunzip<R: Read + Send + 'static>(reader: R) -> std::io::Result<Box<dyn Read + Send>> {
    let mut buffered = std::io::BufReader::new(reader);
    let head = std::io::BufRead::fill_buf(&mut buffered)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Imports WiGLE CSV from `reader` (already decompressed or not; gzip is detected).
pub async fn import_wigle(
    reader: Box<dyn Read + Send>,
    destination: Destination,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let (tx, mut rx) = mpsc::channel::<Message>(2);
    let device_id = options.device_id.clone();
    let parser = tokio::task::spawn_blocking(move || -> Result<Option<String>, String> {
        let reader = maybe_gunzip(reader).map_err(|e| format!("unreadable input: {e}"))?;
        let mut wigle = crate::formats::wigle::WigleReader::new(reader, device_id)?;
        if tx
            .blocking_send(Message::Header(wigle.preheader.to_json()))
            .is_err()
        {
            return Ok(None);
        }
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        while let Some(row) = wigle.next_row() {
            batch.push(row);
            if batch.len() == BATCH_ROWS {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                if tx.blocking_send(Message::Rows(full)).is_err() {
                    return Ok(wigle.failure);
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(Message::Rows(batch));
        }
        Ok(wigle.failure)
    });

    let mut report = ImportReport::new(
        "wigle-csv",
        options.filename.clone(),
        matches!(destination, Destination::DryRun),
    );
    let mut consumed: Result<(), ImportError> = Ok(());
    while let Some(message) = rx.recv().await {
        match message {
            Message::Header(source) => {
                if let Some(v) = source
                    .get("format")
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                {
                    report.format = format!("wigle-csv ({v})");
                }
                report.source = source;
            }
            Message::Rows(rows) => {
                if let Err(e) = store_rows(&rows, &destination, &options, &mut report).await {
                    consumed = Err(e);
                    break;
                }
            }
        }
    }
    drop(rx);
    let parsed = parser
        .await
        .map_err(|e| ApiError::Internal(format!("import parser: {e}")))?;
    consumed?;
    match parsed {
        Err(header_problem) => return Err(ImportError::Format(header_problem)),
        Ok(Some(failure)) => {
            report.complete = false;
            report.failure = Some(failure);
        }
        Ok(None) => {}
    }
    if let Destination::Database(pool) = &destination {
        record_import(pool, &report).await?;
    }
    Ok(report)
}

/// Validates and stores rows already in our JSON shape, attributing errors to their lines.
pub async fn store_rows(
    rows: &[crate::formats::wigle::Row],
    destination: &Destination,
    options: &ImportOptions,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let lines: Vec<u64> = rows.iter().map(|(line, _)| *line).collect();
    let items: ingest::Items = rows.iter().map(|(_, r)| r.clone()).collect();
    let policy = ValidationPolicy {
        now: chrono::Utc::now(),
        max_future_skew: options.max_future_skew,
    };
    let validated = ingest::validate(&items, &policy, &options.privacy);
    report.rows_read += rows.len() as u64;
    report.rejected += validated.rejected;
    report.filtered += validated.filtered;
    for e in &validated.errors {
        if report.errors.len() < MAX_LISTED_ERRORS {
            report.errors.push(LineError {
                line: lines[e.index],
                field: e.field.clone(),
                reason: e.reason.clone(),
            });
        } else {
            report.errors_truncated = true;
        }
    }
    match destination {
        Destination::DryRun => {
            report.stored += validated.valid.len() as u64;
        }
        Destination::Database(pool) => {
            if !validated.valid.is_empty() {
                let offered = ingest::count_by_type(&validated.valid);
                let mut conn = pool.acquire().await.map_err(ApiError::from)?;
                let no_errors = ingest::Validated {
                    errors: Vec::new(),
                    ..validated
                };
                match ingest::store(&mut conn, no_errors, None, |_| 200).await? {
                    ingest::Stored::Fresh(batch, by_type) => {
                        ingest::record_stored(&offered, &by_type);
                        report.stored += batch.accepted;
                        report.duplicates += batch.duplicates;
                    }
                    ingest::Stored::Replayed { .. } => {}
                }
            }
        }
    }
    if let Some(progress) = &options.progress {
        progress(report.rows_read);
    }
    Ok(())
}

pub async fn record_import(pool: &PgPool, report: &ImportReport) -> Result<(), ApiError> {
    let body = serde_json::to_value(report).map_err(|e| ApiError::Internal(e.to_string()))?;
    let query = sqlx::query(
        r#"INSERT INTO sigint.imports (id, format, filename, source, report) VALUES ($1, $2, $3, $4, $5)"#,
    )
    .bind(report.import_id)
    .bind(&report.format)
    .bind(&report.filename)
    .bind(&report.source)
    .bind(body);
    crate::db::observe("record_import", query.execute(pool)).await?;
    Ok(())
}
