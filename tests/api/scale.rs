//! Past one machine, on loopback with the real servers: a primary and a streaming replica made
//! with `pg_basebackup` (reads served by the replica, proved by stopping the primary; a dead
//! replica degrades reads to the primary), and ingest through the Debian PgBouncer in
//! transaction pooling mode. Every server runs as the `postgres` user on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shadowcheck::db::embedded::{self, EmbeddedPostgres};
use sqlx::{Connection, PgConnection};

use crate::helpers::{shadowcheck, shared_temp_dir, ServeProcess, TEST_KEY};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` from the PostgreSQL (or any) binaries, as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

/// `pg_ctl stop -m immediate` on a cluster, ignoring failure (it may be down already).
fn stop_immediately(bin: &Path, dir: &Path) {
    let _ = as_postgres(&bin.join("pg_ctl"))
        .arg("stop")
        .arg("-D")
        .arg(dir)
        .args(["-m", "immediate"])
        .output();
}

fn chown_postgres(path: &Path) {
    if is_root() {
        run(Command::new("chown").arg("postgres:postgres").arg(path));
    }
}

/// A streaming replica of `primary`, made with `pg_basebackup -R` and started on its own port.
struct Standby {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl Standby {
    /// Clones the primary on `primary_port` into `dir` and serves it on `port`.
    fn create(bin: PathBuf, primary_port: u16, password: &str, dir: &Path, port: u16) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).expect("replica dir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        chown_postgres(dir);
        run(as_postgres(&bin.join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "stream", "-R"])
            .args(["-c", "fast"])
            .arg(format!("--port={primary_port}"))
            .arg("-D")
            .arg(dir)
            .env("PGPASSWORD", password));
        let mut standby = Self {
            bin,
            dir: dir.to_owned(),
            port,
            running: false,
        };
        standby.start();
        standby
    }

    fn start(&mut self) {
        run(as_postgres(&self.bin.join("pg_ctl"))
            .arg("start")
            .arg("-D")
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
                self.port
            )));
        self.running = true;
    }

    fn stop(&mut self) {
        if self.running {
            run(as_postgres(&self.bin.join("pg_ctl"))
                .arg("stop")
                .arg("-D")
                .arg(&self.dir)
                .args(["-m", "fast", "-w"]));
            self.running = false;
        }
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        if self.running {
            stop_immediately(&self.bin, &self.dir);
        }
    }
}

/// The same URL on another port.
fn on_port(url: &str, port: u16) -> String {
    let mut parsed = reqwest::Url::parse(url).expect("url");
    parsed.set_port(Some(port)).expect("port");
    parsed.to_string()
}

async fn detailed(client: &reqwest::Client, serve: &ServeProcess) -> Value {
    client
        .get(serve.url("/api/v1/health/detailed"))
        .send()
        .await
        .expect("detailed")
        .json()
        .await
        .expect("json")
}

/// Polls `/health/detailed` until `replica.status` is `want`.
async fn wait_replica(client: &reqwest::Client, serve: &ServeProcess, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = detailed(client, serve).await;
        if body["replica"]["status"] == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "replica never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn detections(prefix: u32, n: u32) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "detected_at": format!("2026-10-01T{:02}:{:02}:{:02}Z", prefix % 24, i / 60, i % 60),
                    "latitude": 48.0 + f64::from(i) * 1e-4,
                    "longitude": 11.0 + f64::from(prefix) * 1e-3,
                    "signal_type": "wifi",
                    "bssid": format!("a4:5c:{:02x}:{:02x}:{:02x}:01", prefix % 256, i / 256, i % 256),
                })
            })
            .collect(),
    )
}

async fn ids(client: &reqwest::Client, serve: &ServeProcess) -> (u16, usize) {
    let resp = client
        .get(serve.url("/api/v1/detections?limit=1000"))
        .bearer_auth(TEST_KEY)
        .send()
        .await
        .expect("get");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        body["features"]
            .as_array()
            .map_or(0, |features| features.len()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_while_it_is_usable() {
    let dir = shared_temp_dir("shadowcheck-replica-");
    let primary_dir = dir.join("primary");
    let mut primary = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&primary_dir))
        .await
        .expect("join")
        .expect("primary");
    let url = primary.url(embedded::DATABASE).expose().to_owned();
    let password = reqwest::Url::parse(&url)
        .expect("url")
        .password()
        .expect("password")
        .to_owned();
    let replica_port = embedded::free_port().expect("port");
    let replica_url = on_port(&url, replica_port);
    let serve = ServeProcess::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("SHADOWCHECK__DATABASE__READ_URL", replica_url.as_str()),
            ("SHADOWCHECK__DATABASE__ACQUIRE_TIMEOUT_MS", "2000"),
        ],
        None,
    );
    let client = crate::helpers::client();
    // Ready on the primary alone: the replica does not exist yet, and reads go to the primary.
    serve.wait_ready(&client).await;
    let body = wait_replica(&client, &serve, "down").await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(ids(&client, &serve).await, (200, 0));

    // The replica, cloned from the migrated primary, on the port the service was given.
    let replica_dir = dir.join("replica");
    let (bin, primary_port) = (primary.bin_dir().to_owned(), primary.port());
    let mut standby = tokio::task::spawn_blocking(move || {
        Standby::create(bin, primary_port, &password, &replica_dir, replica_port)
    })
    .await
    .expect("join");
    let body = wait_replica(&client, &serve, "ok").await;
    assert_eq!(body["replica"]["in_recovery"], true, "{body}");
    assert_eq!(body["status"], "ok", "{body}");

    let stored = client
        .post(serve.url("/api/v1/detections"))
        .bearer_auth(TEST_KEY)
        .json(&detections(1, 40))
        .send()
        .await
        .expect("post");
    assert_eq!(stored.status(), 201);
    // Replayed on the replica (asked directly).
    let mut on_replica = PgConnection::connect(&replica_url)
        .await
        .expect("connect replica");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sigint.signal_detections")
            .fetch_one(&mut on_replica)
            .await
            .expect("count");
        if n == 40 {
            break;
        }
        assert!(Instant::now() < deadline, "replica has {n} of 40 rows");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(on_replica);
    let before = detailed(&client, &serve).await["replica"]["reads_served"]
        .as_u64()
        .expect("reads_served");
    assert_eq!(ids(&client, &serve).await, (200, 40));
    let after = detailed(&client, &serve).await["replica"]["reads_served"]
        .as_u64()
        .expect("reads_served");
    assert!(after > before, "the read did not go to the replica");

    // The proof: with the primary stopped, reads still answer, from the replica.
    let stop = tokio::task::spawn_blocking(move || {
        primary.stop().expect("stop primary");
        primary
    });
    let mut primary = stop.await.expect("join");
    assert_eq!(ids(&client, &serve).await, (200, 40));
    let ogc: Value = client
        .get(serve.url("/ogc/collections/detections/items?limit=100"))
        .bearer_auth(TEST_KEY)
        .send()
        .await
        .expect("ogc")
        .json()
        .await
        .expect("json");
    assert_eq!(ogc["features"].as_array().map(Vec::len), Some(40), "{ogc}");
    // Writes fail fast with a problem, never hang (the client gives up after 15 s).
    let refused = client
        .post(serve.url("/api/v1/detections"))
        .bearer_auth(TEST_KEY)
        .json(&detections(2, 5))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("an answer while the primary is down");
    assert_eq!(refused.status(), 503);
    let ready = client
        .get(serve.url("/api/v1/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["checks"]["database"]["status"], "error", "{ready}");
    assert_eq!(ready["checks"]["replica"]["status"], "ok", "{ready}");

    // Primary back, replica gone: reads degrade to the primary instead of failing.
    primary = tokio::task::spawn_blocking(move || {
        primary.restart().expect("restart primary");
        primary
    })
    .await
    .expect("join");
    serve.wait_ready(&client).await;
    standby.stop();
    for _ in 0..20 {
        assert_eq!(ids(&client, &serve).await, (200, 40));
    }
    let body = wait_replica(&client, &serve, "down").await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["replica"]["reads_sent_to_primary"].as_u64() > Some(0),
        "{body}"
    );
    let metrics = crate::probes::scrape(&serve.metrics_addr).await;
    assert!(
        metrics.contains("shadowcheck_db_read_fallbacks_total{reason=\"down\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("shadowcheck_db_replica_up 0"), "{metrics}");
    drop(serve);
    drop(standby);
    let _ = tokio::task::spawn_blocking(move || drop(primary)).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The Debian PgBouncer in front of one database with the stack's own configuration:
/// transaction pooling, each server connection reset after every transaction (`DISCARD ALL`),
/// so any statement that relied on the session fails here.
struct Bouncer {
    child: std::process::Child,
    port: u16,
    credentials: String,
}

impl Bouncer {
    /// The stack's own `docker/pgbouncer/pgbouncer.ini`, moved onto loopback: the database
    /// behind `database_url`, `pool_size` server connections. `lenient`: also drop the start-up
    /// parameters PgBouncer refuses (`ignore_startup_parameters`), as operators do to let a
    /// driver in.
    fn start(database_url: &str, dir: &Path, pool_size: u32, lenient: bool) -> Self {
        let target = reqwest::Url::parse(database_url).expect("url");
        let port = embedded::free_port().expect("port");
        let user = target.username();
        let password = target.password().unwrap_or_default();
        std::fs::write(
            dir.join("userlist.txt"),
            format!("\"{user}\" \"{password}\"\n"),
        )
        .expect("userlist");
        let mut ini =
            std::fs::read_to_string(crate::helpers::repo("docker/pgbouncer/pgbouncer.ini"))
                .expect("pgbouncer.ini");
        for (from, to) in [
            (
                "shadowcheck = host=postgis port=5432 dbname=shadowcheck".to_owned(),
                format!(
                    "shadowcheck = host=127.0.0.1 port={} dbname={}",
                    target.port().expect("port"),
                    target.path().trim_start_matches('/')
                ),
            ),
            (
                "listen_addr = 0.0.0.0".to_owned(),
                "listen_addr = 127.0.0.1".to_owned(),
            ),
            (
                "listen_port = 6432".to_owned(),
                format!("listen_port = {port}"),
            ),
            (
                "auth_file = /run/secrets/pgbouncer_userlist".to_owned(),
                format!("auth_file = {}/userlist.txt", dir.display()),
            ),
            (
                "default_pool_size = 20".to_owned(),
                format!("default_pool_size = {pool_size}"),
            ),
        ] {
            assert!(ini.contains(&from), "pgbouncer.ini no longer has `{from}`");
            ini = ini.replace(&from, &to);
        }
        ini.push_str(&format!("logfile = {}/pgbouncer.log\n", dir.display()));
        if lenient {
            ini.push_str("ignore_startup_parameters = extra_float_digits, options\n");
        }
        let ini_path = dir.join("pgbouncer.ini");
        std::fs::write(&ini_path, ini).expect("ini");
        // Its log file is written there too.
        chown_postgres(dir);
        let child = as_postgres(Path::new("/usr/sbin/pgbouncer"))
            .arg(&ini_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            port,
            credentials: match target.password() {
                Some(p) => format!("{user}:{p}"),
                None => user.to_owned(),
            },
        }
    }

    /// The same user and password, through the pooler.
    fn url(&self) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/shadowcheck",
            self.credentials, self.port
        )
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // runuser passes the signal on to pgbouncer.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs PgBouncer: feature tool-tests (scripts/test)"
)]
async fn everything_works_through_pgbouncer_in_transaction_mode() {
    // An empty database: the migrations themselves run through the pooler.
    let direct = crate::helpers::empty_database().await;
    let dir = shared_temp_dir("shadowcheck-pgbouncer-");
    let bouncer = Bouncer::start(&direct, &dir, 2, false);
    let pooled = bouncer.url();
    let env = [
        ("DATABASE_URL", pooled.as_str()),
        ("SHADOWCHECK__DATABASE__TRANSACTION_POOLER", "true"),
        ("SHADOWCHECK__DATABASE__MAX_CONNECTIONS", "8"),
        // Six clients may each be exporting at once.
        ("SHADOWCHECK__QUERY__MAX_CONCURRENT_EXPORTS", "6"),
        ("SHADOWCHECK__QUERY__MAX_EXPORTS_PER_KEY", "6"),
    ];
    let serve = ServeProcess::start(&env, None);
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;

    // A key made by the CLI through the pooler, then checked (and touched) by the API.
    let created = shadowcheck()
        .args([
            "keys",
            "create",
            "--name",
            "through-pooler",
            "--scope",
            "ingest,read",
        ])
        .envs(env)
        .output()
        .expect("keys create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8_lossy(&created.stdout).trim().to_owned();

    // Six clients at once, each mixing writes (some idempotent) and reads, over two server
    // connections: the API's connections are multiplexed by the pooler.
    let mut tasks = Vec::new();
    for worker in 0..6u32 {
        let client = client.clone();
        let base = format!("http://{}", serve.addr);
        let key = if worker % 2 == 0 {
            key.clone()
        } else {
            TEST_KEY.to_owned()
        };
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for round in 0..12u32 {
                let mut post = client
                    .post(format!("{base}/api/v1/detections"))
                    .bearer_auth(&key)
                    .json(&detections(worker * 100 + round, 20));
                if round % 2 == 0 {
                    post = post.header("Idempotency-Key", format!("w{worker}-r{round}"));
                }
                let answer = post.send().await.expect("post");
                if answer.status() != 201 {
                    failures.push(format!(
                        "POST {}: {:?}",
                        answer.status(),
                        answer.text().await
                    ));
                }
                for path in [
                    "/api/v1/detections?limit=5",
                    "/api/v1/stats",
                    "/tiles/detections/10/543/355.pbf",
                    "/api/v1/transmitters?limit=5",
                    "/api/v1/detections?f=csv&limit=10",
                    "/ogc/collections/detections/items?limit=5",
                ] {
                    let answer = client
                        .get(format!("{base}{path}"))
                        .bearer_auth(&key)
                        .send()
                        .await
                        .expect("get");
                    if !answer.status().is_success() {
                        failures.push(format!(
                            "GET {path} {}: {:?}",
                            answer.status(),
                            answer.text().await
                        ));
                    }
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.expect("join"));
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // An operator write and its read-back.
    let zone = client
        .post(serve.url("/api/v1/safe-zones"))
        .bearer_auth(TEST_KEY)
        .json(&json!({"name": "home", "latitude": 48.1, "longitude": 11.5, "radius_m": 150}))
        .send()
        .await
        .expect("zone");
    assert_eq!(zone.status(), 201);
    let zones: Value = client
        .get(serve.url("/api/v1/safe-zones"))
        .bearer_auth(TEST_KEY)
        .send()
        .await
        .expect("zones")
        .json()
        .await
        .expect("json");
    assert!(zones.to_string().contains("\"home\""), "{zones}");

    // Everything acknowledged is there, asked of the database directly.
    let mut db = PgConnection::connect(&direct).await.expect("connect");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM sigint.signal_detections")
        .fetch_one(&mut db)
        .await
        .expect("count");
    assert_eq!(stored, 6 * 12 * 20);
    let touched: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT last_used_at FROM sigint.api_keys WHERE name = 'through-pooler'",
    )
    .fetch_one(&mut db)
    .await
    .expect("key");
    assert!(touched.is_some(), "the key's use was not recorded");
    // More client connections than the pooler's two server connections: multiplexed.
    let body = detailed(&client, &serve).await;
    assert!(body["pool"]["size"].as_u64() > Some(2), "{body}");
    let servers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut db)
    .await
    .expect("servers");
    assert!(servers <= 2, "{servers} server connections");
    drop(serve);
    drop(bouncer);
    let _ = std::fs::remove_dir_all(dir);
}

/// The trap, measured: left to itself sqlx prepares a statement and binds it in two exchanges,
/// each ended by `Sync`; PgBouncer gives the server connection back to its pool in between (and
/// resets it), so the bind finds no statement. Even with the start-up parameters let through,
/// reads fail until `database.transaction_pooler` is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs PgBouncer: feature tool-tests (scripts/test)"
)]
async fn without_the_pooler_setting_the_driver_fails_through_pgbouncer() {
    let direct = crate::helpers::fresh_database().await.app_url();
    let dir = shared_temp_dir("shadowcheck-pgbouncer-trap-");
    let bouncer = Bouncer::start(&direct, &dir, 2, true);
    let pooled = bouncer.url();
    let serve = ServeProcess::start(&[("DATABASE_URL", pooled.as_str())], None);
    let client = crate::helpers::client();
    // Migrations (one transaction) and the probe (the simple protocol) work regardless.
    serve.wait_ready(&client).await;
    let answer = client
        .get(serve.url("/api/v1/detections?limit=5"))
        .bearer_auth(TEST_KEY)
        .send()
        .await
        .expect("get");
    let status = answer.status().as_u16();
    let body = answer.text().await.expect("body");
    assert!(status >= 500, "{status}: {body}");
    // The server's log line may reach us a moment after its answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = serve.log_lines().join("\n");
        if logs.contains("prepared statement") && logs.contains("does not exist") {
            break;
        }
        assert!(Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(serve);
    drop(bouncer);
    let _ = std::fs::remove_dir_all(dir);
}

/// A `pg_auto_failover` formation on loopback: a monitor and two Postgres nodes, each run by
/// its own `pg_autoctl run` in a process group of its own (so a node can be killed whole).
struct Formation {
    dir: PathBuf,
    /// The PostgreSQL binaries, first on the keepers' PATH.
    bin: PathBuf,
    path: String,
    monitor_port: u16,
    keepers: Vec<(String, std::process::Child)>,
}

impl Formation {
    fn autoctl(&self) -> Command {
        let mut cmd = as_postgres(Path::new("/usr/bin/pg_autoctl"));
        cmd.env("PATH", &self.path);
        cmd
    }

    fn start_keeper(&mut self, name: &str) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).expect("log");
        let child = self
            .autoctl()
            .args(["run", "--pgdata"])
            .arg(self.dir.join(name))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("pg_autoctl run");
        self.keepers.push((name.to_owned(), child));
    }

    fn new(dir: &Path, bin: &Path) -> Self {
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut formation = Self {
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            path,
            monitor_port: embedded::free_port().expect("port"),
            keepers: Vec::new(),
        };
        run(formation
            .autoctl()
            .args(["create", "monitor", "--hostname", "127.0.0.1"])
            .args(["--auth", "trust", "--no-ssl", "--pgdata"])
            .arg(dir.join("monitor"))
            .arg(format!("--pgport={}", formation.monitor_port)));
        formation.start_keeper("monitor");
        formation
    }

    fn monitor_url(&self, user: &str, db: &str) -> String {
        format!(
            "postgres://{user}@127.0.0.1:{}/{db}?sslmode=disable",
            self.monitor_port
        )
    }

    /// Adds a node on `port`; the first becomes the primary, the next its synchronous standby.
    fn add_node(&mut self, name: &str, port: u16) {
        run(self
            .autoctl()
            .args(["create", "postgres", "--hostname", "127.0.0.1"])
            .args(["--auth", "trust", "--no-ssl", "--dbname", "shadowcheck"])
            .arg("--pgdata")
            .arg(self.dir.join(name))
            .arg(format!("--pgport={port}"))
            .arg("--monitor")
            .arg(self.monitor_url("autoctl_node", "pg_auto_failover")));
        self.start_keeper(name);
    }

    /// `(current, assigned)` state per node name, from the monitor.
    fn states(&self) -> Vec<(String, String, String)> {
        let out = self
            .autoctl()
            .args(["show", "state", "--json", "--pgdata"])
            .arg(self.dir.join("monitor"))
            .output()
            .expect("show state");
        let nodes: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        nodes
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| {
                        (
                            n["nodename"].as_str().unwrap_or_default().to_owned(),
                            n["current_group_state"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            n["assigned_group_state"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn wait_state(&self, name: &str, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let states = self.states();
            if states
                .iter()
                .any(|(n, current, assigned)| n == name && current == state && assigned == state)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never reached {state}: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Kills a node the hard way: its keeper (and the Postgres it runs) with SIGKILL.
    fn kill(&mut self, name: &str) {
        if let Some(i) = self.keepers.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.keepers.remove(i);
            // SAFETY: signalling the process group we created for this child.
            unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
        stop_immediately(&self.bin, &self.dir.join(name));
    }
}

impl Drop for Formation {
    /// Cleanly, as an operator would (`pg_autoctl stop`: the keeper stops its PostgreSQL; a
    /// SIGKILLed postmaster would leave the monitor's background worker running), then whatever
    /// is left is killed.
    fn drop(&mut self) {
        for (name, _) in self.keepers.iter().rev() {
            let _ = self
                .autoctl()
                .args(["stop", "--pgdata"])
                .arg(self.dir.join(name))
                .output();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for (_, child) in &mut self.keepers {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let names: Vec<String> = self.keepers.iter().map(|(n, _)| n.clone()).collect();
        for name in names.iter().rev() {
            self.kill(name);
        }
    }
}

/// One writer: batches of ten with an idempotency key each, retried on 503 until stored.
/// Returns the acknowledged batches' BSSIDs, every status seen, and whether any request hung.
async fn ingest_until(
    writer: u32,
    base: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (Vec<String>, Vec<u16>, usize) {
    use std::sync::atomic::Ordering;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let (mut stored, mut statuses, mut hung) = (Vec::new(), Vec::new(), 0);
    let mut batch = writer * 128;
    while !stop.load(Ordering::SeqCst) {
        let body = detections(batch, 10);
        loop {
            let answer = client
                .post(format!("{base}/api/v1/detections"))
                .bearer_auth(TEST_KEY)
                .header("Idempotency-Key", format!("failover-{writer}-{batch}"))
                .json(&body)
                .send()
                .await;
            match answer {
                Ok(a) => {
                    let status = a.status().as_u16();
                    statuses.push(status);
                    if status == 201 || status == 200 {
                        for d in body.as_array().into_iter().flatten() {
                            stored.push(d["bssid"].as_str().unwrap_or_default().to_owned());
                        }
                        acked.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
                Err(e) if e.is_timeout() => hung += 1,
                Err(_) => statuses.push(0),
            }
            if stop.load(Ordering::SeqCst) {
                return (stored, statuses, hung);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        batch += 1;
    }
    (stored, statuses, hung)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs pg_auto_failover: feature tool-tests (scripts/test)"
)]
async fn a_killed_primary_hands_over_without_losing_an_acknowledged_row() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let bin = embedded::ensure_packages().expect("PostgreSQL binaries");
    let dir = shared_temp_dir("shadowcheck-failover-");
    chown_postgres(&dir);
    let mut formation = Formation::new(&dir, &bin);
    // Faster than the defaults (5 s checks, 20 s to call a node unhealthy, 30 s for the old
    // primary to demote itself), so the test is bounded; the mechanism is the same.
    let mut monitor = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match PgConnection::connect(&formation.monitor_url("postgres", "pg_auto_failover"))
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "monitor: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    for (name, value) in [
        ("health_check_period", 1000),
        ("health_check_retry_delay", 500),
        ("health_check_timeout", 1000),
        ("health_check_max_retries", 1),
        ("node_considered_unhealthy_timeout", 3000),
        ("primary_demote_timeout", 5000),
    ] {
        sqlx::query(&format!("ALTER SYSTEM SET pgautofailover.{name} = {value}"))
            .execute(&mut monitor)
            .await
            .expect("tune monitor");
    }
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut monitor)
        .await
        .expect("reload");
    let ports = [
        embedded::free_port().expect("port"),
        embedded::free_port().expect("port"),
    ];
    formation.add_node("node1", ports[0]);
    formation
        .wait_state("node_1", "single", Duration::from_secs(60))
        .await;
    formation.add_node("node2", ports[1]);
    formation
        .wait_state("node_2", "secondary", Duration::from_secs(90))
        .await;
    formation
        .wait_state("node_1", "primary", Duration::from_secs(30))
        .await;

    // The formation's URI, as `pg_autoctl show uri` gives it.
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/shadowcheck?target_session_attrs=read-write&sslmode=disable",
        ports[0], ports[1]
    );
    let serve = ServeProcess::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("SHADOWCHECK__DATABASE__ACQUIRE_TIMEOUT_MS", "2000"),
        ],
        None,
    );
    let client = crate::helpers::client();
    serve.wait_ready(&client).await;
    let primary = detailed(&client, &serve).await["primary"].clone();
    assert_eq!(
        primary["current"],
        format!("127.0.0.1:{}", ports[0]),
        "{primary}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            tokio::spawn(ingest_until(
                writer,
                format!("http://{}", serve.addr),
                Arc::clone(&stop),
                Arc::clone(&acked),
            ))
        })
        .collect();
    let wait_acks = |n: usize, what: &'static str| {
        let acked = Arc::clone(&acked);
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while acked.load(Ordering::SeqCst) < n {
                assert!(
                    Instant::now() < deadline,
                    "{what}: {} batches",
                    acked.load(Ordering::SeqCst)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_acks(20, "ingest never got going").await;
    formation.kill("node1");
    let killed = Instant::now();
    let at_kill = acked.load(Ordering::SeqCst);
    wait_acks(at_kill + 1, "no batch stored after the kill").await;
    let primary = detailed(&client, &serve).await["primary"].clone();
    assert_eq!(
        primary["current"],
        format!("127.0.0.1:{}", ports[1]),
        "{primary}"
    );
    let handover = killed.elapsed();
    formation
        .wait_state("node_2", "wait_primary", Duration::from_secs(90))
        .await;
    wait_acks(at_kill + 20, "ingest never resumed on the new primary").await;
    stop.store(true, Ordering::SeqCst);
    let mut stored = Vec::new();
    let mut statuses = Vec::new();
    let mut hung = 0;
    for writer in writers {
        let (s, st, h) = writer.await.expect("join");
        stored.extend(s);
        statuses.extend(st);
        hung += h;
    }
    assert_eq!(hung, 0, "requests hung during the handover");
    eprintln!(
        "failover: first acknowledged batch {:.1} s after the kill; {} answers 503 meanwhile, {} batches acknowledged",
        handover.as_secs_f64(),
        statuses.iter().filter(|s| **s == 503).count(),
        acked.load(Ordering::SeqCst)
    );
    assert!(
        statuses.iter().all(|s| [200, 201, 503].contains(s)),
        "{statuses:?}"
    );

    // Every acknowledged detection is on the new primary.
    let mut new_primary = PgConnection::connect(&format!(
        "postgres://postgres@127.0.0.1:{}/shadowcheck?sslmode=disable",
        ports[1]
    ))
    .await
    .expect("connect new primary");
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT bssid::text FROM sigint.signal_detections WHERE bssid::text = ANY($1)",
    )
    .bind(&stored)
    .fetch_all(&mut new_primary)
    .await
    .expect("rows");
    let present: std::collections::BTreeSet<String> = present.into_iter().collect();
    let lost: Vec<&String> = stored.iter().filter(|b| !present.contains(*b)).collect();
    assert!(stored.len() >= 400, "{} rows acknowledged", stored.len());
    assert!(
        lost.is_empty(),
        "{} acknowledged rows lost: {lost:?}",
        lost.len()
    );
    drop(serve);
    drop(formation);
    let _ = std::fs::remove_dir_all(dir);
}

/// The stack's own scripts on real servers: the init script (with the replication secret) gives
/// the primary its replication role and access, and `docker/postgres/replica.sh` clones it over a
/// slot of its own and runs a hot standby that follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_replica_script_follows_a_primary_prepared_by_the_init_script() {
    use std::os::unix::process::CommandExt;
    let dir = shared_temp_dir("shadowcheck-replica-script-");
    let primary_dir = dir.join("primary");
    let primary = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&primary_dir))
        .await
        .expect("join")
        .expect("primary");
    let url = primary.url("postgres").expose().to_owned();
    let password = reqwest::Url::parse(&url)
        .expect("url")
        .password()
        .expect("password")
        .to_owned();
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets");
    for (name, value) in [
        ("db_owner_password", "owner-pw-1"),
        ("db_app_password", "app-pw-2"),
        ("db_replication_password", "replication-pw-3"),
    ] {
        std::fs::write(secrets.join(name), format!("{value}\n")).expect("secret");
    }
    run(Command::new("sh")
        .arg(crate::helpers::repo(
            "docker/postgres/initdb/10-shadowcheck.sh",
        ))
        .env("SECRETS_DIR", &secrets)
        .env("SHADOWCHECK_DB", "stack")
        .env("PGDATA", dir.join("primary/postgres"))
        .env("POSTGRES_USER", "postgres")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", primary.port().to_string())
        .env("PGPASSWORD", &password));
    let mut admin = PgConnection::connect(&url).await.expect("connect");
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut admin)
        .await
        .expect("reload");

    let replica_dir = dir.join("replica");
    std::fs::create_dir_all(&replica_dir).expect("replica dir");
    chown_postgres(&replica_dir);
    let port = embedded::free_port().expect("port");
    let path = format!(
        "{}:{}",
        primary.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = std::fs::File::create(dir.join("replica.log")).expect("log");
    // A copy the postgres user can read: the checkout may sit in a directory only root enters.
    let script = dir.join("replica.sh");
    std::fs::copy(crate::helpers::repo("docker/postgres/replica.sh"), &script)
        .expect("copy the replica script");
    let mut standby = as_postgres(Path::new("/bin/sh"))
        .arg(&script)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .env("PATH", path)
        .env("PGDATA", &replica_dir)
        .env("PRIMARY_HOST", "127.0.0.1")
        .env("PRIMARY_PORT", primary.port().to_string())
        .env("SECRETS_DIR", &secrets)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("replica.sh");

    sqlx::query("CREATE TABLE stack_probe (n int)")
        .execute(&mut admin)
        .await
        .expect("create");
    sqlx::query("INSERT INTO stack_probe VALUES (42)")
        .execute(&mut admin)
        .await
        .expect("insert");
    let replica_url = on_port(&url, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (in_recovery, n) = loop {
        let seen = async {
            let mut c = PgConnection::connect(&replica_url).await?;
            let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                .fetch_one(&mut c)
                .await?;
            let n: i32 = sqlx::query_scalar("SELECT n FROM stack_probe")
                .fetch_one(&mut c)
                .await?;
            Ok::<_, sqlx::Error>((in_recovery, n))
        }
        .await;
        match seen {
            Ok(v) => break v,
            Err(e) => {
                let log = std::fs::read_to_string(dir.join("replica.log")).unwrap_or_default();
                assert!(Instant::now() < deadline, "replica: {e}\n{log}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    assert!(in_recovery, "not a standby");
    assert_eq!(n, 42);
    let slot: (String, bool) =
        sqlx::query_as("SELECT slot_name::text, active FROM pg_replication_slots")
            .fetch_one(&mut admin)
            .await
            .expect("slot");
    assert_eq!(slot, ("replica_1".to_owned(), true));
    // SAFETY: signalling the process group we created.
    unsafe { libc::killpg(standby.id() as i32, libc::SIGINT) };
    let _ = standby.wait();
    stop_immediately(primary.bin_dir(), &replica_dir);
    drop(admin);
    let _ = tokio::task::spawn_blocking(move || drop(primary)).await;
    let _ = std::fs::remove_dir_all(dir);
}
