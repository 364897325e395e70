//! `log.*`, `loki.*` and `otel.*`: where logs and traces go.

use serde::{Deserialize, Serialize};

use super::{invalid, is_http_url, ConfigError, Secret};

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `pretty` when the log stream is a terminal, `json` otherwise (pipes, files, containers).
    Auto,
    Json,
    Pretty,
}

impl LogFormat {
    /// What `auto` means for a stream that is (or is not) a terminal.
    pub fn resolve(self, terminal: bool) -> LogFormat {
        match self {
            Self::Auto if terminal => Self::Pretty,
            Self::Auto => Self::Json,
            other => other,
        }
    }
}

section! {
    pub struct LogSettings {
        format: LogFormat = LogFormat::Auto,
        /// `tracing` env-filter directive, e.g. `info,sqlx=warn`.
        level: String = "info,sqlx=warn".to_owned(),
    }
}

impl LogSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            return Err(invalid("log.level", format!("not a tracing filter: {e}")));
        }
        Ok(())
    }
}

section! {
    pub struct LokiSettings {
        /// Base URL of Loki (`http://loki:3100`); shipping is off when absent. A secret because
        /// it may carry basic-auth credentials.
        url: Option<Secret> = None,
        /// Value of the `environment` stream label.
        environment: String = "development".to_owned(),
        /// Most log events held while Loki is slow or down; beyond it the oldest are dropped.
        queue_capacity: usize = 10_000,
        /// Most events in one push.
        batch_size: usize = 1_000,
        flush_interval_ms: u64 = 1_000,
        /// Bound on one push request, so a Loki that never answers cannot pin the queue.
        timeout_ms: u64 = 3_000,
    }
}

impl LokiSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.queue_capacity == 0 || self.batch_size == 0 {
            return Err(invalid(
                "loki.queue_capacity",
                "queue_capacity and batch_size must be at least 1",
            ));
        }
        if self
            .url
            .as_ref()
            .is_some_and(|url| !is_http_url(url.expose()))
        {
            return Err(invalid("loki.url", "must be an http:// or https:// URL"));
        }
        Ok(())
    }
}

section! {
    pub struct OtelSettings {
        /// OTLP/HTTP endpoint base (`http://collector:4318`); tracing export is off when absent.
        endpoint: Option<String> = None,
        service_name: String = "shadowcheck".to_owned(),
        /// Fraction of new traces sampled (incoming sampled parents are always followed).
        sample_ratio: f64 = 1.0,
        timeout_ms: u64 = 3_000,
    }
}

impl OtelSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoint.as_deref().is_some_and(|e| !is_http_url(e)) {
            return Err(invalid(
                "otel.endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid("otel.sample_ratio", "must be between 0 and 1"));
        }
        Ok(())
    }
}
