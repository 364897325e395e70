//! Wiring: the state, router, listeners, the start-up database task, and the serve loop with its
//! bounded drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use tokio::net::TcpListener;

use crate::config::{Secret, Settings};
use crate::db;
use crate::lifecycle::Lifecycle;
use crate::state::AppState;

pub struct Application {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics_listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds both listeners (port 0 works, for tests) and prepares a lazy pool; nothing here
    /// waits for the database.
    pub async fn build(
        settings: Settings,
        database_url: &Secret,
        lifecycle: Arc<Lifecycle>,
    ) -> anyhow::Result<Self> {
        let tls = crate::http::server::tls_acceptor(&settings.server)?;
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let metrics_listener =
            crate::telemetry::bind_metrics(settings.server.metrics_listen).await?;
        // The recorder exists before anything is counted (also without `telemetry::init`).
        crate::telemetry::metrics_handle();
        crate::telemetry::publish_api_series();
        let primary =
            db::api_pools(database_url, &settings.database).context("invalid database URL")?;
        let replica = match &settings.database.read_url {
            None => None,
            Some(url) => {
                let pools =
                    db::api_pools(url, &settings.database).context("invalid database.read_url")?;
                Some(Arc::new(db::replica::Replica::new(
                    pools.requests,
                    pools.probe,
                    settings.database.read_max_lag_secs,
                )))
            }
        };
        let failover = primary.failover.clone();
        let mut state = AppState::new(
            settings,
            lifecycle,
            primary.requests,
            primary.probe,
            replica,
        );
        state.failover = failover;
        Ok(Self {
            listener,
            tls,
            metrics_listener,
            state,
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
            tls,
            metrics_listener,
            state,
        } = self;
        let shutdown = state.lifecycle.shutdown_token();
        tokio::spawn(prepare_database(state.clone()));
        tokio::spawn(monitor_database(state.clone()));
        if let Some(failover) = &state.failover {
            tokio::spawn(Arc::clone(failover).watch(
                state.pool().inner().clone(),
                state.probe_pool().clone(),
                Duration::from_millis(state.settings.database.health_timeout_ms),
                shutdown.clone(),
            ));
        }
        if let Some(replica) = state.replica() {
            tokio::spawn(db::replica::watch(
                Arc::clone(replica),
                Duration::from_secs(1),
                Duration::from_millis(state.settings.database.health_timeout_ms),
                shutdown.clone(),
            ));
        }
        tokio::spawn(crate::analysis::registry::run_in_serve(
            state.pool().clone(),
            state.settings.registry.clone(),
            Arc::clone(&state.lifecycle),
            state.ingest_activity(),
        ));
        tokio::spawn(crate::notify::run_in_serve(
            state.pool().clone(),
            state.settings.notify.clone(),
            Arc::clone(&state.lifecycle),
            Arc::clone(&state.notify),
        ));
        tokio::spawn(crate::maintenance::retention_in_serve(
            state.pool().clone(),
            state.settings.retention.clone(),
            Arc::clone(&state.lifecycle),
        ));

        let scrape_state = state.clone();
        let metrics_server = crate::telemetry::serve_metrics(
            metrics_listener,
            move || crate::telemetry::record_scrape_time_gauges(&scrape_state.pool_stats()),
            shutdown.clone(),
        );

        let drain = Duration::from_secs(state.settings.server.drain_timeout_secs);
        let pool = state.pool().clone();
        let replica = state.replica().cloned();
        let settings = Arc::clone(&state.settings);
        let outcome = crate::http::server::serve(
            listener,
            tls,
            crate::http::router(state),
            &settings.server,
            shutdown,
            drain,
        )
        .await;
        metrics_server.abort();
        pool.inner().close().await;
        if let Some(replica) = replica {
            replica.pool().inner().close().await;
        }
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
            db::migrate_if_pending(state.pool())
                .await
                .map_err(|e| e.to_string())
        } else {
            match db::migrations_current(state.pool()).await {
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
    let ttl_hours = state.settings.ingest.idempotency_ttl_hours;
    let mut last_purge: Option<Instant> = None;
    let mut last_trim = Instant::now();
    loop {
        // glibc keeps what a burst freed (the detector's scoring, a large import) in its arenas;
        // give it back to the system once a minute so an idle server is small again.
        if last_trim.elapsed() > Duration::from_secs(60) {
            last_trim = Instant::now();
            release_freed_memory();
        }
        // Expired idempotency answers, every ten minutes once the database is there.
        if state.lifecycle.is_started()
            && last_purge.is_none_or(|t| t.elapsed() > Duration::from_secs(600))
        {
            last_purge = Some(Instant::now());
            match db::idempotency::purge(state.pool(), ttl_hours).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired idempotency keys removed"),
                Err(e) => tracing::warn!(error = %e, "could not purge idempotency keys"),
            }
        }
        state.auth.prune();
        state.exports_per_key.prune();
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

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed_memory() {
    // SAFETY: malloc_trim only walks the allocator's own arenas; 0 keeps no extra padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_memory() {}
