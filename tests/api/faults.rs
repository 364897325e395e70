//! Real faults against the real binary: PostgreSQL stopped with `pg_ctl stop -m fast` and
//! started again, SIGTERM and SIGKILL during continuous ingest. Each test owns its cluster.
//! Every loop here is bounded in count and time.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shadowcheck::db::embedded::{EmbeddedPostgres, DATABASE};
use tokio_util::sync::CancellationToken;

use crate::helpers::{shared_temp_dir, ServeProcess};
use crate::probes::wait_until;

/// A PostgreSQL cluster of the test's own, so stopping it harms no other test.
struct OwnCluster {
    pg: Option<EmbeddedPostgres>,
    dir: std::path::PathBuf,
}

impl OwnCluster {
    async fn start() -> Self {
        let dir = shared_temp_dir("shadowcheck-fault-pg-");
        let data = dir.join("data");
        let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&data))
            .await
            .expect("join")
            .expect("start cluster");
        Self { pg: Some(pg), dir }
    }

    fn url(&self) -> String {
        self.pg
            .as_ref()
            .expect("cluster")
            .url(DATABASE)
            .expose()
            .to_owned()
    }

    async fn stop(&mut self) {
        let mut pg = self.pg.take().expect("cluster");
        let pg = tokio::task::spawn_blocking(move || {
            pg.stop().expect("pg_ctl stop -m fast");
            pg
        })
        .await
        .expect("join");
        self.pg = Some(pg);
    }

    async fn restart(&mut self) {
        let mut pg = self.pg.take().expect("cluster");
        let pg = tokio::task::spawn_blocking(move || {
            pg.restart().expect("restart cluster");
            pg
        })
        .await
        .expect("join");
        self.pg = Some(pg);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        drop(self.pg.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", url.to_owned()),
        ("SHADOWCHECK__DATABASE__ACQUIRE_TIMEOUT_MS", "2000".into()),
        ("SHADOWCHECK__DATABASE__HEALTH_TIMEOUT_MS", "500".into()),
        ("SHADOWCHECK__DATABASE__RETRY_INITIAL_MS", "100".into()),
        ("SHADOWCHECK__DATABASE__RETRY_MAX_MS", "1000".into()),
        ("SHADOWCHECK__SERVER__DRAIN_TIMEOUT_SECS", "10".into()),
    ]
}

fn start_serve(url: &str) -> ServeProcess {
    let env = serve_env(url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServeProcess::start(&env, None)
}

#[derive(Debug, Clone)]
struct Outcome {
    /// HTTP status, or None when the connection failed.
    status: Option<u16>,
    elapsed: Duration,
    bssids: Vec<String>,
    at: Instant,
}

#[derive(Default)]
struct Ledger {
    outcomes: Mutex<Vec<Outcome>>,
}

impl Ledger {
    fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes
            .lock()
            .expect("lock")
            .iter()
            .filter(|o| pred(o))
            .count()
    }
    fn acknowledged(&self) -> Vec<String> {
        self.outcomes
            .lock()
            .expect("lock")
            .iter()
            .filter(|o| o.status.is_some_and(|s| (200..300).contains(&s)))
            .flat_map(|o| o.bssids.clone())
            .collect()
    }
    fn all(&self) -> Vec<Outcome> {
        self.outcomes.lock().expect("lock").clone()
    }
}

static NEXT_MAC: AtomicU64 = AtomicU64::new(1);

