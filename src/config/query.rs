//! `query.*`: page sizes and streamed exports.

use super::{invalid, ConfigError};

section! {
    pub struct QuerySettings {
        default_limit: u32 = 1_000,
        max_limit: u32 = 10_000,
        /// Exports (`f=csv|fgb|geojson|geojsonseq|kml`) streaming at once; each holds a database
        /// connection while it runs. Beyond this: 503 with Retry-After.
        max_concurrent_exports: usize = 2,
        /// Exports one key may run at once (429 beyond), so one reader never holds every turn.
        max_exports_per_key: usize = 1,
        /// Longest an export's query may run (a slow reader slows it down).
        export_timeout_secs: u64 = 3_600,
    }
}

impl QuerySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.default_limit == 0 || self.default_limit > self.max_limit {
            return Err(invalid(
                "query.default_limit",
                "must be between 1 and query.max_limit",
            ));
        }
        Ok(())
    }
}
