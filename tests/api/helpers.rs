//! Test harness: one throwaway PostGIS cluster per test run (the binary's own embedded-cluster
//! code, in a world-readable temp dir so the `postgres` user can enter it) with the compose
//! stack's roles, made by the stack's own init script; a template database migrated by the
//! schema owner; and a fresh database per test cloned from it. The API under test connects as
//! the least-privilege app role, exactly as in the stack, so a grant the stack lacks fails here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shadowcheck::app::Application;
use shadowcheck::config::{Secret, Settings};
use shadowcheck::db::embedded::EmbeddedPostgres;
use shadowcheck::lifecycle::Lifecycle;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;

/// The cluster: its superuser URL without a database name, and where it listens.
struct Cluster {
    base_url: String,
    host: String,
    port: u16,
}

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();
static EMBEDDED: Mutex<Option<(EmbeddedPostgres, PathBuf)>> = Mutex::new(None);
const TEMPLATE: &str = "shadowcheck_template";
/// The passwords the init script gives the stack's roles in the test cluster.
const OWNER_PASSWORD: &str = "owner-test-password-0123";
const APP_PASSWORD: &str = "app-test-password-4567";

extern "C" fn stop_cluster() {
    if let Ok(mut guard) = EMBEDDED.lock() {
        if let Some((mut pg, dir)) = guard.take() {
            let _ = pg.stop();
            drop(pg);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A file of this checkout: the one `cargo test` runs the suite from (cargo sets
/// CARGO_MANIFEST_DIR for the test process), else the one it was compiled in. The quick-start
/// test rebuilds the test binaries from a fresh copy it then removes; a binary run after that
/// must still read this checkout's files.
pub fn repo(path: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).to_owned(),
            PathBuf::from,
        )
        .join(path)
}

/// A directory under the system temp dir that the `postgres` user may enter.
pub fn shared_temp_dir(prefix: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
        .keep();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

/// Runs the compose stack's database init script (docker/postgres/initdb/10-shadowcheck.sh)
/// against the cluster, for database `db`: the owner and app roles, the database owned by the
/// owner, the extensions, and the default privileges the app role gets.
fn run_init_script(base_url: &str, db: &str) {
    let opts: PgConnectOptions = format!("{base_url}/postgres").parse().expect("url");
    let password = base_url
        .rsplit_once('@')
        .and_then(|(creds, _)| creds.rsplit_once(':'))
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default();
    let secrets = shared_temp_dir("shadowcheck-test-secrets-");
    std::fs::write(
        secrets.join("db_owner_password"),
        format!("{OWNER_PASSWORD}\n"),
    )
    .expect("write");
    std::fs::write(secrets.join("db_app_password"), format!("{APP_PASSWORD}\n")).expect("write");
    let script = repo("docker/postgres/initdb/10-shadowcheck.sh");
    let out = std::process::Command::new("sh")
        .arg(script)
        .env("SECRETS_DIR", &secrets)
        .env("SHADOWCHECK_DB", db)
        .env("POSTGRES_USER", opts.get_username())
        .env("PGHOST", opts.get_host())
        .env("PGPORT", opts.get_port().to_string())
        .env("PGPASSWORD", password)
        .output()
        .expect("run the init script (needs psql)");
    let _ = std::fs::remove_dir_all(secrets);
    assert!(
        out.status.success(),
        "init script: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async {
            // A developer may point the suite at an existing PostGIS server instead.
            let base_url = match std::env::var("SHADOWCHECK_TEST_DATABASE_URL") {
                Ok(url) => url.trim_end_matches('/').to_owned(),
                Err(_) => {
                    let dir = shared_temp_dir("shadowcheck-test-pg-");
                    let data = dir.join("data");
                    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&data))
                        .await
                        .expect("join")
                        .expect("start the throwaway PostGIS cluster");
                    let url = pg
                        .url("postgres")
                        .expose()
                        .trim_end_matches("/postgres")
                        .to_owned();
                    *EMBEDDED.lock().expect("lock") = Some((pg, dir));
                    // SAFETY: registering a plain extern "C" fn with no captured state.
                    unsafe { libc::atexit(stop_cluster) };
                    url
                }
            };
            let opts: PgConnectOptions = format!("{base_url}/postgres").parse().expect("url");
            let mut admin = PgConnection::connect(&format!("{base_url}/postgres"))
                .await
                .expect("connect as superuser");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {TEMPLATE}"))
                .execute(&mut admin)
                .await
                .expect("drop template");
            let init_url = base_url.clone();
            tokio::task::spawn_blocking(move || run_init_script(&init_url, TEMPLATE))
                .await
                .expect("init script");
            // On a server that had the roles already, they get the passwords the tests use.
            for (role, password) in [
                ("shadowcheck_owner", OWNER_PASSWORD),
                ("shadowcheck_app", APP_PASSWORD),
            ] {
                sqlx::query(&format!("ALTER ROLE {role} PASSWORD '{password}'"))
                    .execute(&mut admin)
                    .await
                    .expect("role password");
            }
            let cluster = Cluster {
                base_url,
                host: opts.get_host().to_owned(),
                port: opts.get_port(),
            };
            // The schema is the owner's, as the stack's `migrate` service makes it.
            let template = PgPoolOptions::new()
                .max_connections(1)
                .connect(&cluster.role_url("shadowcheck_owner", OWNER_PASSWORD, TEMPLATE))
                .await
                .expect("connect template as the owner");
            shadowcheck::db::MIGRATOR
                .run(&template)
                .await
                .expect("migrate template");
            template.close().await;
            cluster
        })
        .await
}

