//! `database.*`: where the data is (or the embedded cluster), pools, timeouts, start-up retries,
//! the read replica and a transaction-mode pooler.

use std::path::PathBuf;

use super::{empty_is_none, invalid, ConfigError, Secret};

section! {
    pub struct DatabaseSettings {
        /// PostgreSQL URL; when absent the binary runs its own cluster under `data_dir`.
        url: Option<Secret> = None,
        /// Where the embedded cluster lives.
        data_dir: PathBuf = PathBuf::from("./data"),
        max_connections: u32 = 10,
        /// Database connections one API key's requests may hold at once (each request holds at
        /// most one), so a single caller cannot starve the others; 0 = half the pool, at least 1.
        max_connections_per_key: u32 = 0,
        min_connections: u32 = 0,
        /// Bound on waiting for a pooled connection on the request path.
        acquire_timeout_ms: u64 = 3_000,
        /// Bound on one health probe of the database.
        health_timeout_ms: u64 = 1_000,
        /// Apply pending migrations when `serve` starts.
        migrate_on_start: bool = true,
        /// First delay between connection attempts at start-up; doubles (with jitter) up to the
        /// max.
        retry_initial_ms: u64 = 250,
        retry_max_ms: u64 = 10_000,
        /// Give up after this many start-up attempts; 0 means never.
        retry_max_attempts: u32 = 0,
        /// Longest any one statement of the API may run (PostgreSQL `statement_timeout`), so a
        /// costly query cannot hold connections from everyone else; 0 means unbounded.
        statement_timeout_ms: u64 = 30_000,
        /// A streaming replica (or a pooler in front of one) for reads: searches, tiles, OGC API
        /// and exports. Writes and reads of one's own writes stay on `url`. When it is down or
        /// lags more than `read_max_lag_secs`, reads go to `url` instead (logged and counted).
        #[serde(deserialize_with = "empty_is_none")]
        read_url: Option<Secret> = None,
        /// Replay lag beyond which reads leave the replica for the primary; 0 = any lag.
        read_max_lag_secs: u64 = 30,
        /// The URLs point at a transaction-mode pooler (PgBouncer `pool_mode = transaction`):
        /// every statement runs inside an explicit transaction (the server is only ours until
        /// the transaction ends), prepared statements are not cached, and the statement timeout
        /// is set per transaction instead of as a start-up parameter (PgBouncer refuses those).
        transaction_pooler: bool = false,
    }
}

impl DatabaseSettings {
    /// Connections one key may hold at once: the setting, or half the pool (at least 1).
    pub fn connections_per_key(&self) -> usize {
        let share = match self.max_connections_per_key {
            0 => self.max_connections / 2,
            n => n,
        };
        share.max(1) as usize
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self.max_connections_per_key > self.max_connections {
            return Err(invalid(
                "database.max_connections_per_key",
                "must not exceed database.max_connections",
            ));
        }
        if self.min_connections > self.max_connections {
            return Err(invalid(
                "database.min_connections",
                "must not exceed database.max_connections",
            ));
        }
        if self.acquire_timeout_ms == 0 {
            return Err(invalid("database.acquire_timeout_ms", "must be positive"));
        }
        if self.retry_initial_ms == 0 || self.retry_initial_ms > self.retry_max_ms {
            return Err(invalid(
                "database.retry_initial_ms",
                "must be positive and at most database.retry_max_ms",
            ));
        }
        for (key, url) in [
            ("database.url", &self.url),
            ("database.read_url", &self.read_url),
        ] {
            if let Some(url) = url {
                let u = url.expose();
                if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                    return Err(invalid(key, "must start with postgres:// or postgresql://"));
                }
            }
        }
        Ok(())
    }
}
