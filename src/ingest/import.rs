//! Capture files through the service in bounded memory: a blocking thread reads the file row by
//! row (`formats`), and every batch of `BATCH_ROWS` goes through [`Ingest::submit`] as it
//! arrives. The file's report adds the batches up; it is recorded in `sigint.imports`.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Ingest, IngestError, Source, Submission};
use crate::db;
use crate::formats::{Broken, CaptureFile, Exceeded, FileFormat, FormatError, Input, Row};

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

/// One file to import.
pub struct ImportRequest {
    pub format: FileFormat,
    pub input: Input,
    pub filename: Option<String>,
    /// The capture device's UUID (default: derived from the file).
    pub device_id: Option<String>,
    /// Called with the running count of rows read (progress bars).
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    /// Most bytes the file may hold once decompressed (uploads); `None` for local files.
    pub max_bytes: Option<u64>,
    /// The uploading key's name (none for the local CLI).
    pub reporter: Option<String>,
}

/// Where uploaded Kismet logs are written while they are read, and how large one may be.
#[derive(Clone, Debug)]
pub struct Spool {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// The first bytes of every SQLite database, so of every Kismet log.
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// An uploaded stream's format by its content: a SQLite file (raw or gzip) is a Kismet log,
/// written to a temporary file in the spool (SQLite reads a file, not a stream; the file goes
/// when the guard is dropped); anything else goes on as the stream it was.
fn sniff(
    format: FileFormat,
    input: Input,
    spool: &Spool,
) -> Result<(FileFormat, Input, Option<tempfile::NamedTempFile>), IngestError> {
    let Input::Stream(stream) = input else {
        return Ok((format, input, None));
    };
    if format == FileFormat::GeosubmitJson {
        return Ok((format, Input::Stream(stream), None));
    }
    let unreadable = |e: std::io::Error| FormatError(format!("unreadable input: {e}"));
    let mut raw = BufReader::new(stream);
    let head = raw.fill_buf().map_err(unreadable)?;
    let mut reader: BufReader<Box<dyn Read + Send>> = if head.starts_with(&[0x1f, 0x8b]) {
        BufReader::new(Box::new(flate2::read::MultiGzDecoder::new(raw)))
    } else {
        BufReader::new(Box::new(raw))
    };
    if !reader
        .fill_buf()
        .map_err(unreadable)?
        .starts_with(SQLITE_MAGIC)
    {
        return Ok((format, Input::Stream(Box::new(reader)), None));
    }
    let mut file = tempfile::Builder::new()
        .prefix("shadowcheck-upload-")
        .suffix(".kismet")
        .tempfile_in(&spool.dir)
        .map_err(|e| IngestError::Internal(format!("cannot spool the Kismet log: {e}")))?;
    let copied = std::io::copy(
        &mut (&mut reader).take(spool.max_bytes + 1),
        file.as_file_mut(),
    )
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            IngestError::Internal(format!("cannot spool the Kismet log: {e}"))
        }
        _ => IngestError::Format(unreadable(e)),
    })?;
    if copied > spool.max_bytes {
        let what = Exceeded::Bytes(spool.max_bytes);
        return Err(IngestError::Exceeded {
            detail: format!("a Kismet log upload is limited to {} bytes (ingest.max_kismet_upload_bytes); strip its packets with kismetdb_strip_packets, or import it with `shadowcheck import`", spool.max_bytes),
            what,
        });
    }
    let path = file.path().to_owned();
    Ok((FileFormat::Kismet, Input::Path(path), Some(file)))
}

enum Message {
    Opened { format: String, source: Value },
    Rows(Vec<Row>),
}

