//! What every section uses: the throwaway databases, the server and its readiness, an HTTP
//! client with the bench key, timing and memory readings.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub(crate) const KEY: &str = "sc_bench_bootstrap_key_0123456789abcdefABCDEF";

pub(crate) fn psql(pg_bin: &Path, url: &str, sql: &str) -> Result<String> {
    Ok(shadowcheck::db::embedded::psql(pg_bin, url, sql)?)
}

pub(crate) async fn psql_scalar(url: &str, sql: &str) -> Result<usize> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

pub(crate) async fn create_db(admin_url: &str, name: &str) -> Result<String> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let url = format!(
        "{}/{name}",
        admin_url
            .rsplit_once('/')
            .map(|(a, _)| a)
            .unwrap_or(admin_url)
    );
    let pool = sqlx::PgPool::connect(&url).await?;
    shadowcheck::db::MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(url)
}

pub(crate) fn peak_rss_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    peak_rss_kib(pid, "VmRSS:").unwrap_or(0)
}

/// A child process stopped with SIGTERM when dropped (and killed if it does not go within 10 s):
/// the server, martin, PgBouncer.
pub(crate) struct Process(pub(crate) Child);

impl Process {
    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: signalling our own child (runuser passes it on).
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `shadowcheck serve` on free ports.
pub(crate) struct Server {
    pub(crate) child: Process,
    pub(crate) addr: String,
    pub(crate) metrics_addr: String,
}

pub(crate) fn start_server(bin: &Path, url: &str, pool: usize) -> Result<Server> {
    start_server_with(bin, url, pool, &[])
}

pub(crate) fn start_server_with(
    bin: &Path,
    url: &str,
    pool: usize,
    env: &[(&str, &str)],
) -> Result<Server> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("DATABASE_URL", url)
        .env("SHADOWCHECK__AUTH__BOOTSTRAP_KEY", KEY)
        .env("SHADOWCHECK__RATE_LIMIT__ENABLED", "false")
        .env("SHADOWCHECK__DATABASE__MAX_CONNECTIONS", pool.to_string())
        .env(
            "SHADOWCHECK__LOG__LEVEL",
            "info,shadowcheck::access=warn,sqlx=warn",
        )
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let (Some(a), Some(m)) = (v["listen"].as_str(), v["metrics_listen"].as_str()) {
                    let _ = tx.send((a.to_owned(), m.to_owned()));
                }
            }
        }
    });
    let (addr, metrics_addr) = rx
        .recv_timeout(Duration::from_secs(60))
        .context("server did not start")?;
    Ok(Server {
        child: Process(child),
        addr,
        metrics_addr,
    })
}

pub(crate) async fn wait_ready(client: &reqwest::Client, addr: &str) -> Result<()> {
    for _ in 0..600 {
        if let Ok(r) = client
            .get(format!("http://{addr}/api/v1/health/ready"))
            .send()
            .await
        {
            if r.status() == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("server not ready")
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn client() -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {KEY}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(64)
        .build()?)
}

/// Latencies (ms) and bytes of GETting each URL once, in order.
pub(crate) async fn timed_gets(
    client: &reqwest::Client,
    urls: &[String],
) -> Result<(Vec<f64>, f64, usize)> {
    let mut lat = Vec::with_capacity(urls.len());
    let mut bytes = 0usize;
    let t = Instant::now();
    for url in urls {
        let started = Instant::now();
        let resp = client.get(url).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        lat.push(started.elapsed().as_secs_f64() * 1000.0);
        if !(status == 200 || status == 204) {
            bail!("{url}: HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        bytes += body.len();
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok((lat, secs, bytes))
}

/// POSTs `rows` to `/api/v1/detections` in requests of `per_request`; an answer that is not a
/// 2xx is an error naming its status and body.
pub(crate) async fn post_detections(
    client: &reqwest::Client,
    base: &str,
    rows: &[serde_json::Value],
    per_request: usize,
) -> Result<()> {
    for chunk in rows.chunks(per_request) {
        let resp = client
            .post(format!("{base}/api/v1/detections"))
            .json(&chunk)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("HTTP {} {}", resp.status(), resp.text().await?);
        }
    }
    Ok(())
}
