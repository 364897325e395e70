//! Wiring: state, router, listeners, the start-up database task, and the serve loop with its
//! bounded drain.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use rand::Rng;
use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::config::{Secret, Settings};
use crate::db;
use crate::error::ApiError;
use crate::lifecycle::Lifecycle;

type CachedHealth = Option<(Instant, Result<Duration, String>)>;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub lifecycle: Arc<Lifecycle>,
    pub exporters: Arc<crate::telemetry::Exporters>,
    pub auth: Arc<crate::auth::Authenticator>,
    pub client_limiter: Option<Arc<crate::auth::ClientLimiter>>,
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    pub privacy: Arc<crate::domain::privacy::PrivacyPolicy>,
    pool: PgPool,
    health_cache: Arc<Mutex<CachedHealth>>,
    /// Requests currently waiting for a pooled connection.
    waiters: Arc<AtomicUsize>,
}

/// Connection pool occupancy, for `/health/detailed` and the pool gauges.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PoolStats {
    pub size: u32,
    pub idle: usize,
    pub in_use: usize,
    pub max: u32,
    pub waiters: usize,
}

/// Decrements the waiter count even when the waiting request is cancelled.
struct WaiterGuard(Arc<AtomicUsize>);

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AppState {
    /// The pool, once start-up has connected and migrated; before that a 503 so clients retry.
    pub fn database(&self) -> Result<&PgPool, ApiError> {
        if self.lifecycle.is_started() {
            Ok(&self.pool)
        } else {
            Err(ApiError::Unavailable {
                detail: "the service is starting and has not reached its database yet".into(),
                retry_after_secs: 2,
            })
        }
    }

    /// Database round-trip latency, cached for up to a second so probes cannot overload it.
    pub async fn database_health(&self) -> Result<Duration, String> {
        let mut cache = self.health_cache.lock().await;
        if let Some((at, result)) = cache.as_ref() {
            if at.elapsed() < Duration::from_secs(1) {
                return result.clone();
            }
        }
        let timeout = Duration::from_millis(self.settings.database.health_timeout_ms);
        let result = db::ping(&self.pool, timeout).await;
        metrics::gauge!("shadowcheck_db_health").set(if result.is_ok() { 1.0 } else { 0.0 });
        *cache = Some((Instant::now(), result.clone()));
        result
    }

    /// A pooled connection for one request; waits at most `database.acquire_timeout_ms`.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, ApiError> {
        let pool = self.database()?;
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _guard = WaiterGuard(Arc::clone(&self.waiters));
        Ok(pool.acquire().await?)
    }

    pub fn pool_stats(&self) -> PoolStats {
        let size = self.pool.size();
        let idle = self.pool.num_idle();
        PoolStats {
            size,
            idle,
            in_use: (size as usize).saturating_sub(idle),
            max: self.settings.database.max_connections,
            waiters: self.waiters.load(Ordering::SeqCst),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    state: AppState,
    metrics: PrometheusHandle,
}

impl Application {
    /// Binds both listeners (port 0 works, for tests) and prepares a lazy pool; nothing here
    /// waits for the database.
    pub async fn build(
        settings: Settings,
        database_url: &Secret,
        lifecycle: Arc<Lifecycle>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let metrics_listener = TcpListener::bind(settings.server.metrics_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for metrics",
                    settings.server.metrics_listen
                )
            })?;
        let pool =
            db::lazy_pool(database_url, &settings.database).context("invalid database URL")?;
        let trusted_proxies = settings
            .server
            .trusted_proxies
            .iter()
            .filter_map(|p| {
                p.parse::<ipnet::IpNet>()
                    .ok()
                    .or_else(|| p.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
            })
            .collect();
        let state = AppState {
            auth: Arc::new(crate::auth::Authenticator::new(
                &settings.auth,
                &settings.rate_limit,
            )),
            client_limiter: crate::auth::ClientLimiter::new(&settings.rate_limit),
            trusted_proxies: Arc::new(trusted_proxies),
            privacy: Arc::new(settings.privacy.policy()),
            settings: Arc::new(settings),
            lifecycle,
            exporters: Arc::default(),
            pool,
            health_cache: Arc::new(Mutex::new(None)),
            waiters: Arc::new(AtomicUsize::new(0)),
        };
        Ok(Self {
            listener,
            metrics_listener,
            state,
            metrics: crate::telemetry::metrics_handle(),
        })
    }

    /// Reports these exporters' state in `/health/detailed`.
    pub fn with_exporters(mut self, exporters: Arc<crate::telemetry::Exporters>) -> Self {
        self.state.exporters = exporters;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub fn metrics_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.metrics_listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the lifecycle's shutdown fires, then drains for at most the configured time.
    /// Returns an error when the drain did not finish in time.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            listener,
            metrics_listener,
            state,
            metrics,
        } = self;
        let shutdown = state.lifecycle.shutdown_token();
        tokio::spawn(prepare_database(state.clone()));
        tokio::spawn(monitor_database(state.clone()));

        let scrape_state = state.clone();
        let metrics_router = Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                let state = scrape_state.clone();
                async move {
                    crate::telemetry::record_scrape_time_gauges(&state.pool_stats());
                    let mut text = metrics.render();
                    text.push_str(&crate::telemetry::process_metrics_text());
                    text
                }
            }),
        );
        let metrics_shutdown = shutdown.clone();
        let metrics_server = tokio::spawn(async move {
            axum::serve(metrics_listener, metrics_router)
                .with_graceful_shutdown(metrics_shutdown.cancelled_owned())
                .await
        });

        let drain = Duration::from_secs(state.settings.server.drain_timeout_secs);
        let pool = state.pool.clone();
        let settings = Arc::clone(&state.settings);
        let outcome = crate::http::server::serve(
            listener,
            crate::http::router(state),
            &settings.server,
            shutdown,
            drain,
        )
        .await;
        metrics_server.abort();
        pool.close().await;
        tracing::info!("database pool closed");
        outcome
    }
}

