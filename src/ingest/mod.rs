//! The ingest service: the one way detections get into the database. Every capture path — JSON
//! and NDJSON batches, geosubmit, WiGLE/Kismet/geosubmit files over HTTP and from the CLI —
//! hands its rows to [`Ingest::submit`] (files through [`Ingest::import`], which calls it per
//! batch). It validates every row, applies the privacy policy, stores the valid ones
//! deduplicated by their natural key in one transaction (with the `Idempotency-Key` answer,
//! when there is one), and records outcome metrics. `Ok` means the rows are committed.

pub mod import;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::IngestSettings;
use crate::db::{self, idempotency::Claim};
use crate::domain::privacy::PrivacyPolicy;
use crate::domain::{Detection, FieldError, SignalType, ValidationPolicy};
use crate::formats::{FormatError, Rows};

pub use import::{ImportReport, ImportRequest, LineError};

/// Which path a batch came in by: it decides the batch rules and labels metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `POST /api/v1/detections`: an empty or wholly invalid batch is the client's error.
    Api,
    /// geosubmit: answered like ichnaea, whatever the observations were.
    Geosubmit,
    /// One batch of a capture file: the file's report tells the outcome.
    Import,
}

/// A problem with one field of one row, by the row's position in its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemError {
    /// Zero-based index in the request (line number for files).
    pub index: u64,
    pub field: String,
    pub reason: String,
}

impl ItemError {
    fn new(index: u64, e: FieldError) -> Self {
        Self {
            index,
            field: e.field,
            reason: e.reason,
        }
    }
}

/// Outcome of one batch, as sent to the client (and kept for `Idempotency-Key` replays).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IngestReport {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Valid but not stored by the privacy policy (exclusion zones, opted-out or randomised).
    pub filtered: u64,
    pub errors: Vec<ItemError>,
}

impl IngestReport {
    /// Every row was valid and new.
    pub fn all_new(&self) -> bool {
        self.rejected == 0 && self.duplicates == 0 && self.filtered == 0
    }
}

/// What the caller gets back: a fresh report, or the first answer to a retried request.
#[derive(Debug)]
pub enum Receipt {
    Stored(IngestReport),
    Replayed(IngestReport),
}

impl Receipt {
    pub fn report(&self) -> &IngestReport {
        match self {
            Self::Stored(r) | Self::Replayed(r) => r,
        }
    }
}

/// A client's `Idempotency-Key`, whose it is, and the hash of the body it came with.
pub struct Idempotency {
    /// A stable id of the caller (its API key): keys of different callers never meet.
    caller: String,
    key: String,
    body_hash: Vec<u8>,
}

impl Idempotency {
    pub fn new(caller: String, key: String, body: &[u8]) -> Self {
        Self {
            caller,
            key,
            body_hash: Sha256::digest(body).to_vec(),
        }
    }
}