impl Cluster {
    fn role_url(&self, role: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{role}:{password}@{}:{}/{db}",
            self.host, self.port
        )
    }
}

/// One test's database: migrated, owned by the schema owner, connectable by the app role, as
/// the compose stack's is.
pub struct TestDatabase {
    name: String,
    cluster: &'static Cluster,
}

impl TestDatabase {
    /// The least-privilege role the API runs as (`shadowcheck_app`).
    pub fn app_url(&self) -> String {
        self.cluster
            .role_url("shadowcheck_app", APP_PASSWORD, &self.name)
    }

    /// The schema owner (`shadowcheck_owner`): what `migrate` and `maintenance` use.
    pub fn owner_url(&self) -> String {
        self.cluster
            .role_url("shadowcheck_owner", OWNER_PASSWORD, &self.name)
    }

    /// The cluster's superuser: the test's own checks, backups and restores.
    pub fn superuser_url(&self) -> String {
        format!("{}/{}", self.cluster.base_url, self.name)
    }
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> TestDatabase {
    let cluster = cluster().await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&format!("{}/postgres", cluster.base_url))
        .await
        .expect("connect");
    let mut tries = 0;
    loop {
        match sqlx::query(&format!(
            "CREATE DATABASE {name} TEMPLATE {TEMPLATE} OWNER shadowcheck_owner"
        ))
        .execute(&mut admin)
        .await
        {
            Ok(_) => break,
            // Two clones at once can briefly see each other on the template.
            Err(e) if tries < 20 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
    // Database-level grants are not copied from a template: the init script's, again.
    for sql in [
        format!("REVOKE ALL ON DATABASE {name} FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE {name} TO shadowcheck_owner, shadowcheck_app"),
    ] {
        sqlx::query(&sql)
            .execute(&mut admin)
            .await
            .expect("database grants");
    }
    TestDatabase { name, cluster }
}

/// An empty database without migrations (for testing `migrate`); its superuser URL.
pub async fn empty_database() -> String {
    let cluster = cluster().await;
    let name = format!("empty_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&format!("{}/postgres", cluster.base_url))
        .await
        .expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create");
    format!("{}/{name}", cluster.base_url)
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// A pool of the test's own (superuser), for checking what the service stored.
    pub db: PgPool,
    pub database: TestDatabase,
    pub client: reqwest::Client,
    pub lifecycle: Arc<Lifecycle>,
    pub server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The bootstrap key every test server accepts (all scopes).
pub const TEST_KEY: &str = "sc_test_bootstrap_key_0123456789abcdefABCDEF";

/// An HTTP client that sends `TEST_KEY`.
pub fn client() -> reqwest::Client {
    client_with_timeout(None)
}

pub fn client_with_timeout(timeout: Option<Duration>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {TEST_KEY}")).expect("header"),
    );
    let mut builder = reqwest::Client::builder().default_headers(headers);
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    builder.build().expect("client")
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let database = fresh_database().await;
    let mut settings = Settings::default();
    settings.auth.bootstrap_key = Some(Secret::new(TEST_KEY));
    // Rate limits have tests of their own; elsewhere they would only add noise.
    settings.rate_limit.enabled = false;
    settings.server.listen = "127.0.0.1:0".parse().expect("addr");
    settings.server.metrics_listen = "127.0.0.1:0".parse().expect("addr");
    settings.database.max_connections = 4;
    customise(&mut settings);
    let lifecycle = Lifecycle::new();
    let app = Application::build(
        settings,
        &Secret::new(database.app_url()),
        Arc::clone(&lifecycle),
    )
    .await
    .expect("build app");
    let addr = app.local_addr().expect("addr");
    let metrics_addr = app.metrics_addr().expect("metrics addr");
    let server = tokio::spawn(app.run_until_stopped());
    tokio::time::timeout(Duration::from_secs(60), lifecycle.wait_started())
        .await
        .expect("app did not finish start-up");
    let db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&database.superuser_url())
        .await
        .expect("test pool");
    TestApp {
        addr,
        metrics_addr,
        db,
        database,
        client: client(),
        lifecycle,
        server,
    }
}

impl TestApp {
    /// A new API key with `scopes`, made with `shadowcheck keys create` as an operator would
    /// (as the API's own role); the key itself.
    pub fn create_key(&self, name: &str, scopes: &[&str]) -> String {
        let mut cmd = shadowcheck();
        cmd.args(["keys", "create", "--name", name])
            .env("DATABASE_URL", self.database.app_url());
        for scope in scopes {
            cmd.args(["--scope", scope]);
        }
        let out = cmd.output().expect("keys create");
        assert!(
            out.status.success(),
            "keys create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("sc_"))
            .expect("the key on stdout")
            .to_owned()
    }

    /// A request with `key` (none: anonymous) and an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut req = reqwest::Client::new().request(method, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.expect("send")
    }

    /// The superuser URL of this app's database (for backups, restores and checks).
    #[allow(dead_code)] // used by tests/stack, which shares these helpers
    pub fn database_url(&self) -> String {
        self.database.superuser_url()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post_json(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/detections"))
            .json(body)
            .send()
            .await
            .expect("POST /api/v1/detections")
    }

    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("GET")
    }

    /// The JSON body of a GET, whatever its status.
    pub async fn get_json(&self, path_and_query: &str) -> Value {
        self.get(path_and_query).await.json().await.expect("json")
    }

    /// Follows `next` links from `path_and_query`, returning every feature id in order and the
    /// number of pages.
    pub async fn all_ids(&self, path_and_query: &str) -> (Vec<i64>, usize) {
        let mut ids = Vec::new();
        let mut next = Some(path_and_query.to_owned());
        let mut pages = 0;
        while let Some(path) = next.take() {
            let resp = self.get(&path).await;
            assert_eq!(resp.status(), 200, "GET {path}");
            let body: Value = resp.json().await.expect("json");
            pages += 1;
            assert!(pages < 10_000, "paging does not end");
            let features = body["features"].as_array().expect("features");
            assert_eq!(body["numberReturned"].as_u64(), Some(features.len() as u64));
            ids.extend(features.iter().map(|f| f["id"].as_i64().expect("id")));
            next = body["links"]
                .as_array()
                .expect("links")
                .iter()
                .find(|l| l["rel"] == "next")
                .map(|l| relative(l["href"].as_str().expect("href")));
        }
        (ids, pages)
    }

    /// Waits until some session of this test's database is blocked on a lock: proof that a
    /// request is inside its handler, held by a lock the test took.
    pub async fn wait_for_lock_waiter(&self, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&self.db)
            .await
            .expect("activity");
            if waiting > 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} never reached the database"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One integer from any SQL.
    pub async fn count_sql(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db)
            .await
            .expect("count")
    }

