//! `ingest.*`: batch and file bounds, clock skew, idempotency.

use super::{invalid, ConfigError};

section! {
    pub struct IngestSettings {
        /// Most detections accepted in one request.
        max_batch_items: usize = 10_000,
        /// How far in the future (device clock skew) a detection time may be.
        max_future_skew_secs: i64 = 300,
        /// Largest file accepted by `POST /api/v1/imports` (streamed, never held in memory).
        max_import_bytes: u64 = 1024 * 1024 * 1024,
        /// Largest Kismet log (`.kismet`, SQLite) accepted over HTTP: it is spooled to
        /// `spool_dir` to be read in place (strip packets with `kismetdb_strip_packets` first).
        max_kismet_upload_bytes: u64 = 256 * 1024 * 1024,
        /// Where uploaded Kismet logs are spooled while read (default: the system temp dir).
        spool_dir: Option<std::path::PathBuf> = None,
        /// Bound on one file import over HTTP (large files take minutes).
        import_timeout_secs: u64 = 3_600,
        /// How long an `Idempotency-Key` answer is kept for replay.
        idempotency_ttl_hours: u32 = 24,
    }
}

impl IngestSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_batch_items == 0 {
            return Err(invalid("ingest.max_batch_items", "must be at least 1"));
        }
        if self.max_future_skew_secs < 0 {
            return Err(invalid(
                "ingest.max_future_skew_secs",
                "must not be negative",
            ));
        }
        // Zero would purge every key at once; a year is more than any retry needs.
        if !(1..=8_760).contains(&self.idempotency_ttl_hours) {
            return Err(invalid(
                "ingest.idempotency_ttl_hours",
                "must be between 1 and 8760",
            ));
        }
        Ok(())
    }
}
