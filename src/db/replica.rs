//! Reads from a streaming replica, with the primary as the fallback: the replica's pool, a
//! probe that measures its replay lag, and the choice each read makes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::{PgPool, Row};

use super::{Conn, Pool, PoolStats};

/// What the last probe (or a failed read) found.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Not probed yet: reads stay on the primary until the first probe answers.
    Unknown,
    Ok,
    /// Replaying more than `database.read_max_lag_secs` behind.
    Lagging,
    Down,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplicaStatus {
    pub status: Condition,
    /// Seconds since the last transaction the replica replayed was committed on the primary;
    /// 0 when it has replayed everything it received.
    pub lag_seconds: Option<f64>,
    /// False when the URL names a server that is not in recovery (a primary): no lag then.
    pub in_recovery: Option<bool>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    #[serde(skip)]
    checked: Option<Instant>,
}

/// Where one read went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Replica,
    Primary,
}

pub struct Replica {
    pool: Pool,
    probe: PgPool,
    max_lag: Option<Duration>,
    status: Mutex<ReplicaStatus>,
    /// Reads served here, and reads sent to the primary instead, since start.
    served: AtomicU64,
    fallbacks: AtomicU64,
}

/// The replica as `/health/detailed` shows it.
#[derive(Debug, Serialize)]
pub struct ReplicaReport {
    #[serde(flatten)]
    pub status: ReplicaStatus,
    pub reads_served: u64,
    pub reads_sent_to_primary: u64,
    pub pool: PoolStats,
}

/// Also reads the migration ledger: a server without ShadowCheck's schema (a `read_url` pointing
/// at the wrong database) fails the probe, and one whose schema is older than this release needs
/// is not used until it has replayed the migration.
const LAG_SQL: &str = r#"
SELECT pg_is_in_recovery() AS in_recovery,
       CASE WHEN NOT pg_is_in_recovery()
                 OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS lag,
       (SELECT max(version) FROM _sqlx_migrations WHERE success)::int8 AS schema_version
"#;

impl Replica {
    pub fn new(pool: Pool, probe: PgPool, max_lag_secs: u64) -> Self {
        Self {
            pool,
            probe,
            max_lag: (max_lag_secs > 0).then(|| Duration::from_secs(max_lag_secs)),
            status: Mutex::new(ReplicaStatus {
                status: Condition::Unknown,
                lag_seconds: None,
                in_recovery: None,
                latency_ms: None,
                error: None,
                checked: None,
            }),
            served: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    pub fn report(&self) -> ReplicaReport {
        ReplicaReport {
            status: self.status(),
            reads_served: self.served.load(Ordering::Relaxed),
            reads_sent_to_primary: self.fallbacks.load(Ordering::Relaxed),
            pool: self.pool.stats(),
        }
    }

    pub fn status(&self) -> ReplicaStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Probes the replica once: reachable, in recovery, how far behind. Bounded by `timeout`.
    pub async fn check(&self, timeout: Duration) {
        let started = Instant::now();
        // The simple protocol (no parameters): one message, fine through a pooler.
        let probe = super::observe("replica_lag", async {
            let row = sqlx::raw_sql(LAG_SQL).fetch_one(&self.probe).await?;
            Ok::<_, sqlx::Error>((
                row.try_get::<bool, _>(0)?,
                row.try_get::<f64, _>(1)?,
                row.try_get::<Option<i64>, _>(2)?,
            ))
        });
        let needed = super::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let outcome = match tokio::time::timeout(timeout, probe).await {
            Ok(Ok((in_recovery, lag, version))) if version.unwrap_or(0) >= needed => {
                Ok((in_recovery, lag))
            }
            Ok(Ok((_, _, version))) => Err(format!(
                "its ShadowCheck schema is at migration {}, this release needs {needed}",
                version.unwrap_or(0)
            )),
            Ok(Err(e)) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P01") => {
                Err("no ShadowCheck schema there (no migration ledger): is database.read_url a replica of this database?".to_owned())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let before = status.status.clone();
        status.checked = Some(Instant::now());
        match outcome {
            Ok((in_recovery, lag)) => {
                status.in_recovery = Some(in_recovery);
                status.lag_seconds = Some(lag);
                status.latency_ms = Some(super::round_ms(started.elapsed()));
                status.error = None;
                let lagging = self.max_lag.is_some_and(|max| lag > max.as_secs_f64());
                status.status = if lagging {
                    Condition::Lagging
                } else {
                    Condition::Ok
                };
                metrics::gauge!("shadowcheck_db_replica_lag_seconds").set(lag);
                metrics::gauge!("shadowcheck_db_replica_up").set(1.0);
            }
            Err(error) => {
                status.status = Condition::Down;
                status.latency_ms = None;
                status.error = Some(error);
                metrics::gauge!("shadowcheck_db_replica_up").set(0.0);
            }
        }
        if status.status != before {
            log_change(&before, &status);
        }
    }

    /// A read that failed on the replica for want of it: reads leave it until a probe answers.
    fn mark_down(&self, error: &sqlx::Error) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.status != Condition::Down {
            let before = status.status.clone();
            status.status = Condition::Down;
            status.error = Some(error.to_string());
            metrics::gauge!("shadowcheck_db_replica_up").set(0.0);
            log_change(&before, &status);
        }
    }

    fn condition(&self) -> Condition {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .status
            .clone()
    }
}

fn log_change(before: &Condition, now: &ReplicaStatus) {
    match now.status {
        Condition::Ok => tracing::info!(
            was = ?before,
            lag_seconds = now.lag_seconds,
            "read replica usable; reads go to it"
        ),
        _ => tracing::warn!(
            was = ?before,
            now = ?now.status,
            lag_seconds = now.lag_seconds,
            error = now.error.as_deref(),
            "read replica not usable; reads go to the primary"
        ),
    }
}

/// Where reads go: the replica while it is usable, else the primary.
#[derive(Clone)]
pub struct Reads {
    primary: Pool,
    replica: Option<Arc<Replica>>,
}

impl Reads {
    pub fn new(primary: Pool, replica: Option<Arc<Replica>>) -> Self {
        Self { primary, replica }
    }

    pub fn replica(&self) -> Option<&Arc<Replica>> {
        self.replica.as_ref()
    }

    /// A checkout for reads. A replica that cannot be reached is marked down and the read goes
    /// to the primary at once; other errors (the statement's own) are the caller's.
    pub async fn acquire(&self) -> Result<(Conn, Source), sqlx::Error> {
        if let Some(replica) = &self.replica {
            let reason = match replica.condition() {
                Condition::Ok => match replica.pool.acquire().await {
                    Ok(conn) => {
                        replica.served.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("shadowcheck_db_reads_total", "pool" => "replica")
                            .increment(1);
                        return Ok((conn, Source::Replica));
                    }
                    Err(e) if super::is_unavailable(&e) => {
                        replica.mark_down(&e);
                        "error"
                    }
                    Err(e) => return Err(e),
                },
                Condition::Lagging => "lagging",
                Condition::Down => "down",
                Condition::Unknown => "unknown",
            };
            replica.fallbacks.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("shadowcheck_db_read_fallbacks_total", "reason" => reason)
                .increment(1);
        }
        let conn = self.primary.acquire().await?;
        metrics::counter!("shadowcheck_db_reads_total", "pool" => "primary").increment(1);
        Ok((conn, Source::Primary))
    }
}

/// Probes the replica every `interval` until `shutdown`.
pub async fn watch(
    replica: Arc<Replica>,
    interval: Duration,
    timeout: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        replica.check(timeout).await;
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
