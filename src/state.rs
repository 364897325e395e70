//! What every request handler can reach: settings, lifecycle, auth, the ingest service and the
//! database pool with its health cache. Below both the wiring (`app`) and the handlers (`http`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::auth::{Authenticator, ClientLimiter};
use crate::config::Settings;
use crate::db::{self, PoolStats};
use crate::error::{ApiError, ApiResult};
use crate::ingest::Ingest;
use crate::lifecycle::Lifecycle;
use crate::telemetry::Exporters;

/// Admission for large bodies: at most `max_large_bodies` requests hold one (read, parsed and
/// stored) at a time; others wait for a turn, as the body's bytes and its rows cost memory.
#[derive(Clone)]
pub struct LargeBodies {
    permits: Arc<Semaphore>,
    threshold: usize,
    /// Longest wait for a turn: half the request time limit, so the answer is a 503 to retry,
    /// not a request timeout.
    wait: Duration,
}

/// A large body's turn; held until its rows are stored.
pub type Turn = Option<OwnedSemaphorePermit>;

impl LargeBodies {
    pub fn new(settings: &crate::config::ServerSettings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.max_large_bodies.max(1))),
            threshold: settings.large_body_bytes,
            wait: Duration::from_secs((settings.request_timeout_secs / 2).max(1)),
        }
    }

    /// Sizes above this need a turn.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// A turn when `size` is large and `turn` holds none yet.
    pub(crate) async fn admit(&self, size: usize, turn: &mut Turn) -> ApiResult<()> {
        if size <= self.threshold || turn.is_some() {
            return Ok(());
        }
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| ApiError::Overloaded {
                detail: "too many large request bodies are being handled; retry shortly".into(),
                retry_after_secs: 5,
            })?
            .map_err(|_| ApiError::Internal("the large-body gate is closed".into()))?;
        *turn = Some(permit);
        Ok(())
    }
}

type CachedHealth = Option<(Instant, Result<Duration, String>)>;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub lifecycle: Arc<Lifecycle>,
    pub exporters: Arc<Exporters>,
    pub auth: Arc<Authenticator>,
    pub client_limiter: Option<Arc<ClientLimiter>>,
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Turns for large request bodies (see `server.max_large_bodies`).
    pub large_bodies: LargeBodies,
    /// Built map tiles (see `query::tile_cache`).
    pub tiles: Arc<crate::query::tile_cache::TileCache>,
    /// Whole-table answers kept for a while (`query::summary`): the stats, and the data's
    /// extent for TileJSON and the OGC API.
    pub stats: Arc<crate::query::summary::Summary<db::detections::Stats>>,
    pub extent: Arc<crate::query::summary::Summary<db::tiles::Extent>>,
    /// Turns for streaming exports (see `query.max_concurrent_exports`), and each key's own
    /// (`query.max_exports_per_key`): one reader cannot hold every turn.
    pub exports: Arc<Semaphore>,
    pub exports_per_key: Arc<crate::auth::PerCaller>,
    /// New threats for the open pages' event streams, and the streams' turns.
    pub notify: Arc<crate::notify::Hub>,
    ingest: Ingest,
    pool: db::Pool,
    /// Reads: the replica (`database.read_url`) while usable, else `pool`.
    reads: db::replica::Reads,
    /// The readiness probe's own connection: a full request pool does not fail it.
    probe_pool: PgPool,
    /// Several hosts for the primary (a multi-host URL): which one takes writes.
    pub failover: Option<Arc<db::failover::Failover>>,
    health_cache: Arc<Mutex<CachedHealth>>,
}