/// Posts batches of 20 wifi detections with never-repeated BSSIDs until cancelled, at most
/// 3000 requests or 90 s.
fn ingest_loop(
    addr: String,
    ledger: Arc<Ledger>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = crate::helpers::client_with_timeout(Some(Duration::from_secs(20)));
        let started = Instant::now();
        for _ in 0..3000 {
            if stop.is_cancelled() || started.elapsed() > Duration::from_secs(90) {
                break;
            }
            let bssids: Vec<String> = (0..20)
                .map(|_| {
                    let n = NEXT_MAC.fetch_add(1, Ordering::SeqCst);
                    let b = n.to_be_bytes();
                    format!(
                        "0a:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                        b[3], b[4], b[5], b[6], b[7]
                    )
                })
                .collect();
            let batch: Vec<Value> = bssids
                .iter()
                .map(|b| json!({"detected_at": "2026-11-01T10:00:00Z", "latitude": 52.5, "longitude": 13.4,
                                "signal_type": "wifi", "bssid": b}))
                .collect();
            let sent = Instant::now();
            let result = client
                .post(format!("http://{addr}/api/v1/detections"))
                .json(&batch)
                .send()
                .await;
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            if let Ok(resp) = result {
                // Drain the body so the connection is reused.
                let _ = resp.bytes().await;
            }
            ledger.outcomes.lock().expect("lock").push(Outcome {
                status,
                elapsed: sent.elapsed(),
                bssids,
                at: Instant::now(),
            });
            if status.is_none() || status == Some(503) {
                // Do not spin on a refused connection.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
}

/// Every acknowledged detection is in the database, exactly once.
async fn assert_all_acknowledged_stored(url: &str, ledger: &Ledger) {
    let acked = ledger.acknowledged();
    assert!(!acked.is_empty(), "nothing was acknowledged");
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "a BSSID was acknowledged twice");
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sigint.signal_detections WHERE bssid::text = ANY($1)",
    )
    .bind(&acked)
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(
        stored as usize,
        acked.len(),
        "acknowledged detections missing"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starts_without_database_then_becomes_ready() {
    let mut cluster = OwnCluster::start().await;
    let url = cluster.url();
    cluster.stop().await;
    let serve = start_serve(&url);
    let client = crate::helpers::client();

    assert_eq!(
        client
            .get(serve.url("/api/v1/health/live"))
            .send()
            .await
            .expect("live")
            .status(),
        200
    );
    let ready = client
        .get(serve.url("/api/v1/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["checks"]["database"]["status"], "error");
    assert_eq!(
        client
            .get(serve.url("/api/v1/health/startup"))
            .send()
            .await
            .expect("startup")
            .status(),
        503
    );
    let post = client
        .post(serve.url("/api/v1/detections"))
        .json(&json!({"detected_at": "2026-11-01T10:00:00Z", "latitude": 1, "longitude": 1, "signal_type": "ble", "bt_address": "0c:00:00:00:00:01"}))
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 503);
    assert!(post.headers().get("retry-after").is_some());

    cluster.restart().await;
    serve
        .wait_status(
            &client,
            "/api/v1/health/ready",
            200,
            Duration::from_secs(15),
        )
        .await;
    let post = client
        .post(serve.url("/api/v1/detections"))
        .json(&json!({"detected_at": "2026-11-01T10:00:00Z", "latitude": 1, "longitude": 1, "signal_type": "ble", "bt_address": "0c:00:00:00:00:01"}))
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_database_restart_under_continuous_ingest_loses_nothing() {
    let mut cluster = OwnCluster::start().await;
    let url = cluster.url();
    let mut serve = start_serve(&url);
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;

    let ledger = Arc::new(Ledger::default());
    let stop = CancellationToken::new();
    let loops: Vec<_> = (0..2)
        .map(|_| ingest_loop(serve.addr.clone(), Arc::clone(&ledger), stop.clone()))
        .collect();
    wait_until("ingest before the outage", Duration::from_secs(30), || {
        ledger.count(|o| o.status == Some(201)) >= 10
    })
    .await;

    cluster.stop().await;
    let outage_began = Instant::now();
    wait_until("503s during the outage", Duration::from_secs(30), || {
        ledger.count(|o| o.status == Some(503) && o.at > outage_began) >= 3
    })
    .await;
    let ready = client
        .get(serve.url("/api/v1/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503, "readiness during the outage");

    cluster.restart().await;
    let back = Instant::now();
    wait_until("ingest after the restart", Duration::from_secs(30), || {
        ledger.count(|o| o.status == Some(201) && o.at > back) >= 10
    })
    .await;
    stop.cancel();
    for l in loops {
        l.await.expect("loop");
    }

    let outcomes = ledger.all();
    for o in &outcomes {
        assert!(
            matches!(o.status, Some(201) | Some(503)),
            "unexpected outcome {:?}",
            o.status
        );
        // Fail fast: bounded by the 2 s acquire timeout, never a hang.
        assert!(
            o.elapsed < Duration::from_secs(10),
            "a request took {:?}",
            o.elapsed
        );
    }
    assert_all_acknowledged_stored(&url, &ledger).await;
    assert_eq!(serve.terminate().code(), Some(0));
}

type Running = (
    OwnCluster,
    String,
    ServeProcess,
    Arc<Ledger>,
    CancellationToken,
    Vec<tokio::task::JoinHandle<()>>,
);

/// A server on a cluster of its own, with three clients ingesting until at least 20 batches
/// were acknowledged, ready for `signal` to be sent.
async fn under_continuous_ingest(signal: &str) -> Running {
    let cluster = OwnCluster::start().await;
    let url = cluster.url();
    let serve = start_serve(&url);
    serve.wait_ready(&crate::helpers::client()).await;
    let ledger = Arc::new(Ledger::default());
    let stop = CancellationToken::new();
    let loops: Vec<_> = (0..3)
        .map(|_| ingest_loop(serve.addr.clone(), Arc::clone(&ledger), stop.clone()))
        .collect();
    wait_until(
        &format!("ingest before {signal}"),
        Duration::from_secs(30),
        || ledger.count(|o| o.status == Some(201)) >= 20,
    )
    .await;
    (cluster, url, serve, ledger, stop, loops)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_sigterm_during_continuous_ingest_drains_to_a_clean_exit() {
    let (_cluster, url, mut serve, ledger, stop, loops) = under_continuous_ingest("SIGTERM").await;

    let sent = Instant::now();
    serve.signal(libc::SIGTERM);
    let status = tokio::task::block_in_place(|| serve.wait_exit(Duration::from_secs(20)));
    assert_eq!(status.code(), Some(0), "graceful exit code");
    assert!(
        sent.elapsed() < Duration::from_secs(12),
        "exit took {:?} (drain timeout 10 s)",
        sent.elapsed()
    );
    stop.cancel();
    for l in loops {
        l.await.expect("loop");
    }
    for o in ledger.all() {
        assert!(
            matches!(o.status, Some(201) | Some(503) | None),
            "unexpected outcome {:?}",
            o.status
        );
    }
    assert_all_acknowledged_stored(&url, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_sigkill_during_continuous_ingest_keeps_every_acknowledged_row() {
    let (_cluster, url, mut serve, ledger, stop, loops) = under_continuous_ingest("SIGKILL").await;

    serve.signal(libc::SIGKILL);
    let status = tokio::task::block_in_place(|| serve.wait_exit(Duration::from_secs(10)));
    assert_eq!(status.code(), None, "killed by a signal");
    stop.cancel();
    for l in loops {
        l.await.expect("loop");
    }
    assert_all_acknowledged_stored(&url, &ledger).await;
}
