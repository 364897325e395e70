//! Everything that talks to PostgreSQL: the pool, migrations, the embedded cluster and the SQL.

pub mod detections;
pub mod devices;
pub mod embedded;
pub mod events;
pub mod failover;
pub mod filters;
pub mod following;
pub mod idempotency;
pub mod imports;
pub mod keys;
pub mod notes;
pub mod positioning;
pub mod registry;
pub mod replica;
pub mod retention;
pub mod rogue;
pub mod tiles;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

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
    /// Behind a transaction-mode pooler: every checkout is a transaction (see `Conn`).
    pinned: Option<Pinning>,
    /// Several candidate hosts: told when a checkout finds the database gone.
    failover: Option<Arc<failover::Failover>>,
}

/// What a transaction-mode pooler needs from each checkout.
#[derive(Clone, Debug)]
struct Pinning {
    /// `SET LOCAL statement_timeout = …`, as the pooler refuses it as a start-up parameter.
    timeout: Option<String>,
}

/// One checkout for reads. Directly connected it is the pooled connection; behind a
/// transaction-mode pooler it is a transaction, because sqlx prepares a statement and binds it
/// in two exchanges each ended by `Sync`, and between them the pooler may hand our server
/// connection to someone else: only an open transaction keeps it ours. Dropping it rolls the
/// transaction back (sqlx flushes that when the connection returns to the pool), so writes go
/// through `Pool::begin` and an explicit commit instead, or `Conn::commit`.
pub enum Conn {
    Direct(PoolConnection<Postgres>),
    Pinned(Transaction<'static, Postgres>),
}

impl std::ops::Deref for Conn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        match self {
            Conn::Direct(c) => c,
            Conn::Pinned(t) => t,
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Conn::Direct(c) => c,
            Conn::Pinned(t) => t,
        }
    }
}

impl Conn {
    /// Closes the connection instead of returning it to the pool, for a checkout whose query
    /// may still be sending rows (an export whose reader left): draining them would hold a
    /// pooled connection for as long as the query runs. Through a pooler the transaction is
    /// rolled back instead, after the rows drain (sqlx does not let go of a transaction's
    /// connection).
    pub fn discard(self) {
        match self {
            Conn::Direct(c) => drop(c.detach()),
            Conn::Pinned(t) => drop(t),
        }
    }

    /// Makes what was written on this checkout durable (a no-op when connected directly,
    /// where each statement committed on its own).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Direct(_) => Ok(()),
            Conn::Pinned(t) => t.commit().await,
        }
    }
}