/// One batch handed to the service.
pub struct Submission {
    pub rows: Rows,
    pub source: Source,
    pub idempotency: Option<Idempotency>,
    /// The key's name that sent the rows, recorded against their capture devices.
    pub reporter: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the batch holds no detections")]
    Empty,
    /// `count` is exact when the source counted its rows up front, else the first row past
    /// the limit.
    #[error("{count} detections in one request; the limit is {limit}")]
    TooMany { count: usize, limit: usize },
    #[error("none of the {total} detections is valid")]
    NothingValid {
        total: usize,
        errors: Vec<ItemError>,
    },
    #[error("this Idempotency-Key was already used with a different body")]
    IdempotencyMismatch,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyInProgress,
    /// The input is not in the format it claims (a file's header, a body's syntax).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A file crossed a bound on its decompressed size or its line length.
    #[error("{detail}")]
    Exceeded {
        what: crate::formats::Exceeded,
        detail: String,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

/// When this process last committed detections (the registry updater gives way to ingest while
/// it is busy, see `analysis::registry`), and where: the areas of recent commits, so cached map
/// tiles there are rebuilt.
#[derive(Debug)]
pub struct IngestActivity {
    origin: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    /// (when, area) of recent commits, oldest first; bounded by merging the oldest two.
    changes:
        std::sync::Mutex<std::collections::VecDeque<(std::time::Instant, crate::domain::BBox)>>,
}

/// Commit areas remembered one by one; beyond this the oldest merge (invalidating more, never
/// less).
const MAX_CHANGES: usize = 256;

impl Default for IngestActivity {
    fn default() -> Self {
        Self {
            origin: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(u64::MAX),
            changes: std::sync::Mutex::default(),
        }
    }
}

impl IngestActivity {
    pub fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Detections were committed within `area`.
    pub fn record(&self, area: crate::domain::BBox) {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        if changes.len() >= MAX_CHANGES {
            if let (Some((_, a)), Some((t, b))) = (changes.pop_front(), changes.pop_front()) {
                // Stamped with the newer time: a merged change never looks older than it was.
                changes.push_front((t, a.union(&b)));
            }
        }
        changes.push_back((std::time::Instant::now(), area));
    }

    /// Whether anything committed at or after `since` touched `area`.
    pub fn changed_since(&self, since: std::time::Instant, area: &crate::domain::BBox) -> bool {
        let changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        changes
            .iter()
            .rev()
            .take_while(|(at, _)| *at >= since)
            .any(|(_, changed)| changed.intersects(area))
    }

    /// Forgets changes older than `age` (nothing cached can be that old).
    pub fn forget_before(&self, age: std::time::Duration) {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        while changes.front().is_some_and(|(at, _)| at.elapsed() > age) {
            changes.pop_front();
        }
    }

    /// Whether detections were committed within `window`.
    pub fn active_within(&self, window: std::time::Duration) -> bool {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        last != u64::MAX
            && self.origin.elapsed().as_millis() as u64 <= last + window.as_millis() as u64
    }
}

/// The service. Cheap to clone; without a pool it validates only (`import --dry-run`).
#[derive(Clone)]
pub struct Ingest {
    pool: Option<db::Pool>,
    activity: Arc<IngestActivity>,
    privacy: Arc<PrivacyPolicy>,
    max_batch_items: usize,
    max_future_skew: chrono::Duration,
    spool: import::Spool,
}

/// A batch after validation and the privacy policy.
struct Validated {
    valid: Vec<Detection>,
    /// Rows read, valid or not.
    read: usize,
    errors: Vec<ItemError>,
    rejected: u64,
    filtered: u64,
}

impl Ingest {
    pub fn new(pool: db::Pool, privacy: Arc<PrivacyPolicy>, settings: &IngestSettings) -> Self {
        Self {
            pool: Some(pool),
            ..Self::dry_run(privacy, settings)
        }
    }

    /// When this process last committed detections.
    pub fn activity(&self) -> Arc<IngestActivity> {
        Arc::clone(&self.activity)
    }

    /// Validates and counts, stores nothing.
    pub fn dry_run(privacy: Arc<PrivacyPolicy>, settings: &IngestSettings) -> Self {
        Self {
            pool: None,
            activity: Arc::default(),
            privacy,
            max_batch_items: settings.max_batch_items,
            max_future_skew: chrono::Duration::seconds(settings.max_future_skew_secs),
            spool: import::Spool {
                dir: settings
                    .spool_dir
                    .clone()
                    .unwrap_or_else(std::env::temp_dir),
                max_bytes: settings.max_kismet_upload_bytes,
            },
        }
    }

    pub fn is_dry_run(&self) -> bool {
        self.pool.is_none()
    }

    /// The one entry point: validate, apply the privacy policy, deduplicate, store, record.
    pub async fn submit(&self, submission: Submission) -> Result<Receipt, IngestError> {
        let Submission {
            rows,
            source,
            idempotency,
            reporter,
        } = submission;
        // Sources that count their rows up front are refused on the count alone, before any
        // row is read; the others are counted as they are read.
        let limit = (source != Source::Import).then_some(self.max_batch_items);
        if let (Some(limit), Some(count)) = (limit, rows.known_len()) {
            if count > limit {
                return Err(IngestError::TooMany { count, limit });
            }
        }
        let validated = self.validate(rows, limit)?;
        let total = validated.read;
        if total == 0 && source == Source::Api {
            return Err(IngestError::Empty);
        }
        if source == Source::Api && validated.valid.is_empty() && validated.filtered == 0 {
            return Err(IngestError::NothingValid {
                total,
                errors: validated.errors,
            });
        }
        if source == Source::Geosubmit && validated.rejected > 0 {
            let first = validated
                .errors
                .first()
                .map(|e| format!("{}: {}", e.field, e.reason));
            tracing::warn!(rejected = validated.rejected, first_error = ?first, "geosubmit observations rejected");
        }
        let Validated {
            valid,
            errors,
            rejected,
            filtered,
            ..
        } = validated;
        let mut report = IngestReport {
            accepted: 0,
            duplicates: 0,
            rejected,
            filtered,
            errors,
        };
        let Some(pool) = &self.pool else {
            report.accepted = valid.len() as u64;
            return Ok(Receipt::Stored(report));
        };
        if valid.is_empty() && idempotency.is_none() {
            return Ok(Receipt::Stored(report));
        }
        self.store(
            pool,
            valid,
            idempotency.as_ref(),
            reporter.as_deref(),
            report,
        )
        .await
    }

    /// Checks every row, keeping the valid detections and an error per bad field. Rejections are
    /// counted by the signal type the row claimed (`unknown` when it named none valid). Each row
    /// is expanded into a JSON value only while it is checked.
    fn validate(&self, rows: Rows, limit: Option<usize>) -> Result<Validated, IngestError> {
        let policy = ValidationPolicy {
            now: chrono::Utc::now(),
            max_future_skew: self.max_future_skew,
        };
        let known_len = rows.known_len();
        let mut out = Validated {
            valid: Vec::with_capacity(known_len.unwrap_or(0)),
            errors: Vec::new(),
            read: 0,
            rejected: 0,
            filtered: 0,
        };
        for (index, item) in rows {
            out.read += 1;
            if let Some(limit) = limit.filter(|limit| out.read > *limit) {
                return Err(IngestError::TooMany {
                    count: out.read,
                    limit,
                });
            }
            let parsed = match &item {
                Ok(value) => Detection::parse(value, &policy),
                Err(reason) => Err(vec![FieldError::new("", reason.clone())]),
            };
            match parsed {
                Ok(d) => match self.privacy.refuses(&d) {
                    Some(_) => {
                        out.filtered += 1;
                        metrics::counter!("shadowcheck_ingest_detections_total", "signal_type" => d.signal_type.as_str(), "outcome" => "filtered").increment(1);
                    }
                    None => out.valid.push(d),
                },
                Err(field_errors) => {
                    out.rejected += 1;
                    let claimed = item
                        .as_ref()
                        .ok()
                        .and_then(|v| v.get("signal_type"))
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<SignalType>().ok())
                        .map_or("unknown", |t| t.as_str());
                    metrics::counter!("shadowcheck_ingest_detections_total", "signal_type" => claimed, "outcome" => "rejected").increment(1);
                    out.errors
                        .extend(field_errors.into_iter().map(|e| ItemError::new(index, e)));
                }
            }
        }
        if known_len.is_some_and(|n| n != out.read) {
            // A decoder kept fewer rows than it counted: refusing beats losing them silently.
            return Err(IngestError::Internal(format!(
                "{} rows read of {known_len:?} counted",
                out.read
            )));
        }
        metrics::histogram!("shadowcheck_ingest_batch_size").record(out.read as f64);
        Ok(out)
    }

    /// Stores the valid detections and, with an idempotency key, the answer, in one transaction.
    async fn store(
        &self,
        pool: &db::Pool,
        valid: Vec<Detection>,
        idempotency: Option<&Idempotency>,
        reporter: Option<&str>,
        mut report: IngestReport,
    ) -> Result<Receipt, IngestError> {
        // Partitions are DDL: made (and committed) before the insert transaction starts.
        db::detections::ensure_partitions(pool, &valid).await?;
        let mut tx = pool.begin().await?;
        if let Some(idem) = idempotency {
            if let Claim::Taken {
                request_hash,
                answer,
            } = db::idempotency::claim(&mut tx, &idem.caller, &idem.key, &idem.body_hash).await?
            {
                tx.rollback().await?;
                if request_hash != idem.body_hash {
                    return Err(IngestError::IdempotencyMismatch);
                }
                let answer = answer.ok_or(IngestError::IdempotencyInProgress)?;
                let first: IngestReport = serde_json::from_value(answer)
                    .map_err(|e| IngestError::Internal(format!("stored answer: {e}")))?;
                return Ok(Receipt::Replayed(first));
            }
        }
        let inserted = db::detections::insert_batch(&mut tx, &valid).await?;
        // Placed in the same transaction: a 2xx means the rows and their positions are stored.
        let placed = db::positioning::place_unfixed(&mut tx, &inserted.unfixed).await?;
        if let Some(reporter) = reporter {
            db::devices::record_reporter(&mut tx, &valid, reporter).await?;
        }
        let inserted_by_type = inserted.by_type;
        report.accepted = inserted_by_type.values().sum();
        report.duplicates = valid.len() as u64 - report.accepted;
        if let Some(idem) = idempotency {
            let answer =
                serde_json::to_value(&report).map_err(|e| IngestError::Internal(e.to_string()))?;
            db::idempotency::complete(&mut tx, &idem.caller, &idem.key, &answer).await?;
        }
        db::observe("commit", tx.commit()).await?;
        self.activity.touch();
        if let Some(area) = extent(&valid) {
            self.activity.record(area);
        }
        record_stored(&valid, &inserted_by_type);
        for (how, n) in [("sensor", placed.sensor), ("estimated", placed.estimated)] {
            if n > 0 {
                metrics::counter!("shadowcheck_ingest_positioned_total", "source" => how)
                    .increment(n);
            }
        }
        Ok(Receipt::Stored(report))
    }
}

/// The box around the batch's positions (those stored without one are on no map).
fn extent(valid: &[Detection]) -> Option<crate::domain::BBox> {
    valid
        .iter()
        .filter_map(|d| d.position)
        .fold(None, |acc, p| {
            let (lon, lat) = (p.lon(), p.lat());
            let point = crate::domain::BBox {
                min_lon: lon,
                min_lat: lat,
                max_lon: lon,
                max_lat: lat,
            };
            Some(acc.map_or(point, |b: crate::domain::BBox| b.union(&point)))
        })
}

/// Counts stored and duplicate detections by signal type.
fn record_stored(valid: &[Detection], inserted_by_type: &BTreeMap<String, u64>) {
    for kind in SignalType::ALL {
        let offered = valid.iter().filter(|d| d.signal_type == kind).count() as u64;
        if offered == 0 {
            continue;
        }
        let accepted = inserted_by_type.get(kind.as_str()).copied().unwrap_or(0);
        let labels = |outcome: &'static str| [("signal_type", kind.as_str()), ("outcome", outcome)];
        if accepted > 0 {
            metrics::counter!("shadowcheck_ingest_detections_total", &labels("accepted"))
                .increment(accepted);
        }
        if offered > accepted {
            metrics::counter!("shadowcheck_ingest_detections_total", &labels("duplicate"))
                .increment(offered - accepted);
        }
    }
}
