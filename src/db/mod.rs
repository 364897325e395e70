//! Everything that talks to PostgreSQL: the pool, migrations, the embedded cluster and the SQL.

pub mod detections;
pub mod embedded;
pub mod following;
pub mod idempotency;
pub mod imports;
pub mod keys;
pub mod registry;
pub mod retention;
pub mod tiles;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::config::{DatabaseSettings, Secret};

/// Rows as one JSON text, for statements that read a batch with `jsonb_to_recordset`.
pub fn json_text(rows: &impl Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
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

/// The pool, counting the requests that wait for a connection (`/health/detailed`, gauges).
#[derive(Clone, Debug)]
pub struct Pool {
    inner: PgPool,
    max: u32,
    waiters: Arc<AtomicUsize>,
}

/// Decrements the waiter count even when the waiting request is cancelled.
struct WaiterGuard(Arc<AtomicUsize>);

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pool {
    pub fn new(inner: PgPool, max: u32) -> Self {
        Self {
            inner,
            max,
            waiters: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A pooled connection; waits at most the pool's acquire timeout.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _guard = WaiterGuard(Arc::clone(&self.waiters));
        self.inner.acquire().await
    }

    pub fn inner(&self) -> &PgPool {
        &self.inner
    }

    pub fn stats(&self) -> PoolStats {
        let size = self.inner.size();
        let idle = self.inner.num_idle();
        PoolStats {
            size,
            idle,
            in_use: (size as usize).saturating_sub(idle),
            max: self.max,
            waiters: self.waiters.load(Ordering::SeqCst),
        }
    }
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pool that connects lazily: the process starts (and answers probes) without a database,
/// and broken connections are tested and replaced on acquire.
pub fn lazy_pool(url: &Secret, settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.expose().parse()?;
    build_pool(options.application_name("shadowcheck"), settings)
}

/// The API's pools: one for requests, every statement bounded by `statement_timeout_ms`; and a
/// single connection of its own for the readiness probe, so a full pool does not fail it.
pub fn api_pools(
    url: &Secret,
    settings: &DatabaseSettings,
) -> Result<(PgPool, PgPool), sqlx::Error> {
    let options: PgConnectOptions = url.expose().parse()?;
    let options = options.application_name("shadowcheck");
    let requests = match settings.statement_timeout_ms {
        0 => options.clone(),
        ms => options
            .clone()
            .options([("statement_timeout", format!("{ms}ms"))]),
    };
    let probe = options.options([(
        "statement_timeout",
        format!("{}ms", settings.health_timeout_ms),
    )]);
    let probe_settings = DatabaseSettings {
        max_connections: 1,
        min_connections: 0,
        acquire_timeout_ms: settings.health_timeout_ms,
        ..settings.clone()
    };
    Ok((
        build_pool(requests, settings)?,
        build_pool(probe, &probe_settings)?,
    ))
}

fn build_pool(
    options: PgConnectOptions,
    settings: &DatabaseSettings,
) -> Result<PgPool, sqlx::Error> {
    Ok(PgPoolOptions::new()
        .after_connect(|_, _| {
            Box::pin(async {
                // Every new physical connection, including replacements after a database restart.
                metrics::counter!("shadowcheck_db_connections_opened_total").increment(1);
                Ok(())
            })
        })
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        // sqlx's default is 30 s: far too long for a request to wait while the database is down.
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .test_before_acquire(true)
        .idle_timeout(Some(Duration::from_secs(300)))
        .max_lifetime(Some(Duration::from_secs(1800)))
        .connect_lazy_with(options))
}

/// Runs one database operation inside a `db.query` span (exported as an OTLP span when tracing
/// is on) and records its duration under `shadowcheck_db_query_duration_seconds{query}`.
pub async fn observe<F: std::future::Future>(query: &'static str, operation: F) -> F::Output {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "db.query",
        otel.name = query,
        db.system = "postgresql",
        db.operation = query
    );
    let started = Instant::now();
    let output = operation.instrument(span).await;
    metrics::histogram!("shadowcheck_db_query_duration_seconds", "query" => query)
        .record(started.elapsed().as_secs_f64());
    output
}

/// Round trip to the database, bounded so a silently dropped TCP connection cannot hang a probe.
pub async fn ping(pool: &PgPool, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let probe = observe("ping", sqlx::query("SELECT 1").execute(pool));
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// True when every migration this binary knows has been applied.
pub async fn migrations_current(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> =
        sqlx::query_scalar(r#"SELECT max(version) FROM _sqlx_migrations WHERE success"#)
            .fetch_one(pool)
            .await
            .or_else(|e| match &e {
                // No bookkeeping table yet: nothing applied.
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(None),
                _ => Err(e),
            })?;
    Ok(applied.unwrap_or(0) >= latest)
}

/// A statement cancelled by `statement_timeout` (SQLSTATE 57014).
pub fn is_statement_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("57014"))
}

/// Classifies errors that mean "the database is unavailable right now" (retry later) as opposed
/// to a bug or bad data.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // 08: connection exception; 57P0x: shutdown in progress; 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }
        sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}