/// Connects and migrates in the background with exponential backoff and jitter, so the process
/// serves probes (live 200, ready 503) while the database is still unreachable.
async fn prepare_database(state: AppState) {
    let settings = &state.settings.database;
    let shutdown = state.lifecycle.shutdown_token();
    let mut delay = Duration::from_millis(settings.retry_initial_ms);
    let max_delay = Duration::from_millis(settings.retry_max_ms);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let result = if settings.migrate_on_start {
            db::MIGRATOR
                .run(&state.pool)
                .await
                .map_err(|e| e.to_string())
        } else {
            match db::migrations_current(&state.pool).await {
                Ok(true) => Ok(()),
                Ok(false) => Err("migrations are pending; run `shadowcheck migrate`".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(attempt, "database ready; migrations applied");
                state.lifecycle.mark_started();
                return;
            }
            Err(error) => {
                if settings.retry_max_attempts != 0 && attempt >= settings.retry_max_attempts {
                    tracing::error!(attempt, %error, "giving up on the database; shutting down");
                    state.lifecycle.begin_shutdown();
                    return;
                }
                // Full jitter between half and all of the delay: instances do not retry in step.
                let jittered = delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
                tracing::warn!(attempt, %error, next_delay_ms = jittered.as_millis() as u64, "database not ready; retrying");
                metrics::counter!("shadowcheck_db_reconnect_attempts_total").increment(1);
                tokio::select! {
                    () = tokio::time::sleep(jittered) => {}
                    () = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(max_delay);
            }
        }
    }
}

/// Keeps `shadowcheck_db_health` current even when nobody probes readiness, prunes idle
/// rate-limiter state and purges expired idempotency keys.
async fn monitor_database(state: AppState) {
    let shutdown = state.lifecycle.shutdown_token();
    let ttl = chrono::Duration::hours(i64::from(state.settings.ingest.idempotency_ttl_hours));
    let mut last_purge: Option<Instant> = None;
    loop {
        // Expired idempotency answers, every ten minutes once the database is there.
        if state.lifecycle.is_started()
            && last_purge.is_none_or(|t| t.elapsed() > Duration::from_secs(600))
        {
            last_purge = Some(Instant::now());
            match crate::ingest::purge_idempotency_keys(&state.pool, ttl).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired idempotency keys removed"),
                Err(e) => tracing::warn!(error = %e, "could not purge idempotency keys"),
            }
        }
        state.auth.prune();
        if let Some(limiter) = &state.client_limiter {
            limiter.prune();
        }
        if state.lifecycle.is_started() {
            let _ = state.database_health().await;
        } else {
            metrics::gauge!("shadowcheck_db_health").set(0.0);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
