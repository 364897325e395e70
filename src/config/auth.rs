//! `auth.*` and `rate_limit.*`: keys, anonymous reads, per-key and per-client limits.

use super::{invalid, ConfigError, Secret};

section! {
    pub struct AuthSettings {
        /// A key with every scope, e.g. from a Docker secret (`auth.bootstrap_key_file`).
        bootstrap_key: Option<Secret> = None,
        /// Let clients without a key read (GET) detections, tiles, features and stats.
        anonymous_read: bool = false,
        /// The same, under the name the map documentation uses (either one turns it on).
        public_read: bool = false,
        /// How long a verified key is trusted without asking the database again; revocation
        /// takes effect within this time.
        cache_ttl_secs: u64 = 10,
        /// Requests one key may have in progress at once (429 beyond), so a single key cannot
        /// hold every server slot; never more than `database.max_connections_per_key`, since
        /// each request may hold a connection. 0 leaves only that database share.
        max_concurrent_per_key: usize = 32,
    }
}

impl AuthSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(key) = &self.bootstrap_key {
            if key.expose().len() < 24 {
                return Err(invalid(
                    "auth.bootstrap_key",
                    "must be at least 24 characters",
                ));
            }
        }
        Ok(())
    }
}

section! {
    pub struct RateLimitSettings {
        enabled: bool = true,
        /// Sustained requests per second, and burst, for one API key.
        per_key_per_second: u32 = 50,
        per_key_burst: u32 = 100,
        /// Sustained requests per second, and burst, for one client address (before
        /// authentication, so guessing keys is slow too).
        per_client_per_second: u32 = 100,
        per_client_burst: u32 = 200,
    }
}

impl RateLimitSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.per_key_per_second == 0
            || self.per_client_per_second == 0
            || self.per_key_burst == 0
            || self.per_client_burst == 0
        {
            return Err(invalid(
                "rate_limit.per_key_per_second",
                "rates and bursts must be at least 1",
            ));
        }
        Ok(())
    }
}
