//! Logs (tracing) and metrics (Prometheus recorder): the process-wide observability set-up.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Settings};

pub mod loki;
pub mod otel;

/// What must outlive `main`'s work: the exporters' state and the handles that flush them.
pub struct Telemetry {
    pub exporters: Arc<Exporters>,
    loki: Option<loki::LokiShipper>,
    tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes queued logs and spans, each bounded by `within`. Call after the server drained.
    pub fn shutdown(self, within: Duration) {
        if let Some(provider) = self.tracer_provider {
            let _ = provider.shutdown_with_timeout(within);
        }
        if let Some(loki) = self.loki {
            loki.shutdown(within);
        }
    }
}

/// Installs the global tracing subscriber: on stdout, human-readable lines when it is a terminal
/// and JSON lines otherwise (`log.format` can force either), plus Loki and OTLP layers when
/// configured. Later calls in one process change nothing (tests).
pub fn init(settings: &Settings) -> Telemetry {
    // The recorder first, so metrics recorded during start-up are kept.
    metrics_handle();
    let exporters = Arc::new(Exporters::default());
    let filter =
        || EnvFilter::try_new(&settings.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let stdout = match settings.log.format.resolve(std::io::stdout().is_terminal()) {
        LogFormat::Json | LogFormat::Auto => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stdout)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .boxed(),
    };
    let (loki_layer, loki) = match &settings.loki.url {
        Some(url) => {
            let (layer, shipper) = loki::build(
                &settings.loki,
                url.expose(),
                &settings.otel.service_name,
                Arc::clone(&exporters),
            );
            (Some(layer.with_filter(filter())), Some(shipper))
        }
        None => (None, None),
    };
    let mut otel_error = None;
    let (otel_layer, tracer_provider) = match &settings.otel.endpoint {
        Some(endpoint) => match otel::build(&settings.otel, endpoint, Arc::clone(&exporters)) {
            Ok((provider, tracer)) => (
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(filter()),
                ),
                Some(provider),
            ),
            Err(e) => {
                otel_error = Some(e);
                (None, None)
            }
        },
        None => (None, None),
    };
    let installed = tracing_subscriber::registry()
        .with(stdout.with_filter(filter()))
        .with(loki_layer)
        .with(otel_layer)
        .try_init();
    if let Some(e) = otel_error {
        tracing::error!(error = %e, "tracing export disabled");
    }
    // Already initialised (tests): keep the first subscriber.
    drop(installed);
    metrics::gauge!("shadowcheck_build_info", "version" => VERSION, "commit" => GIT_COMMIT)
        .set(1.0);
    zero_exporter_counters();
    Telemetry {
        exporters,
        loki,
        tracer_provider,
    }
}

/// Request-duration buckets, 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Binds the Prometheus listener (`server.metrics_listen`).
pub async fn bind_metrics(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))
}

/// Serves `GET /metrics` on `listener` until `shutdown`: `on_scrape` first sets the gauges read
/// at scrape time, then the recorder's metrics and the process metrics are rendered.
pub fn serve_metrics<F>(
    listener: tokio::net::TcpListener,
    on_scrape: F,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    F: Fn() + Clone + Send + Sync + 'static,
{
    let handle = metrics_handle();
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            let on_scrape = on_scrape.clone();
            async move {
                on_scrape();
                let mut text = handle.render();
                text.push_str(&process_metrics_text());
                text
            }
        }),
    );
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    })
}

/// Items per ingest request.
pub const BATCH_SIZE_BUCKETS: [f64; 8] =
    [1.0, 10.0, 50.0, 100.0, 500.0, 1_000.0, 5_000.0, 10_000.0];

/// Installs the global Prometheus recorder once per process and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Explicit buckets, or histograms are rendered as summaries.
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("shadowcheck_ingest_batch_size".into()),
                        &BATCH_SIZE_BUCKETS,
                    )
                })
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
pub fn record_scrape_time_gauges(pool: &crate::db::PoolStats) {
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
    /// Events waiting to be shipped (Loki).
    pub queued: std::sync::atomic::AtomicU64,
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
            "queued": self.queued.load(Relaxed),
            "sent": self.sent.load(Relaxed),
            "failed": self.failed.load(Relaxed),
            "dropped": self.dropped.load(Relaxed),
            // Unauthenticated endpoint: never the exporter's URL (it may carry credentials).
            "last_error": self.last_error.lock().ok().and_then(|e| e.as_deref().map(scrub_urls)),
        })
    }
}

/// An error message without URLs (each replaced by `[url]`), at most 300 characters.
pub fn scrub_urls(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find("://") {
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, ')' | '(' | ',' | '"' | '\'' | '>' | '<')
            })
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..scheme_start]);
        out.push_str("[url]");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.chars().take(300).collect()
}

#[cfg(test)]
mod scrub_tests {
    use super::scrub_urls;

    #[test]
    fn urls_are_removed_with_their_credentials() {
        assert_eq!(
            scrub_urls("error sending request for url (http://user:secret@loki:3100/loki/api/v1/push): connection refused"),
            "error sending request for url ([url]): connection refused"
        );
        assert_eq!(scrub_urls("https://a/b and http://c"), "[url] and [url]");
        assert_eq!(scrub_urls("no url here"), "no url here");
        assert_eq!(scrub_urls(&"x".repeat(1000)).len(), 300);
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

/// Standard process metrics (the names the Prometheus client libraries use), read from /proc at
/// scrape time and rendered as exposition text.
pub fn process_metrics_text() -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the parenthesised command name; utime is field 14, starttime field 22.
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu = match (field(14), field(15)) {
        (Some(u), Some(s)) if ticks > 0.0 => Some((u + s) / ticks),
        _ => None,
    };
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    let start = match (boot_time, field(22)) {
        (Some(boot), Some(start_ticks)) if ticks > 0.0 => Some(boot + start_ticks / ticks),
        _ => None,
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        cpu,
    );
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        resident_memory_bytes().map(|b| b as f64),
    );
    metric(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        field(23),
    );
    metric(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        open_fds,
    );
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        start,
    );
    out
}

/// Publishes the API's series from the start, so `rate()` and alert rules see a series before the
/// first event (Prometheus cannot rate a series that does not exist yet). Only `serve` calls it:
/// the maintenance process must not export an API gauge such as a database health of 0. Once per
/// process: a gauge set again would forget what is in flight.
pub fn publish_api_series() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(publish_api_series_now);
}

fn publish_api_series_now() {
    for kind in crate::domain::SignalType::ALL
        .iter()
        .map(|k| k.as_str())
        .chain(["unknown"])
    {
        for outcome in ["accepted", "duplicate", "rejected"] {
            metrics::counter!("shadowcheck_ingest_detections_total", "signal_type" => kind, "outcome" => outcome).absolute(0);
        }
    }
    for name in [
        "shadowcheck_db_reconnect_attempts_total",
        "shadowcheck_db_connections_opened_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    metrics::gauge!("shadowcheck_http_requests_in_flight").set(0.0);
    metrics::gauge!("shadowcheck_db_health").set(0.0);
}

/// The exporters' own counters, in every process that ships logs or traces.
fn zero_exporter_counters() {
    for name in [
        "shadowcheck_log_events_shipped_total",
        "shadowcheck_log_events_dropped_total",
        "shadowcheck_log_shipping_failures_total",
        "shadowcheck_trace_export_failures_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
}