impl AppState {
    /// The pools may not be connected yet: handlers get a 503 until the lifecycle says started.
    pub fn new(
        settings: Settings,
        lifecycle: Arc<Lifecycle>,
        pool: db::Pool,
        probe_pool: PgPool,
        replica: Option<Arc<db::replica::Replica>>,
    ) -> Self {
        // Validated at load: every entry parses.
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
        let reads = db::replica::Reads::new(pool.clone(), replica);
        let ingest = Ingest::new(
            pool.clone(),
            Arc::new(settings.privacy.policy()),
            &settings.ingest,
        );
        let tiles = Arc::new(crate::query::tile_cache::TileCache::new(
            settings.map.tile_cache_bytes,
            Duration::from_secs(settings.map.tile_cache_ttl_secs),
            ingest.activity(),
        ));
        let summary_ttl = Duration::from_secs(settings.map.tile_cache_ttl_secs);
        Self {
            stats: Arc::new(crate::query::summary::Summary::new(
                summary_ttl,
                ingest.activity(),
            )),
            extent: Arc::new(crate::query::summary::Summary::new(
                summary_ttl,
                ingest.activity(),
            )),
            tiles,
            exports: Arc::new(Semaphore::new(settings.query.max_concurrent_exports.max(1))),
            notify: Arc::new(crate::notify::Hub::new(&settings.notify)),
            exports_per_key: Arc::new(crate::auth::PerCaller::new(
                settings.query.max_exports_per_key,
            )),
            auth: Arc::new(Authenticator::new(
                &settings.auth,
                &settings.rate_limit,
                settings.database.connections_per_key(),
            )),
            client_limiter: ClientLimiter::new(&settings.rate_limit),
            trusted_proxies: Arc::new(trusted_proxies),
            large_bodies: LargeBodies::new(&settings.server),
            settings: Arc::new(settings),
            lifecycle,
            exporters: Arc::default(),
            ingest,
            pool,
            reads,
            probe_pool,
            failover: None,
            health_cache: Arc::new(Mutex::new(None)),
        }
    }

    fn started(&self) -> Result<(), ApiError> {
        if self.lifecycle.is_started() {
            Ok(())
        } else {
            Err(ApiError::Unavailable {
                detail: "the service is starting and has not reached its database yet".into(),
                retry_after_secs: 2,
            })
        }
    }

    /// The ingest service, once start-up has connected and migrated; before that a 503.
    /// When this process last committed detections (for the registry updater).
    pub fn ingest_activity(&self) -> Arc<crate::ingest::IngestActivity> {
        self.ingest.activity()
    }

    pub fn ingest(&self) -> Result<&Ingest, ApiError> {
        self.started()?;
        Ok(&self.ingest)
    }

    /// The primary's pool (for code that manages its own connections), once started.
    pub fn database(&self) -> Result<&db::Pool, ApiError> {
        self.started()?;
        Ok(&self.pool)
    }

    /// A checkout for a read that may be a little behind (searches, tiles, OGC API, exports):
    /// the replica while it is usable, else the primary. Waits at most
    /// `database.acquire_timeout_ms`.
    pub async fn read(&self) -> Result<db::Conn, ApiError> {
        self.started()?;
        Ok(self.reads.acquire().await?.0)
    }

    /// A checkout on the primary, for reads that must see this service's own latest writes
    /// (settings an operator just changed). Writes use `begin`.
    pub async fn acquire(&self) -> Result<db::Conn, ApiError> {
        self.started()?;
        Ok(self.pool.acquire().await?)
    }

    /// A transaction on the primary for writes; commit it before answering.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, ApiError> {
        self.started()?;
        Ok(self.pool.begin().await?)
    }

    /// The read replica, when `database.read_url` is set.
    pub fn replica(&self) -> Option<&Arc<db::replica::Replica>> {
        self.reads.replica()
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
        let result = db::ping(&self.probe_pool, timeout).await;
        metrics::gauge!("shadowcheck_db_health").set(if result.is_ok() { 1.0 } else { 0.0 });
        *cache = Some((Instant::now(), result.clone()));
        result
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    pub fn probe_pool(&self) -> &PgPool {
        &self.probe_pool
    }

    pub fn pool(&self) -> &db::Pool {
        &self.pool
    }
}