impl Ingest {
    /// Imports one capture file. `Err(Format)` when it is not in its format at all (nothing
    /// read); a file that breaks off part-way gives a report with `complete: false`, the rows
    /// before the damage committed.
    pub async fn import(&self, request: ImportRequest) -> Result<ImportReport, IngestError> {
        let ImportRequest {
            format,
            input,
            filename,
            device_id,
            progress,
            max_bytes,
            reporter,
        } = request;
        let (tx, mut rx) = mpsc::channel::<Message>(2);
        let name = filename.clone();
        let spool = self.spool.clone();
        let reader = tokio::task::spawn_blocking(move || {
            // Held until the file is read: a spooled Kismet log is read in place.
            let (format, input, _spooled) = sniff(format, input, &spool)?;
            let file = CaptureFile::open(format, input, device_id, name.as_deref(), max_bytes)?;
            let opened = Message::Opened {
                format: file.format.clone(),
                source: file.source.clone(),
            };
            if tx.blocking_send(opened).is_err() {
                return Ok(None);
            }
            let mut batch = Vec::with_capacity(BATCH_ROWS);
            let failure = file.read(&mut |row| {
                batch.push(row);
                if batch.len() < BATCH_ROWS {
                    return true;
                }
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                tx.blocking_send(Message::Rows(full)).is_ok()
            });
            if !batch.is_empty() {
                let _ = tx.blocking_send(Message::Rows(batch));
            }
            Ok::<_, IngestError>(failure)
        });

        let mut report = ImportReport {
            import_id: Uuid::new_v4(),
            format: String::new(),
            filename,
            source: Value::Null,
            dry_run: self.is_dry_run(),
            rows_read: 0,
            stored: 0,
            duplicates: 0,
            rejected: 0,
            filtered: 0,
            errors: Vec::new(),
            errors_truncated: false,
            complete: true,
            failure: None,
        };
        let mut stored = Ok(());
        while let Some(message) = rx.recv().await {
            match message {
                Message::Opened { format, source } => {
                    report.format = format;
                    report.source = source;
                }
                Message::Rows(rows) => {
                    if let Err(e) = self.add_batch(rows, reporter.clone(), &mut report).await {
                        stored = Err(e);
                        break;
                    }
                    if let Some(progress) = &progress {
                        progress(report.rows_read);
                    }
                }
            }
        }
        // Stops the reader at its next row when storing failed.
        drop(rx);
        let read = reader
            .await
            .map_err(|e| IngestError::Internal(format!("import reader: {e}")))?;
        stored?;
        let mut exceeded = None;
        match read? {
            None => {}
            Some(broken) => {
                report.complete = false;
                report.failure = Some(match broken {
                    Broken::Input(why) => why,
                    Broken::Exceeded(what) => {
                        let why = what.to_string();
                        exceeded = Some(what);
                        why
                    }
                });
            }
        }
        if let Some(pool) = &self.pool {
            let body =
                serde_json::to_value(&report).map_err(|e| IngestError::Internal(e.to_string()))?;
            db::imports::record(
                pool,
                db::imports::ImportRecord {
                    id: report.import_id,
                    format: &report.format,
                    filename: report.filename.as_deref(),
                    source: &report.source,
                    report: body,
                },
            )
            .await?;
        }
        match exceeded {
            // The rows before are committed (and recorded); the upload as a whole is refused.
            Some(what) => Err(IngestError::Exceeded {
                detail: format!(
                    "import {}: {what}; the {} rows before it were processed ({} stored)",
                    report.import_id, report.rows_read, report.stored
                ),
                what,
            }),
            None => Ok(report),
        }
    }

    async fn add_batch(
        &self,
        rows: Vec<Row>,
        reporter: Option<String>,
        report: &mut ImportReport,
    ) -> Result<(), IngestError> {
        report.rows_read += rows.len() as u64;
        let receipt = self
            .submit(Submission {
                rows: rows.into(),
                source: Source::Import,
                idempotency: None,
                reporter,
            })
            .await?;
        let batch = receipt.report();
        report.stored += batch.accepted;
        report.duplicates += batch.duplicates;
        report.rejected += batch.rejected;
        report.filtered += batch.filtered;
        for e in &batch.errors {
            if report.errors.len() < MAX_LISTED_ERRORS {
                report.errors.push(LineError {
                    line: e.index,
                    field: e.field.clone(),
                    reason: e.reason.clone(),
                });
            } else {
                report.errors_truncated = true;
            }
        }
        Ok(())
    }
}