/// Decrements the waiter count even when the waiting request is cancelled.
struct WaiterGuard(Arc<AtomicUsize>);

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pool {
    /// `settings` says whether the URL is a transaction-mode pooler and the statement timeout.
    pub fn new(inner: PgPool, settings: &DatabaseSettings) -> Self {
        let pinned = settings.transaction_pooler.then(|| Pinning {
            timeout: (settings.statement_timeout_ms > 0).then(|| {
                format!(
                    "SET LOCAL statement_timeout = {}",
                    settings.statement_timeout_ms
                )
            }),
        });
        Self {
            inner,
            max: settings.max_connections,
            waiters: Arc::new(AtomicUsize::new(0)),
            pinned,
            failover: None,
        }
    }

    /// Wakes the multi-host watcher when a checkout fails for want of a database.
    fn seen<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if let (Err(e), Some(failover)) = (&result, &self.failover) {
            if is_unavailable(e) {
                failover.wake();
            }
        }
        result
    }

    /// A checkout for reads (see `Conn`); waits at most the pool's acquire timeout.
    pub async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        if self.pinned.is_some() {
            return Ok(Conn::Pinned(self.begin().await?));
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _guard = WaiterGuard(Arc::clone(&self.waiters));
        Ok(Conn::Direct(self.seen(self.inner.acquire().await)?))
    }

    /// A transaction on its own connection, for writes; commit it explicitly.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let guard = WaiterGuard(Arc::clone(&self.waiters));
        let mut tx = self.seen(self.inner.begin().await)?;
        drop(guard);
        if let Some(Pinning { timeout: Some(set) }) = &self.pinned {
            sqlx::query(set).execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// Behind a transaction-mode pooler (no session state survives a transaction).
    pub fn is_pinned(&self) -> bool {
        self.pinned.is_some()
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

/// Applies pending migrations in one transaction that holds a transaction-level advisory lock,
/// so it works the same directly and through a transaction-mode pooler (sqlx's own lock is a
/// session lock, which a pooler would leave on some other client's server connection); no
/// statement timeout applies, as a migration may rightly take longer than any request.
/// Either every pending migration lands or none does. Applied migrations are checked against
/// their files (the `migrate` subcommand).
pub async fn migrate(pool: &Pool) -> Result<(), sqlx::migrate::MigrateError> {
    apply_migrations(pool, false).await
}

/// As `migrate`, but with nothing pending it only reads the ledger: no DDL, no lock. So `serve`,
/// `import` and `keys` work as a role that may not alter the schema (the API's in the compose
/// stack) once the schema owner has migrated, and fail clearly when a migration is pending.
pub async fn migrate_if_pending(pool: &Pool) -> Result<(), sqlx::migrate::MigrateError> {
    apply_migrations(pool, true).await
}

async fn apply_migrations(
    pool: &Pool,
    only_when_pending: bool,
) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_locking(false);
    let mut tx = pool.begin().await?;
    if only_when_pending {
        // Inside the transaction: through a pooler, one server connection answers both reads.
        let ledger: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await?;
        let applied: Option<i64> = if ledger {
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut *tx)
                .await?
        } else {
            None
        };
        let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        if applied.unwrap_or(0) >= latest {
            tx.commit().await?;
            return Ok(());
        }
    }
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('shadowcheck.migrate'))")
        .execute(&mut *tx)
        .await?;
    migrator.run_direct(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A pool that connects lazily: the process starts (and answers probes) without a database,
/// and broken connections are tested and replaced on acquire.
pub fn lazy_pool(url: &Secret, settings: &DatabaseSettings) -> Result<Pool, sqlx::Error> {
    Ok(api_pools(url, settings)?.requests)
}

/// The URL's options as this service uses them. Behind a transaction-mode pooler, no statement
/// cache (a prepared statement lives on one server connection, which is ours for one
/// transaction only) and no `extra_float_digits` start-up parameter (PgBouncer refuses unknown
/// ones; PostgreSQL 12+ prints floats exactly without it).
/// One per host of a multi-host URL.
fn connect_options(
    url: &Secret,
    settings: &DatabaseSettings,
) -> Result<Vec<PgConnectOptions>, sqlx::Error> {
    failover::split_hosts(url.expose())
        .iter()
        .map(|one| {
            let options: PgConnectOptions = one.parse()?;
            let options = options.application_name("shadowcheck");
            Ok(if settings.transaction_pooler {
                options.statement_cache_capacity(0).extra_float_digits(None)
            } else {
                options
            })
        })
        .collect()
}

/// The API's pools for one URL (see `api_pools`).
pub struct ApiPools {
    pub requests: Pool,
    pub probe: PgPool,
    /// Present when the URL names several hosts: run its `watch`.
    pub failover: Option<Arc<failover::Failover>>,
}

/// The API's pools: one for requests, every statement bounded by `statement_timeout_ms`; and a
/// single connection of its own for the readiness probe, so a full pool does not fail it.
/// A pooler gets the timeouts per transaction (`Pool::begin`); the probe's `SELECT 1` needs none.
pub fn api_pools(url: &Secret, settings: &DatabaseSettings) -> Result<ApiPools, sqlx::Error> {
    let hosts: Vec<(PgConnectOptions, PgConnectOptions)> = connect_options(url, settings)?
        .into_iter()
        .map(|options| {
            if settings.transaction_pooler {
                (options.clone(), options)
            } else {
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
                (requests, probe)
            }
        })
        .collect();
    let (requests, probe) = hosts
        .first()
        .cloned()
        .ok_or_else(|| sqlx::Error::Configuration("the URL names no host".into()))?;
    let probe_settings = DatabaseSettings {
        max_connections: 1,
        min_connections: 0,
        acquire_timeout_ms: settings.health_timeout_ms,
        ..settings.clone()
    };
    let multi_host = hosts.len() > 1;
    let failover = multi_host.then(|| Arc::new(failover::Failover::new(hosts)));
    let mut pool = Pool::new(build_pool(requests, settings, multi_host)?, settings);
    pool.failover = failover.clone();
    Ok(ApiPools {
        requests: pool,
        probe: build_pool(probe, &probe_settings, multi_host)?,
        failover,
    })
}

/// `multi_host`: a pooled connection is checked to be on a server that takes writes before
/// use (a demoted primary stays reachable, read-only) instead of merely pinged.
fn build_pool(
    options: PgConnectOptions,
    settings: &DatabaseSettings,
    multi_host: bool,
) -> Result<PgPool, sqlx::Error> {
    let pool = PgPoolOptions::new();
    let pool = if multi_host {
        pool.test_before_acquire(false).before_acquire(|conn, _| {
            Box::pin(async move {
                let row =
                    sqlx::Executor::fetch_one(conn, sqlx::raw_sql(failover::READ_ONLY_SQL)).await?;
                Ok(!sqlx::Row::try_get::<bool, _>(&row, 0)?)
            })
        })
    } else {
        pool.test_before_acquire(true)
    };
    Ok(pool
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

/// Milliseconds with two decimals, for latencies in health answers.
pub fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// Round trip to the database, bounded so a silently dropped TCP connection cannot hang a probe.
pub async fn ping(pool: &PgPool, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    // The simple protocol: one message, so it works through a transaction-mode pooler too.
    let probe = observe("ping", sqlx::raw_sql("SELECT 1").execute(pool));
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// True when every migration this binary knows has been applied.
pub async fn migrations_current(pool: &Pool) -> Result<bool, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> =
        sqlx::query_scalar(r#"SELECT max(version) FROM _sqlx_migrations WHERE success"#)
            .fetch_one(&mut *conn)
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
            // 08: connection exception; 57P0x: shutdown in progress; 53300: too many connections;
            // 25006: a write reached a server that is (now) read-only, a demoted primary.
            code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "25006"
        }
        sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}
