//! `registry.*`: the transmitter registry beside ingest, and the following detector's scoring.

use super::{invalid, ConfigError};

section! {
    pub struct RegistrySettings {
        /// Keep the transmitter registry up to date from new detections while serving.
        enabled: bool = true,
        /// Detections folded into the registry per transaction.
        chunk_rows: u32 = 500,
        /// Pause between polls once the queue is empty.
        idle_ms: u64 = 500,
        /// (transmitter, capture device) pairs rescored per transaction by the following
        /// detector.
        score_pairs: u32 = 100,
        /// A pair waits this long after new sightings before it is rescored, so a transmitter
        /// seen in every chunk is scored once per interval rather than once per chunk.
        score_settle_ms: u64 = 2_000,
    }
}

impl RegistrySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.chunk_rows == 0 {
            return Err(invalid("registry.chunk_rows", "must be at least 1"));
        }
        if self.score_pairs == 0 {
            return Err(invalid("registry.score_pairs", "must be at least 1"));
        }
        Ok(())
    }
}
