//! Logs (tracing) and metrics (Prometheus recorder): the process-wide observability set-up.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global tracing subscriber: JSON lines on stdout by default, human-readable with
/// `pretty`. Safe to call more than once (later calls do nothing).
pub fn init_tracing(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stdout),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stdout))
            .try_init(),
    };
    // Already initialised (tests): keep the first subscriber.
    drop(result);
}

/// Request-duration buckets, 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Installs the global Prometheus recorder once per process and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => {
                    let upkeep = handle.clone();
                    // A bare recorder needs periodic upkeep or histograms grow without bound.
                    std::thread::spawn(move || loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    });
                    handle
                }
                // Another recorder is already installed; render an empty one rather than fail.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Resident set size of this process, from /proc (Linux).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

/// Gauges that are cheapest to read at scrape time rather than keep up to date.
pub fn record_scrape_time_gauges(pool: &crate::app::PoolStats) {
    metrics::gauge!("shadowcheck_db_pool_connections", "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("shadowcheck_db_pool_connections", "state" => "in_use").set(pool.in_use as f64);
    metrics::gauge!("shadowcheck_db_pool_connections", "state" => "max").set(f64::from(pool.max));
    metrics::gauge!("shadowcheck_db_pool_connections", "state" => "waiting")
        .set(pool.waiters as f64);
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("SHADOWCHECK_GIT_COMMIT");

/// Live state of one log/trace exporter, for `/health/detailed`.
#[derive(Debug, Default)]
pub struct ExporterState {
    pub enabled: std::sync::atomic::AtomicBool,
    pub sent: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    pub dropped: std::sync::atomic::AtomicU64,
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl ExporterState {
    pub fn snapshot(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        serde_json::json!({
            "enabled": self.enabled.load(Relaxed),
            "sent": self.sent.load(Relaxed),
            "failed": self.failed.load(Relaxed),
            "dropped": self.dropped.load(Relaxed),
            "last_error": self.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }
}

/// The exporters this process runs (Loki logs, OTLP traces); disabled unless configured.
#[derive(Debug, Default)]
pub struct Exporters {
    pub loki: ExporterState,
    pub otlp: ExporterState,
}

impl Exporters {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({"loki": self.loki.snapshot(), "otlp": self.otlp.snapshot()})
    }
}