    pub async fn count(&self, sql_where: &str) -> i64 {
        sqlx::query_scalar(&format!(
            "SELECT count(*) FROM sigint.signal_detections d WHERE {sql_where}"
        ))
        .fetch_one(&self.db)
        .await
        .expect("count")
    }

    pub async fn ids(&self, sql_where: &str) -> Vec<i64> {
        sqlx::query_scalar(&format!(
            "SELECT id FROM sigint.signal_detections d WHERE {sql_where} ORDER BY id"
        ))
        .fetch_all(&self.db)
        .await
        .expect("ids")
    }
}

/// A link's path and query (the OGC API's links are absolute).
fn relative(href: &str) -> String {
    match reqwest::Url::parse(href) {
        Ok(url) => url[url::Position::BeforePath..].to_owned(),
        Err(_) => href.to_owned(),
    }
}

/// Cluster centres of the synthetic capture area: a few districts of Berlin.
pub const CENTRES: [(f64, f64); 3] = [(52.520, 13.405), (52.500, 13.300), (52.540, 13.450)];
pub const DEVICES: [&str; 3] = [
    "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a01",
    "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a02",
    "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a03",
];

/// A deterministic mixed batch: all four signal types, clustered positions, reused MACs and
/// cells, times spread over the last 30 days.
pub fn mixed_batch(n: usize, seed: u64) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let now = chrono::Utc::now();
    (0..n)
        .map(|i| {
            let (clat, clon) = CENTRES[i % CENTRES.len()];
            let lat = clat + rng.gen_range(-0.02..0.02);
            let lon = clon + rng.gen_range(-0.03..0.03);
            let at = now - chrono::Duration::seconds(rng.gen_range(60..30 * 86_400)) - chrono::Duration::milliseconds(i as i64);
            let mut item = json!({
                "detected_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "latitude": lat,
                "longitude": lon,
                "accuracy_meters": rng.gen_range(3.0..50.0),
                "device_id": DEVICES[i % DEVICES.len()],
            });
            let mac = format!("02:00:00:00:{:02x}:{:02x}", (i / 7) % 256, (i / 7) / 256);
            let extra = match i % 4 {
                0 => json!({"signal_type": "wifi", "bssid": mac.replace("02:", "a4:"), "ssid": format!("net-{}", i % 23),
                            "channel": 1 + (i % 11), "frequency_mhz": 2412 + 5 * (i % 11), "signal_strength_dbm": -30 - (i % 60) as i64}),
                1 => json!({"signal_type": "bluetooth", "bt_address": mac.replace("02:", "b4:"), "bt_name": format!("headset-{}", i % 5),
                            "bt_class": 2360344, "bt_rssi": -40 - (i % 50) as i64}),
                2 => json!({"signal_type": "ble", "bt_address": mac, "bt_rssi": -50 - (i % 45) as i64, "tags": ["beacon"]}),
                _ => json!({"signal_type": "cellular", "mcc": 262, "mnc": 1 + (i % 3) as i64, "lac": 1000 + (i % 9) as i64,
                            "cell_id": 10_000 + (i % 40) as i64, "network_type": "LTE", "signal_strength_dbm": -80 - (i % 40) as i64}),
            };
            item.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
            item
        })
        .collect()
}

