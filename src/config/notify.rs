//! `notify.*`: live warnings — server-sent events to open pages, and pushes to phones (a
//! webhook and an ntfy-compatible topic) when a threat appears.

use super::{empty_is_none, invalid, is_http_url, ConfigError, Secret};

section! {
    pub struct NotifySettings {
        /// POSTed a JSON document for every new threat. Empty: none.
        webhook_url: String = String::new(),
        /// Sent as `Authorization: Bearer …` to the webhook, when set.
        #[serde(deserialize_with = "empty_is_none")]
        webhook_token: Option<Secret> = None,
        /// An ntfy topic URL (`https://ntfy.sh/your-secret-topic`, or your own ntfy server):
        /// every new threat is pushed there as a message with a title and priority. Empty: none.
        ntfy_url: String = String::new(),
        /// An ntfy access token, when the topic needs one.
        #[serde(deserialize_with = "empty_is_none")]
        ntfy_token: Option<Secret> = None,
        /// Tries per event and sink before it is dead-lettered (kept, counted, skipped).
        max_attempts: u32 = 6,
        /// The first retry's wait; each next one waits twice as long.
        retry_base_ms: u64 = 1_000,
        /// One delivery attempt's time limit.
        timeout_ms: u64 = 5_000,
        /// Open event streams one key may hold; more are refused with 429.
        streams_per_key: u32 = 4,
        /// Open event streams in all.
        max_streams: u32 = 256,
        /// How often new threats are looked for (one query for all streams and sinks).
        poll_ms: u64 = 1_000,
    }
}

impl NotifySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, url) in [
            ("notify.webhook_url", &self.webhook_url),
            ("notify.ntfy_url", &self.ntfy_url),
        ] {
            if !(url.is_empty() || is_http_url(url)) {
                return Err(invalid(key, "must be an http(s) URL or empty"));
            }
        }
        if self.max_attempts == 0 || self.max_attempts > 20 {
            return Err(invalid("notify.max_attempts", "must be between 1 and 20"));
        }
        if self.streams_per_key == 0 || self.max_streams < self.streams_per_key {
            return Err(invalid(
                "notify.streams_per_key",
                "must be at least 1 and at most notify.max_streams",
            ));
        }
        if !(100..=60_000).contains(&self.poll_ms) {
            return Err(invalid("notify.poll_ms", "must be between 100 and 60000"));
        }
        if self.timeout_ms == 0 || self.retry_base_ms == 0 {
            return Err(invalid(
                "notify.timeout_ms",
                "timeouts and waits must be at least 1 ms",
            ));
        }
        Ok(())
    }
}
