//! Several hosts for the primary (libpq's multi-host URL, as a `pg_auto_failover` formation
//! gives it): connections go to the one that takes writes, and when it stops answering or is
//! demoted the pools are pointed at whichever host takes writes now. sqlx connects to one host
//! only, so the choice is ours: a watcher probes the current host every second (and at once
//! when a request found the database gone) and re-points the pools' connect options.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::Notify;

/// The hosts of one URL, `postgres://user@h1:p1,h2:p2/db?target_session_attrs=read-write`, as
/// one URL each (the attribute is ours to honour, so it is dropped).
pub fn split_hosts(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_owned()];
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let tail = drop_param(tail, "target_session_attrs");
    hosts
        .split(',')
        .map(|host| format!("{scheme}://{userinfo}{host}{tail}"))
        .collect()
}

fn drop_param(tail: &str, name: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(name))
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// True when the server refuses writes: a standby, or a freshly promoted one that
/// pg_auto_failover still holds read-only (`default_transaction_read_only`) until the old
/// primary is known to be gone. The question libpq's `target_session_attrs=read-write` asks.
pub const READ_ONLY_SQL: &str = "SELECT current_setting('transaction_read_only') = 'on'";

/// The primary's candidate hosts and which one the pools use.
#[derive(Debug)]
pub struct Failover {
    /// Per host: the request pool's and the probe pool's options.
    hosts: Vec<(PgConnectOptions, PgConnectOptions)>,
    current: AtomicUsize,
    wake: Notify,
}

impl Failover {
    pub fn new(hosts: Vec<(PgConnectOptions, PgConnectOptions)>) -> Self {
        Self {
            hosts,
            current: AtomicUsize::new(0),
            wake: Notify::new(),
        }
    }

    /// Which host takes the writes now, and how many there are, for `/health/detailed`.
    pub fn report(&self) -> serde_json::Value {
        let current = self.current.load(Ordering::SeqCst);
        serde_json::json!({
            "current": describe(&self.hosts[current].0),
            "hosts": self.hosts.iter().map(|h| describe(&h.0)).collect::<Vec<_>>(),
        })
    }

    /// A request found the database unavailable: look again now rather than at the next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether `options` reaches a server that takes writes, within `timeout`.
    /// Boxed as `Send`: the executor's higher-ranked lifetimes otherwise defeat `tokio::spawn`.
    fn writable(
        options: PgConnectOptions,
        timeout: Duration,
    ) -> futures_util::future::BoxFuture<'static, bool> {
        Box::pin(async move {
            let probe = async {
                let mut conn = PgConnection::connect_with(&options).await?;
                let read_only = sqlx::Executor::fetch_one(&mut conn, sqlx::raw_sql(READ_ONLY_SQL))
                    .await?
                    .try_get::<bool, _>(0)?;
                let _ = conn.close().await;
                Ok::<_, sqlx::Error>(!read_only)
            };
            matches!(tokio::time::timeout(timeout, probe).await, Ok(Ok(true)))
        })
    }

    /// Keeps the pools on the writable host until `shutdown`.
    pub async fn watch(
        self: Arc<Self>,
        requests: PgPool,
        probe: PgPool,
        timeout: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let current = self.current.load(Ordering::SeqCst);
            if !Self::writable(self.hosts[current].0.clone(), timeout).await {
                let n = self.hosts.len();
                for i in (1..=n).map(|k| (current + k) % n) {
                    if Self::writable(self.hosts[i].0.clone(), timeout).await {
                        if i != current {
                            self.current.store(i, Ordering::SeqCst);
                            requests.set_connect_options(self.hosts[i].0.clone());
                            probe.set_connect_options(self.hosts[i].1.clone());
                            metrics::counter!("shadowcheck_db_primary_switches_total").increment(1);
                            tracing::warn!(
                                from = %describe(&self.hosts[current].0),
                                to = %describe(&self.hosts[i].0),
                                "the primary moved; new connections go to the new one"
                            );
                        }
                        break;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = self.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

fn describe(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_host_urls_become_one_url_per_host() {
        assert_eq!(
            split_hosts(
                "postgres://u:p@a:5432,b:5433/db?target_session_attrs=read-write&sslmode=disable"
            ),
            vec![
                "postgres://u:p@a:5432/db?sslmode=disable",
                "postgres://u:p@b:5433/db?sslmode=disable"
            ]
        );
        assert_eq!(
            split_hosts("postgresql://a,b/db?target_session_attrs=read-write"),
            vec!["postgresql://a/db", "postgresql://b/db"]
        );
        assert_eq!(
            split_hosts("postgres://u@h:1/db"),
            vec!["postgres://u@h:1/db"]
        );
    }
}