pub async fn problem(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: Value = resp.json().await.expect("problem json");
    for key in ["type", "title", "status", "detail"] {
        assert!(body.get(key).is_some(), "problem body lacks {key}: {body}");
    }
    assert_eq!(body["status"], status);
    body
}

pub const BIN: &str = env!("CARGO_BIN_EXE_shadowcheck");

/// The real binary, with none of the test process's own settings leaking into it.
pub fn shadowcheck() -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("SHADOWCHECK__") || key == "DATABASE_URL" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A running `shadowcheck serve` child process.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub addr: String,
    pub metrics_addr: String,
    /// Every stdout line so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Starts `serve` on free ports, accepting `TEST_KEY` and without rate limits unless `env`
    /// says otherwise, and waits for its "listening" log line.
    pub fn start(env: &[(&str, &str)], data_dir: Option<&std::path::Path>) -> Self {
        let mut all: Vec<(&str, &str)> = vec![
            ("SHADOWCHECK__AUTH__BOOTSTRAP_KEY", TEST_KEY),
            ("SHADOWCHECK__RATE_LIMIT__ENABLED", "false"),
        ];
        all.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
        all.extend_from_slice(env);
        Self::start_exactly(&all, data_dir)
    }

    /// Starts `serve` with exactly this environment (no test key).
    pub fn start_exactly(env: &[(&str, &str)], data_dir: Option<&std::path::Path>) -> Self {
        Self::spawn(Self::command(env, data_dir))
    }

    /// Like `start`, in a process allowed `files` open file descriptors.
    pub fn start_with_file_limit(env: &[(&str, &str)], files: u64) -> Self {
        use std::os::unix::process::CommandExt;
        let mut env: Vec<(&str, &str)> = env.to_vec();
        env.push(("SHADOWCHECK__AUTH__BOOTSTRAP_KEY", TEST_KEY));
        env.push(("SHADOWCHECK__RATE_LIMIT__ENABLED", "false"));
        let mut cmd = Self::command(&env, None);
        // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: files,
                    rlim_max: files,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Self::spawn(cmd)
    }

    fn command(env: &[(&str, &str)], data_dir: Option<&std::path::Path>) -> std::process::Command {
        let mut cmd = shadowcheck();
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
        if let Some(dir) = data_dir {
            cmd.arg("--data-dir").arg(dir);
        }
        cmd.envs(env.iter().copied());
        cmd
    }

    fn spawn(mut cmd: std::process::Command) -> Self {
        use std::io::{BufRead, BufReader};
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let err_sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if let Ok(mut logs) = err_sink.lock() {
                    logs.push(line);
                }
            }
        });
        // Keeps draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if let (Some(addr), Some(metrics)) =
                        (v["listen"].as_str(), v["metrics_listen"].as_str())
                    {
                        let _ = tx.send((addr.to_owned(), metrics.to_owned()));
                    }
                }
                if let Ok(mut logs) = sink.lock() {
                    logs.push(line);
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok((addr, metrics_addr)) => {
                    return Self {
                        child,
                        addr,
                        metrics_addr,
                        logs,
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("serve exited before listening: {status}");
                    }
                    if std::time::Instant::now() >= deadline {
                        // Not left running behind the failed test.
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "serve did not report its address; its output so far:\n{}",
                            logs.lock().map(|l| l.join("\n")).unwrap_or_default()
                        );
                    }
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The server's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("VmHWM:")
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
            })
            .unwrap_or(0)
            * 1024
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub async fn wait_ready(&self, client: &reqwest::Client) {
        self.wait_status(client, "/api/v1/health/ready", 200, Duration::from_secs(60))
            .await;
    }

    /// Polls `path` until it answers `status`; panics after `within`.
    pub async fn wait_status(
        &self,
        client: &reqwest::Client,
        path: &str,
        status: u16,
        within: Duration,
    ) {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(r) = client.get(self.url(path)).send().await {
                if r.status().as_u16() == status {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} did not answer {status} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Asked first: a serve managing its own PostgreSQL stops it on the way out, where a
            // kill (a test that failed before `terminate`) would leave the cluster running.
            self.signal(libc::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TLS connector trusting only the certificates in the PEM file `ca` (ring, as the server).
pub fn tls_connector(ca: &std::path::Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("cert") {
        roots.add(cert.expect("pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
