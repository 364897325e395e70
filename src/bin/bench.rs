//! ShadowCheck benchmark: the physical limit (psql COPY into the same schema with the same
//! indexes) against HTTP ingest through the real server, then query latencies, on one machine
//! in one run. Prints figures; asserts nothing. Run it with `scripts/bench [--rows N]`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shadowcheck::db::embedded::EmbeddedPostgres;

#[derive(Parser, Debug)]
#[command(about = "COPY baseline vs HTTP ingest, and query latencies, on a throwaway PostGIS")]
struct Args {
    /// Detections to generate.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Items per HTTP request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Concurrency levels for HTTP ingest (comma-separated).
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Requests per query kind.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    /// The shadowcheck binary to serve with (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Maximum-size bodies sent at once in the memory section (d).
    #[arg(long, default_value_t = 8)]
    large_concurrency: usize,
    /// Randomised known-truth scenarios for the detector's precision and recall (section e).
    #[arg(long, default_value_t = 20)]
    scenarios: u64,
    /// Also measure each index's ingest cost and query benefit (on min(rows, 200000) rows).
    #[arg(long)]
    index_study: bool,
    /// Distinct tiles requested per zoom level in the map section (f).
    #[arg(long, default_value_t = 200)]
    tiles: usize,
    /// Only (a) and the map section (f), served from the COPY table: a quick look at map
    /// serving without the ingest runs.
    #[arg(long)]
    map_only: bool,
    /// Only (a) and the scale-out section (g): storage per row, and ingest and reads directly,
    /// with `database.transaction_pooler` on, and through PgBouncer (`/usr/sbin/pgbouncer`).
    #[arg(long)]
    scale_only: bool,
    /// martin, to serve the same table beside us in (f) (default: `martin` on PATH; skipped
    /// with a note when there is none).
    #[arg(long)]
    martin: Option<PathBuf>,
}

const KEY: &str = "sc_bench_bootstrap_key_0123456789abcdefABCDEF";
const CITIES: [(&str, f64, f64); 5] = [
    ("Berlin", 52.520, 13.405),
    ("Paris", 48.857, 2.352),
    ("London", 51.507, -0.128),
    ("New York", 40.713, -74.006),
    ("Tokyo", 35.676, 139.650),
];

struct Row {
    at: DateTime<Utc>,
    lat: f64,
    lon: f64,
    kind: &'static str,
    mac: String,
    ssid: Option<String>,
    channel: Option<i32>,
    dbm: i32,
    cell: Option<(i32, i32, i32, i64)>,
    device: String,
    accuracy: f64,
    suspicious: bool,
}

/// Clustered positions over a few cities, transmitters seen again and again (a few popular
/// ones very often), strictly increasing times so no two rows share a natural key.
fn generate(n: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(42);
    let devices: Vec<String> = (0..50)
        .map(|i| format!("6f1c7a2e-3b1d-4c55-9f2a-{i:012x}"))
        .collect();
    let aps = (n / 20).max(10);
    let bts = (n / 50).max(10);
    let cells = (n / 500).max(5);
    let span = chrono::Duration::days(90);
    let start = Utc::now() - span - chrono::Duration::hours(1);
    let step_ms = (span.num_milliseconds() as f64 / n as f64).max(1.0);
    // A transmitter's home: a fixed city and offset, so it is seen near the same place.
    let home = |id: usize| {
        let (_, lat, lon) = CITIES[id % CITIES.len()];
        let mut r = StdRng::seed_from_u64(id as u64);
        // Sum of two uniforms: denser towards the centre.
        let dlat = r.gen_range(-1.0..1.0f64) + r.gen_range(-1.0..1.0f64);
        let dlon = r.gen_range(-1.0..1.0f64) + r.gen_range(-1.0..1.0f64);
        (lat + 0.05 * dlat, lon + 0.08 * dlon)
    };
    (0..n)
        .map(|i| {
            let at = start + chrono::Duration::milliseconds((i as f64 * step_ms) as i64);
            // Squared uniform: low ids are popular.
            let pick =
                |rng: &mut StdRng, pool: usize| ((rng.gen::<f64>().powi(2)) * pool as f64) as usize;
            let roll = rng.gen_range(0..100);
            let (kind, id) = match roll {
                0..=54 => ("wifi", pick(&mut rng, aps)),
                55..=79 => ("ble", aps + pick(&mut rng, bts)),
                80..=87 => ("bluetooth", aps + bts + pick(&mut rng, bts)),
                _ => ("cellular", aps + 2 * bts + pick(&mut rng, cells)),
            };
            let (hlat, hlon) = home(id);
            let jitter = if kind == "cellular" { 0.0 } else { 0.0004 };
            let b = (id as u64).to_be_bytes();
            let first = match kind {
                "wifi" => 0xa4,
                "ble" => 0xd6, // locally administered: randomised BLE addresses
                _ => 0xb4,
            };
            Row {
                at,
                lat: hlat + rng.gen_range(-jitter..=jitter),
                lon: hlon + rng.gen_range(-jitter..=jitter),
                kind,
                mac: format!(
                    "{first:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    b[3], b[4], b[5], b[6], b[7]
                ),
                ssid: (kind == "wifi").then(|| format!("net-{}", id % 5000)),
                channel: (kind == "wifi").then(|| 1 + (id % 11) as i32),
                dbm: -rng.gen_range(30..100),
                cell: (kind == "cellular").then(|| {
                    (
                        262,
                        1 + (id % 3) as i32,
                        1000 + (id % 50) as i32,
                        10_000 + id as i64,
                    )
                }),
                device: devices[i % devices.len()].clone(),
                accuracy: rng.gen_range(3.0..40.0),
                suspicious: rng.gen_range(0..1000) == 0,
            }
        })
        .collect()
}

fn csv_line(r: &Row, out: &mut String) {
    use std::fmt::Write;
    let opt = |v: Option<String>| v.unwrap_or_default();
    let (bssid, bt) = if r.kind == "wifi" {
        (r.mac.clone(), String::new())
    } else if r.kind == "cellular" {
        (String::new(), String::new())
    } else {
        (String::new(), r.mac.clone())
    };
    let (mcc, mnc, lac, cid) = match r.cell {
        Some((a, b, c, d)) => (a.to_string(), b.to_string(), c.to_string(), d.to_string()),
        None => Default::default(),
    };
    let (ssdbm, btrssi) = if r.kind == "wifi" || r.kind == "cellular" {
        (r.dbm.to_string(), String::new())
    } else {
        (String::new(), r.dbm.to_string())
    };
    let _ = writeln!(
        out,
        "{},SRID=4326;POINT({} {}),{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{{}}",
        r.at.to_rfc3339(),
        r.lon,
        r.lat,
        r.kind,
        opt(r.ssid.clone()),
        bssid,
        r.channel.map(|c| c.to_string()).unwrap_or_default(),
        ssdbm,
        bt,
        btrssi,
        cid,
        lac,
        mcc,
        mnc,
        if r.kind == "cellular" { "LTE" } else { "" },
        r.device,
        r.accuracy,
        r.suspicious,
    );
}

const COPY_COLUMNS: &str = "detected_at, location, signal_type, ssid, bssid, channel, signal_strength_dbm, bt_address, bt_rssi, cell_id, lac, mcc, mnc, network_type, device_id, accuracy_meters, is_suspicious, tags";

fn json_item(r: &Row) -> serde_json::Value {
    let mut v = serde_json::json!({
        "detected_at": r.at.to_rfc3339(), "latitude": r.lat, "longitude": r.lon, "signal_type": r.kind,
        "device_id": r.device, "accuracy_meters": r.accuracy, "is_suspicious": r.suspicious,
    });
    let m = v.as_object_mut().expect("object");
    match r.kind {
        "wifi" => {
            m.insert("bssid".into(), r.mac.clone().into());
            m.insert("ssid".into(), r.ssid.clone().into());
            m.insert("channel".into(), r.channel.into());
            m.insert("signal_strength_dbm".into(), r.dbm.into());
        }
        "cellular" => {
            let (mcc, mnc, lac, cid) = r.cell.unwrap_or_default();
            m.insert("mcc".into(), mcc.into());
            m.insert("mnc".into(), mnc.into());
            m.insert("lac".into(), lac.into());
            m.insert("cell_id".into(), cid.into());
            m.insert("network_type".into(), "LTE".into());
            m.insert("signal_strength_dbm".into(), r.dbm.into());
        }
        _ => {
            m.insert("bt_address".into(), r.mac.clone().into());
            m.insert("bt_rssi".into(), r.dbm.into());
        }
    }
    v
}

fn psql(pg_bin: &Path, url: &str, sql: &str) -> Result<String> {
    let out = Command::new(pg_bin.join("psql"))
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            url,
            "-c",
            sql,
        ])
        .output()
        .context("psql")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn create_db(admin_url: &str, name: &str) -> Result<String> {
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

/// For the COPY baseline only: COPY cannot create partitions, and it measures the physical limit.
async fn prepare_partitions(url: &str, rows: &[Row]) -> Result<()> {
    use chrono::Datelike;
    let pool = sqlx::PgPool::connect(url).await?;
    let mut months: Vec<chrono::NaiveDate> = rows
        .iter()
        .filter_map(|r| chrono::NaiveDate::from_ymd_opt(r.at.year(), r.at.month(), 1))
        .collect();
    months.dedup();
    for m in months {
        sqlx::query("SELECT sigint.ensure_partition($1)")
            .bind(m)
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    Ok(())
}

fn peak_rss_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Server {
    child: Child,
    addr: String,
    metrics_addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn start_server(bin: &Path, url: &str, pool: usize) -> Result<Server> {
    start_server_with(bin, url, pool, &[])
}

fn start_server_with(bin: &Path, url: &str, pool: usize, env: &[(&str, &str)]) -> Result<Server> {
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
        child,
        addr,
        metrics_addr,
    })
}

/// Posts every body, `conc` at a time; the wall time and each request's milliseconds.
async fn ingest_all(
    client: &reqwest::Client,
    addr: &str,
    bodies: &Arc<Vec<Vec<u8>>>,
    conc: usize,
) -> Result<(f64, Vec<f64>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conc {
        let (client, bodies, next, addr) = (
            client.clone(),
            Arc::clone(bodies),
            Arc::clone(&next),
            addr.to_owned(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { break };
                let sent = Instant::now();
                let resp = client
                    .post(format!("http://{addr}/api/v1/detections"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                let status = resp.status();
                let _ = resp.bytes().await?;
                if status != 201 {
                    bail!("batch {i}: HTTP {status}");
                }
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await??);
    }
    Ok((t.elapsed().as_secs_f64(), latencies))
}

async fn wait_ready(client: &reqwest::Client, addr: &str) -> Result<()> {
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn client() -> Result<reqwest::Client> {
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

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let server_bin = match &args.server {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("shadowcheck"),
    };
    println!(
        "# ShadowCheck benchmark: {} rows, batches of {}, concurrency {:?}, {} queries per kind",
        args.rows, args.batch, args.concurrency, args.queries
    );
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned())
            )
            .unwrap_or_default()
    );

    // A throwaway cluster in a directory the postgres user can enter.
    let dir = std::env::temp_dir().join(format!("shadowcheck-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let data = dir.join("data");
    let mut pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&data)).await??;
    let admin_url = pg.url("postgres").expose().to_owned();
    // The same server binaries the cluster runs on, psql included.
    let pg_bin = pg.bin_dir().to_owned();
    let result = run(&args, &server_bin, &pg_bin, &admin_url, &dir).await;
    let _ = tokio::task::spawn_blocking(move || pg.stop()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(
    args: &Args,
    server_bin: &Path,
    pg_bin: &Path,
    admin_url: &str,
    dir: &Path,
) -> Result<()> {
    let t = Instant::now();
    let rows = generate(args.rows);
    let by_kind = |k: &str| rows.iter().filter(|r| r.kind == k).count();
    let distinct: std::collections::HashSet<&str> = rows.iter().map(|r| r.mac.as_str()).collect();
    println!(
        "generated in {:.1} s: wifi {}, ble {}, bluetooth {}, cellular {}; {} distinct transmitters",
        t.elapsed().as_secs_f64(), by_kind("wifi"), by_kind("ble"), by_kind("bluetooth"), by_kind("cellular"), distinct.len()
    );

    // (a) Baseline: psql \copy of the same rows into the same schema with the same indexes.
    let copy_url = create_db(admin_url, "bench_copy").await?;
    prepare_partitions(&copy_url, &rows).await?;
    let csv_path = dir.join("rows.csv");
    {
        let mut text = String::with_capacity(rows.len() * 200);
        for r in &rows {
            csv_line(r, &mut text);
        }
        std::fs::write(&csv_path, text)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&csv_path, std::fs::Permissions::from_mode(0o644))?;
    }
    let t = Instant::now();
    psql(
        pg_bin,
        &copy_url,
        &format!(
            "\\copy sigint.signal_detections ({COPY_COLUMNS}) FROM '{}' WITH (FORMAT csv)",
            csv_path.display()
        ),
    )?;
    let copy_secs = t.elapsed().as_secs_f64();
    let copied: usize = psql(
        pg_bin,
        &copy_url,
        "SELECT count(*) FROM sigint.signal_detections",
    )?
    .parse()?;
    let copy_rate = copied as f64 / copy_secs;
    println!(
        "\n## (a) baseline: psql COPY\n{copied} rows in {copy_secs:.2} s = {copy_rate:.0} rows/s"
    );
    if args.map_only {
        psql(pg_bin, &copy_url, "VACUUM ANALYZE sigint.signal_detections")?;
        let server = start_server(server_bin, &copy_url, 4)?;
        let client = client()?;
        wait_ready(&client, &server.addr).await?;
        let spots: Vec<(f64, f64)> = rows
            .iter()
            .step_by((rows.len() / 10_000).max(1))
            .map(|r| (r.lat, r.lon))
            .collect();
        return map_serving(args, &client, &server, &spots, &copy_url).await;
    }
    if args.scale_only {
        return scale_out(
            args, server_bin, pg_bin, admin_url, dir, &rows, &copy_url, copy_rate,
        )
        .await;
    }

    // (b) HTTP ingest through the real server, fresh table per concurrency level.
    // No partitions are made for the HTTP runs: the server creates each month as its first rows
    // arrive, concurrently, as it does for real devices.
    let http_url = create_db(admin_url, "bench_http").await?;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        rows.chunks(args.batch)
            .map(|chunk| serde_json::to_vec(&chunk.iter().map(json_item).collect::<Vec<_>>()))
            .collect::<Result<_, _>>()?,
    );
    let max_conc = args.concurrency.iter().copied().max().unwrap_or(1);
    let server = start_server(server_bin, &http_url, max_conc + 2)?;
    let client = client()?;
    wait_ready(&client, &server.addr).await?;
    println!("\n## (b) HTTP ingest, batches of {}\n| concurrency | rows/s | ratio to COPY | request p50 ms | p99 ms | server peak RSS MiB | registry queue at end | registry caught up after s |\n|---|---|---|---|---|---|---|---|", args.batch);
    let mut best_ratio: f64 = 0.0;
    for &conc in &args.concurrency {
        // Every level starts without the months it writes to (dropping them also empties them).
        psql(
            pg_bin,
            &http_url,
            "SELECT count(*) FROM sigint.drop_partitions_before(now() + interval '1 month'); \
             TRUNCATE sigint.signal_detections, sigint.idempotency_keys, \
             sigint.registry_queue, sigint.transmitters, sigint.device_minutes, \
             sigint.following_queue, sigint.following, sigint.pair_sightings",
        )?;
        let (secs, mut latencies) = ingest_all(&client, &server.addr, &bodies, conc).await?;
        let stored: usize = psql(
            pg_bin,
            &http_url,
            "SELECT count(*) FROM sigint.signal_detections",
        )?
        .parse()?;
        // The transmitter registry runs beside ingest: how far behind it was at the end, and
        // how long it took to catch up.
        let queued: usize = psql(
            pg_bin,
            &http_url,
            "SELECT count(*) FROM sigint.registry_queue",
        )?
        .parse()?;
        // Caught up: every detection folded and every pair it touched scored.
        let caught_up = Instant::now();
        loop {
            let left: usize = psql(
                pg_bin,
                &http_url,
                "SELECT (SELECT count(*) FROM sigint.registry_queue) \
                 + (SELECT count(*) FROM sigint.following_queue)",
            )?
            .parse()?;
            if left == 0 {
                break;
            }
            if caught_up.elapsed() > Duration::from_secs(600) {
                bail!("the registry did not catch up within 10 minutes ({left} queued)");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let catch_up = caught_up.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let rate = stored as f64 / secs;
        best_ratio = best_ratio.max(rate / copy_rate);
        let rss = peak_rss_kib(server.child.id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;
        println!(
            "| {conc} | {rate:.0} | {:.2} | {:.1} | {:.1} | {rss:.1} | {queued} | {catch_up:.1} |",
            rate / copy_rate,
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0)
        );
        if stored != rows.len() {
            bail!("stored {stored} of {} rows", rows.len());
        }
    }
    println!("best HTTP/COPY ratio: {best_ratio:.2} (target >= 0.80)");
    registry_timings(&client, &server).await?;

    // (c) Query latency on the full table, sequential requests so each figure is one request's.
    psql(pg_bin, &http_url, "VACUUM ANALYZE sigint.signal_detections")?;
    let mut rng = StdRng::seed_from_u64(7);
    let end = Utc::now();
    let start = end - chrono::Duration::days(91);
    println!("\n## (c) query latency on {} rows ({} requests each)\n| query | p50 ms | p95 ms | p99 ms | mean features |\n|---|---|---|---|---|", rows.len(), args.queries);
    type Kind = (&'static str, Box<dyn Fn(&mut StdRng) -> String>);
    // Map users look where the data is: centre queries on stored positions.
    // Leaked once per run so the query closures can share it by plain reference.
    let spots: &'static [(f64, f64)] = Vec::leak(
        rows.iter()
            .step_by((rows.len() / 10_000).max(1))
            .map(|r| (r.lat, r.lon))
            .collect(),
    );
    let near_city = move |rng: &mut StdRng| spots[rng.gen_range(0..spots.len())];
    let first_id: i64 = psql(
        pg_bin,
        &http_url,
        "SELECT min(id) FROM sigint.signal_detections",
    )?
    .parse()?;
    let last_page_start = first_id + (rows.len() as i64 - 1000).max(1);
    let kinds: Vec<Kind> = vec![
        (
            "bbox block (~200 m)",
            Box::new(move |rng| {
                let (la, lo) = near_city(rng);
                format!(
                    "bbox={},{},{},{}&limit=1000",
                    lo - 0.0015,
                    la - 0.0009,
                    lo + 0.0015,
                    la + 0.0009
                )
            }),
        ),
        (
            "bbox city (~10 km), first 1000",
            Box::new(move |rng| {
                let (la, lo) = near_city(rng);
                format!(
                    "bbox={},{},{},{}&limit=1000",
                    lo - 0.07,
                    la - 0.045,
                    lo + 0.07,
                    la + 0.045
                )
            }),
        ),
        (
            "radius 100 m",
            Box::new(move |rng| {
                let (la, lo) = near_city(rng);
                format!("lat={la}&lon={lo}&radius_m=100&limit=1000")
            }),
        ),
        (
            "radius 1 km",
            Box::new(move |rng| {
                let (la, lo) = near_city(rng);
                format!("lat={la}&lon={lo}&radius_m=1000&limit=1000")
            }),
        ),
        (
            "time window 1 day + bbox city",
            Box::new(move |rng| {
                let (la, lo) = near_city(rng);
                let from = start + chrono::Duration::hours(rng.gen_range(0..24 * 90));
                let to = from + chrono::Duration::days(1);
                let enc = |t: DateTime<Utc>| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        .replace('+', "%2B")
                };
                format!(
                    "bbox={},{},{},{}&start={}&end={}&limit=1000",
                    lo - 0.07,
                    la - 0.045,
                    lo + 0.07,
                    la + 0.045,
                    enc(from),
                    enc(to)
                )
            }),
        ),
        (
            "nearest 10",
            Box::new(move |rng| {
                let (la, lo) = near_city(rng);
                format!("lat={la}&lon={lo}&nearest=10")
            }),
        ),
        (
            "one page of 1000 features (keyset)",
            Box::new(move |rng| {
                format!(
                    "limit=1000&after={}",
                    rng.gen_range(first_id - 1..last_page_start)
                )
            }),
        ),
    ];
    let _ = end;
    for (name, make) in &kinds {
        let mut lat = Vec::with_capacity(args.queries);
        let mut features = 0usize;
        for _ in 0..args.queries {
            let q = make(&mut rng);
            let t = Instant::now();
            let resp = client
                .get(format!("http://{}/api/v1/detections?{q}", server.addr))
                .send()
                .await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!("{name}: HTTP {status}: {}", String::from_utf8_lossy(&body));
            }
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            features += v["numberReturned"].as_u64().unwrap_or(0) as usize;
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.0} |",
            percentile(&lat, 50.0),
            percentile(&lat, 95.0),
            percentile(&lat, 99.0),
            features as f64 / args.queries as f64
        );
    }
    map_serving(args, &client, &server, spots, &http_url).await?;
    let rss = peak_rss_kib(server.child.id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    println!("\nserver peak RSS over the whole run: {rss:.1} MiB (target <= 150 MiB)");
    drop(server);
    large_bodies(server_bin, admin_url, args.large_concurrency).await?;
    detector_quality(server_bin, admin_url, args.scenarios).await?;
    if args.index_study {
        index_study(&rows[..rows.len().min(200_000)], pg_bin, admin_url, dir).await?;
    }
    Ok(())
}

/// The XYZ tile of a position.
fn tile_of(lat: f64, lon: f64, z: u8) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor() as u32;
    let r = lat.to_radians();
    let y =
        ((1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor() as u32;
    (x.min(n as u32 - 1), y.min(n as u32 - 1))
}

/// Latencies (ms) and bytes of GETting each URL once, in order.
async fn timed_gets(client: &reqwest::Client, urls: &[String]) -> Result<(Vec<f64>, f64, usize)> {
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

/// martin serving the same table, for comparison (detections with id and signal type).
struct Martin {
    child: Child,
    addr: String,
}

impl Drop for Martin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_martin(bin: &Path, url: &str, dir: &Path) -> Result<Martin> {
    let port = shadowcheck::db::embedded::free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("martin.yaml");
    std::fs::write(
        &config,
        format!(
            "listen_addresses: '{addr}'\npostgres:\n  connection_string: '{url}'\n  auto_publish: false\n  tables:\n    detections:\n      schema: sigint\n      table: signal_detections\n      srid: 4326\n      geometry_column: location\n      geometry_type: POINT\n      id_column: id\n      properties:\n        ssid: text\n"
        ),
    )?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let martin = Martin { child, addr };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client
            .get(format!("http://{}/catalog", martin.addr))
            .send()
            .await
        {
            if r.status() == 200 {
                return Ok(martin);
            }
        }
        if Instant::now() > deadline {
            bail!("martin did not start");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (f) Map serving on the full table: vector tiles cold and cached (next to martin on the same
/// table when it is installed), an OGC API page of 1000 features, and a streamed export.
async fn map_serving(
    args: &Args,
    client: &reqwest::Client,
    server: &Server,
    spots: &[(f64, f64)],
    url: &str,
) -> Result<()> {
    let martin_bin = args.martin.clone().or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("martin"))
                .find(|p| p.is_file())
        })
    });
    let dir = std::env::temp_dir().join(format!("shadowcheck-bench-martin-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let martin = match &martin_bin {
        Some(bin) => Some(start_martin(bin, url, &dir).await?),
        None => None,
    };
    println!(
        "\n## (f) map serving on the same table ({} distinct tiles per zoom around stored positions, sequential requests)",
        args.tiles
    );
    if martin.is_none() {
        println!("martin not installed: its rows are skipped (`cargo install martin --locked --no-default-features --features postgres`)");
    }
    println!("| server | zoom | cold p50 ms | cold p99 ms | cold tiles/s | cached p50 ms | cached p99 ms | cached tiles/s | mean KiB |\n|---|---|---|---|---|---|---|---|---|");
    let mut rng = StdRng::seed_from_u64(11);
    for z in [10u8, 12, 14, 16] {
        let mut tiles = std::collections::BTreeSet::new();
        let mut tries = 0;
        while tiles.len() < args.tiles && tries < args.tiles * 50 {
            let (la, lo) = spots[rng.gen_range(0..spots.len())];
            tiles.insert(tile_of(la, lo, z));
            tries += 1;
        }
        let mut tiles: Vec<(u32, u32)> = tiles.into_iter().collect();
        // Not in x order: a map pans around.
        for i in (1..tiles.len()).rev() {
            tiles.swap(i, rng.gen_range(0..=i));
        }
        let ours: Vec<String> = tiles
            .iter()
            .map(|(x, y)| format!("http://{}/tiles/detections/{z}/{x}/{y}.pbf", server.addr))
            .collect();
        let mut servers: Vec<(&str, Vec<String>)> = vec![("shadowcheck", ours)];
        if let Some(m) = &martin {
            servers.push((
                "martin",
                tiles
                    .iter()
                    .map(|(x, y)| format!("http://{}/detections/{z}/{x}/{y}", m.addr))
                    .collect(),
            ));
        }
        for (name, urls) in servers {
            let (cold, cold_secs, bytes) = timed_gets(client, &urls).await?;
            let (warm, warm_secs, _) = timed_gets(client, &urls).await?;
            println!(
                "| {name} | {z} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} |",
                percentile(&cold, 50.0),
                percentile(&cold, 99.0),
                urls.len() as f64 / cold_secs,
                percentile(&warm, 50.0),
                percentile(&warm, 99.0),
                urls.len() as f64 / warm_secs,
                bytes as f64 / urls.len() as f64 / 1024.0
            );
        }
    }
    drop(martin);
    let _ = std::fs::remove_dir_all(&dir);

    // OGC API – Features: pages of 1000 in a city box, and a streamed FlatGeobuf export of it.
    let pages: Vec<String> = (0..args.queries.min(100))
        .map(|_| {
            let (la, lo) = spots[rng.gen_range(0..spots.len())];
            format!(
                "http://{}/ogc/collections/detections/items?limit=1000&bbox={},{},{},{}",
                server.addr,
                lo - 0.07,
                la - 0.045,
                lo + 0.07,
                la + 0.045
            )
        })
        .collect();
    let (lat, _, bytes) = timed_gets(client, &pages).await?;
    println!(
        "\n| OGC API – Features page | p50 ms | p99 ms | mean KiB |\n|---|---|---|---|\n| 1000 features, city bbox | {:.1} | {:.1} | {:.0} |",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        bytes as f64 / pages.len() as f64 / 1024.0
    );
    let (_, la, lo) = CITIES[0];
    let export = format!(
        "http://{}/api/v1/detections?f=fgb&bbox={},{},{},{}",
        server.addr,
        lo - 0.2,
        la - 0.12,
        lo + 0.2,
        la + 0.12
    );
    let t = Instant::now();
    let body = client.get(&export).send().await?.bytes().await?;
    let secs = t.elapsed().as_secs_f64();
    let rows = psql_scalar(
        url,
        &format!(
            "SELECT count(*) FROM sigint.signal_detections WHERE location && ST_MakeEnvelope({}, {}, {}, {}, 4326)",
            lo - 0.2,
            la - 0.12,
            lo + 0.2,
            la + 0.12
        ),
    )
    .await?;
    println!(
        "\n| export | rows | seconds | rows/s | MiB |\n|---|---|---|---|---|\n| FlatGeobuf, Berlin box | {rows} | {secs:.2} | {:.0} | {:.1} |",
        rows as f64 / secs,
        body.len() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// Where the registry updater spent its time during (b): each of its statements' mean duration
/// and count, from the server's own query histogram.
async fn registry_timings(client: &reqwest::Client, server: &Server) -> Result<()> {
    let text = client
        .get(format!("http://{}/metrics", server.metrics_addr))
        .send()
        .await?
        .text()
        .await?;
    let value = |series: &str, query: &str| -> f64 {
        let prefix =
            format!("shadowcheck_db_query_duration_seconds_{series}{{query=\"{query}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    println!("registry updater statements during (b): | statement | count | mean ms | total s |");
    for query in [
        "registry_claim",
        "registry_load",
        "registry_save",
        "registry_twins",
        "following_device_minutes",
        "following_queue",
        "following_claim",
        "following_fixes",
        "following_store",
    ] {
        let (sum, count) = (value("sum", query), value("count", query));
        let mean = if count > 0.0 {
            sum / count * 1000.0
        } else {
            0.0
        };
        println!("| {query} | {count:.0} | {mean:.1} | {sum:.1} |");
    }
    Ok(())
}

const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// A `[0,0,…]` array whose JSON text is about `bytes` long: the cheapest text per parsed value,
/// so the costliest body a client can send within the size limit.
fn zeros(bytes: usize) -> serde_json::Value {
    serde_json::Value::Array(vec![0.into(); bytes / 2])
}

/// A detections body just under the size limit: as many items as one batch may hold, each
/// carrying a `raw_data` of small numbers.
fn large_detections_body() -> Result<Vec<u8>> {
    let items = 10_000;
    let pad = BODY_LIMIT / items - 400;
    let t0 = Utc::now() - chrono::Duration::days(1);
    let body: Vec<serde_json::Value> = (0..items)
        .map(|i| {
            serde_json::json!({
                "signal_type": "wifi",
                "detected_at": (t0 + chrono::Duration::milliseconds(i as i64)).to_rfc3339(),
                "latitude": 52.52, "longitude": 13.405,
                "bssid": format!("02:00:00:{:02x}:{:02x}:{:02x}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff),
                "signal_strength_dbm": -60,
                "raw_data": {"pad": zeros(pad)}
            })
        })
        .collect();
    Ok(serde_json::to_vec(&body)?)
}

/// A geosubmit body just under the size limit: reports of one access point each, padded with a
/// field of the client's own (ignored, but parsed) as stumbler apps add them.
fn large_geosubmit_body() -> Result<Vec<u8>> {
    let reports = 8_000;
    let pad = BODY_LIMIT / reports - 400;
    let t0 = (Utc::now() - chrono::Duration::days(1)).timestamp_millis();
    let items: Vec<serde_json::Value> = (0..reports)
        .map(|i| {
            serde_json::json!({
                "timestamp": t0 + i as i64,
                "position": {"latitude": 48.857, "longitude": 2.352, "accuracy": 10.0},
                "wifiAccessPoints": [{"macAddress": format!("02:00:01:{:02x}:{:02x}:{:02x}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff), "signalStrength": -70}],
                "clientOwnField": zeros(pad)
            })
        })
        .collect();
    Ok(serde_json::to_vec(&serde_json::json!({ "items": items }))?)
}

fn rss_kib(pid: u32) -> u64 {
    peak_rss_kib(pid, "VmRSS:").unwrap_or(0)
}

/// (d) Memory under the costliest legal bodies: a fresh server, idle RSS, then
/// `concurrency` maximum-size bodies at once per endpoint; peak RSS above idle.
async fn large_bodies(server_bin: &Path, admin_url: &str, concurrency: usize) -> Result<()> {
    println!(
        "\n## (d) {concurrency} concurrent maximum-size bodies ({} MiB each)\n| endpoint | body MiB | statuses | seconds | idle RSS MiB | peak RSS MiB | peak above idle MiB |\n|---|---|---|---|---|---|---|",
        BODY_LIMIT / (1024 * 1024)
    );
    let cases: [(&str, &str, Vec<u8>); 2] = [
        (
            "/api/v1/detections",
            "application/json",
            large_detections_body()?,
        ),
        ("/v2/geosubmit", "application/json", large_geosubmit_body()?),
    ];
    for (path, content_type, body) in cases {
        if body.len() > BODY_LIMIT {
            bail!(
                "{path}: generated body is {} bytes, over the limit",
                body.len()
            );
        }
        let url = create_db(admin_url, "bench_large").await?;
        // A pool large enough that the key's database share admits all of them at once.
        let server = start_server(server_bin, &url, 2 * concurrency + 2)?;
        let client = client()?;
        wait_ready(&client, &server.addr).await?;
        let pid = server.child.id();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = rss_kib(pid);
        // Forget the start-up peak, so VmHWM is this phase's (Linux: clear_refs 5).
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
        let body = axum::body::Bytes::from(body);
        let t = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let client = client.clone();
                let url = format!("http://{}{path}", server.addr);
                let body = body.clone();
                tokio::spawn(async move {
                    let resp = client
                        .post(url)
                        .header("content-type", content_type)
                        .body(body)
                        .send()
                        .await?;
                    let status = resp.status().as_u16();
                    let text = resp.text().await?;
                    Ok::<_, reqwest::Error>((status, text))
                })
            })
            .collect();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        let mut refusal = None;
        for task in tasks {
            let (status, text) = task.await??;
            *statuses.entry(status).or_default() += 1;
            if status >= 300 {
                refusal.get_or_insert(text);
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let peak = peak_rss_kib(pid, "VmHWM:").unwrap_or(0);
        let statuses = statuses
            .iter()
            .map(|(s, n)| format!("{n}x{s}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "| {path} | {:.1} | {statuses} | {secs:.1} | {:.1} | {:.1} | {:.1} |",
            body.len() as f64 / 1048576.0,
            idle as f64 / 1024.0,
            peak as f64 / 1024.0,
            peak.saturating_sub(idle) as f64 / 1024.0
        );
        if let Some(text) = refusal {
            println!("|  | first refusal: {} |", text.replace('|', "/"));
        }
        drop(server);
    }
    println!("(target: peak above idle <= 150 MiB)");
    Ok(())
}

/// Each optional index: COPY rate without it vs with every index, and its query with vs without.
async fn index_study(rows: &[Row], pg_bin: &Path, admin_url: &str, dir: &Path) -> Result<()> {
    let url = create_db(admin_url, "bench_index").await?;
    prepare_partitions(&url, rows).await?;
    let csv_path = dir.join("index-rows.csv");
    let mut text = String::with_capacity(rows.len() * 200);
    for r in rows {
        csv_line(r, &mut text);
    }
    std::fs::write(&csv_path, text)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&csv_path, std::fs::Permissions::from_mode(0o644))?;
    }
    let copy = || -> Result<f64> {
        psql(pg_bin, &url, "TRUNCATE sigint.signal_detections")?;
        let t = Instant::now();
        psql(
            pg_bin,
            &url,
            &format!(
                "\\copy sigint.signal_detections ({COPY_COLUMNS}) FROM '{}' WITH (FORMAT csv)",
                csv_path.display()
            ),
        )?;
        Ok(rows.len() as f64 / t.elapsed().as_secs_f64())
    };
    let pool = sqlx::PgPool::connect(&url).await?;
    let mid = &rows[rows.len() / 2];
    let day = |t: DateTime<Utc>| (t.to_rfc3339(), (t + chrono::Duration::days(1)).to_rfc3339());
    let (from, to) = day(mid.at);
    let wifi = rows
        .iter()
        .find(|r| r.kind == "wifi")
        .map(|r| r.mac.clone())
        .unwrap_or_default();
    let ble = rows
        .iter()
        .find(|r| r.kind == "ble")
        .map(|r| r.mac.clone())
        .unwrap_or_default();
    let studies: Vec<(&str, String)> = vec![
        ("signal_detections_location", format!("SELECT count(*) FROM sigint.signal_detections WHERE location && ST_MakeEnvelope({}, {}, {}, {}, 4326)", mid.lon - 0.0015, mid.lat - 0.0009, mid.lon + 0.0015, mid.lat + 0.0009)),
        ("signal_detections_type_time", format!("SELECT count(*) FROM sigint.signal_detections WHERE signal_type = 'cellular' AND detected_at >= '{from}' AND detected_at < '{to}'")),
        ("signal_detections_device", format!("SELECT count(*) FROM sigint.signal_detections WHERE device_id = '{}' AND detected_at >= '{from}' AND detected_at < '{to}'", mid.device)),
        ("signal_detections_bssid", format!("SELECT count(*) FROM sigint.signal_detections WHERE bssid = '{wifi}'")),
        ("signal_detections_bt_address", format!("SELECT count(*) FROM sigint.signal_detections WHERE bt_address = '{ble}'")),
        ("signal_detections_ssid_trgm", "SELECT count(*) FROM sigint.signal_detections WHERE ssid ILIKE '%et-123%'".to_owned()),
        ("signal_detections_suspicious", "SELECT count(*) FROM sigint.signal_detections WHERE is_suspicious".to_owned()),
    ];
    let time_query = |sql: String| {
        let pool = pool.clone();
        async move {
            let mut best = f64::MAX;
            for _ in 0..15 {
                let t = Instant::now();
                sqlx::query(&sql).execute(&pool).await?;
                best = best.min(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<f64, anyhow::Error>(best)
        }
    };
    let all = copy()?;
    psql(pg_bin, &url, "ANALYZE sigint.signal_detections")?;
    println!("\n## index study on {} rows: COPY {all:.0} rows/s with every index\n| index | COPY rows/s without it | ingest cost | its query with (ms, best of 15) | without (ms) | speed-up |\n|---|---|---|---|---|---|", rows.len());
    for (index, query) in studies {
        let with = time_query(query.clone()).await?;
        let def = psql(
            pg_bin,
            &url,
            &format!("SELECT pg_get_indexdef('sigint.{index}'::regclass)"),
        )?;
        psql(pg_bin, &url, &format!("DROP INDEX sigint.{index}"))?;
        let without_rate = copy()?;
        psql(pg_bin, &url, "ANALYZE sigint.signal_detections")?;
        let without = time_query(query).await?;
        // pg_get_indexdef says ON ONLY for a partitioned parent; recreate it on every partition.
        psql(pg_bin, &url, &def.replace(" ON ONLY ", " ON "))?;
        println!(
            "| {index} | {without_rate:.0} | {:.1} % | {with:.2} | {without:.2} | {:.1}x |",
            (1.0 - all / without_rate) * 100.0,
            without / with.max(0.001)
        );
        copy()?;
    }
    pool.close().await;
    Ok(())
}

/// Precision and recall of `n` counts.
#[derive(Default)]
struct Confusion {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Confusion {
    fn row(&self, name: &str) -> String {
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                "n/a".to_owned()
            } else {
                format!("{:.3}", a as f64 / b as f64)
            }
        };
        format!(
            "| {name} | {} | {} | {} | {} | {} |",
            self.tp,
            self.fp,
            self.fn_,
            ratio(self.tp, self.tp + self.fp),
            ratio(self.tp, self.tp + self.fn_)
        )
    }
}

/// (e) The detector on randomised scenarios with known truth (src/analysis/scenario.rs), each
/// set up as a user would (home as a safe zone, their phone allow-listed) and ingested over
/// HTTP: who is flagged against who should be, and how long until the verdict.
async fn detector_quality(server_bin: &Path, admin_url: &str, n: u64) -> Result<()> {
    use shadowcheck::analysis::scenario;
    use std::collections::{BTreeMap, BTreeSet};
    let url = create_db(admin_url, "bench_detector").await?;
    let server = start_server(server_bin, &url, 8)?;
    let client = client()?;
    wait_ready(&client, &server.addr).await?;
    let base = format!("http://{}", server.addr);
    let start = Utc::now() - chrono::Duration::days(3);
    let mut followers = Confusion::default();
    let mut flags: BTreeMap<&str, Confusion> = BTreeMap::new();
    let mut verdict_secs = Vec::new();
    let mut missed: BTreeMap<String, usize> = BTreeMap::new();
    let mut false_alarms: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 0..n {
        let s = scenario::generate(1_000 + seed, start);
        let post = |path: &str, body: serde_json::Value| {
            client.post(format!("{base}{path}")).json(&body).send()
        };
        post(
            "/api/v1/safe-zones",
            serde_json::json!({"name": format!("home-{seed}"), "latitude": s.home.0,
                               "longitude": s.home.1, "radius_m": 200}),
        )
        .await?
        .error_for_status()?;
        post(
            "/api/v1/allowlist",
            serde_json::json!({"radio": s.own_phone.0, "identifier": s.own_phone.1}),
        )
        .await?
        .error_for_status()?;
        for chunk in s.detections.chunks(1_000) {
            let resp = post("/api/v1/detections", serde_json::json!(chunk)).await?;
            if resp.status() != 201 {
                bail!("scenario {seed}: HTTP {}", resp.status());
            }
        }
        let t = Instant::now();
        loop {
            let queued: usize = psql_scalar(&url, "SELECT (SELECT count(*) FROM sigint.registry_queue) + (SELECT count(*) FROM sigint.following_queue)").await?;
            if queued == 0 {
                break;
            }
            if t.elapsed() > Duration::from_secs(300) {
                bail!("scenario {seed}: the detector did not settle in 5 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        verdict_secs.push(t.elapsed().as_secs_f64());
        // Everything flagged for this capture device, and everything it saw with a flag.
        let threats: serde_json::Value = client
            .get(format!(
                "{base}/api/v1/threats?device_id={}&limit=1000",
                s.device
            ))
            .send()
            .await?
            .json()
            .await?;
        let flagged: BTreeSet<String> = threats["threats"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| {
                        Some(format!(
                            "{}/{}",
                            t["radio"].as_str()?,
                            t["identifier"].as_str()?
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let truth: BTreeMap<String, &scenario::Truth> = s
            .truth
            .iter()
            .map(|t| (format!("{}/{}", t.radio, t.identifier), t))
            .collect();
        for (id, t) in &truth {
            match (t.follower, flagged.contains(id)) {
                (true, true) => followers.tp += 1,
                (true, false) => {
                    followers.fn_ += 1;
                    *missed.entry(t.role.to_owned()).or_default() += 1;
                }
                (false, true) => {
                    followers.fp += 1;
                    *false_alarms.entry(t.role.to_owned()).or_default() += 1;
                }
                (false, false) => {}
            }
        }
        for id in flagged.iter().filter(|id| !truth.contains_key(*id)) {
            followers.fp += 1;
            *false_alarms.entry(format!("background {id}")).or_default() += 1;
        }
        for flag in shadowcheck::domain::rogue::ALL_FLAGS {
            let listed: serde_json::Value = client
                .get(format!(
                    "{base}/api/v1/transmitters?flag={flag}&device_id={}&limit=1000",
                    s.device
                ))
                .send()
                .await?
                .json()
                .await?;
            let got: BTreeSet<String> = listed["features"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let c = flags.entry(flag).or_default();
            for (id, t) in &truth {
                match (t.flag == Some(*flag), got.contains(id)) {
                    (true, true) => c.tp += 1,
                    (true, false) => c.fn_ += 1,
                    (false, true) => c.fp += 1,
                    (false, false) => {}
                }
            }
            c.fp += got.iter().filter(|id| !truth.contains_key(*id)).count();
        }
    }
    verdict_secs.sort_by(f64::total_cmp);
    println!("\n## (e) detector on {n} randomised known-truth scenarios\n| class | true positives | false positives | false negatives | precision | recall |\n|---|---|---|---|---|---|");
    println!("{}", followers.row("follower (suspicious or alert)"));
    for (flag, c) in &flags {
        println!("{}", c.row(flag));
    }
    println!("missed followers by role: {missed:?}; false alarms by role: {false_alarms:?}");
    println!(
        "verdict after ingest: p50 {:.1} s, max {:.1} s (score_settle_ms 2000 included)",
        percentile(&verdict_secs, 50.0),
        verdict_secs.last().copied().unwrap_or(f64::NAN)
    );
    drop(server);
    Ok(())
}

async fn psql_scalar(url: &str, sql: &str) -> Result<usize> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// PgBouncer with the stack's own configuration, moved onto loopback in front of `url`.
struct Bouncer {
    child: std::process::Child,
    port: u16,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // SAFETY: signalling our own child (runuser passes it on).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn start_bouncer(url: &str, dir: &Path, pool_size: usize) -> Result<Bouncer> {
    let target = reqwest::Url::parse(url)?;
    let port = shadowcheck::db::embedded::free_port()?;
    let home = dir.join(format!("pgbouncer-{port}"));
    std::fs::create_dir_all(&home)?;
    std::fs::write(
        home.join("userlist.txt"),
        format!(
            "\"{}\" \"{}\"\n",
            target.username(),
            target.password().unwrap_or_default()
        ),
    )?;
    let ini = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker/pgbouncer/pgbouncer.ini"
    ))?
    .replace(
        "host=postgis port=5432 dbname=shadowcheck",
        &format!(
            "host=127.0.0.1 port={} dbname={}",
            target.port().unwrap_or(5432),
            target.path().trim_start_matches('/')
        ),
    )
    .replace("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
    .replace("listen_port = 6432", &format!("listen_port = {port}"))
    .replace(
        "auth_file = /run/secrets/pgbouncer_userlist",
        &format!("auth_file = {}/userlist.txt", home.display()),
    )
    .replace(
        "default_pool_size = 20",
        &format!("default_pool_size = {pool_size}"),
    );
    std::fs::write(home.join("pgbouncer.ini"), ini)?;
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&home)
            .status()?;
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "/usr/sbin/pgbouncer"]);
        c
    } else {
        Command::new("/usr/sbin/pgbouncer")
    };
    let child = cmd
        .arg(home.join("pgbouncer.ini"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start /usr/sbin/pgbouncer (Debian package pgbouncer)")?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Bouncer { child, port });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("pgbouncer did not listen")
}

/// (g) What one node holds, and what the pooler costs: bytes per stored row (heap and indexes,
/// from the COPY table), then HTTP ingest at the highest concurrency and bounding-box reads,
/// each on a fresh database: directly, directly with `database.transaction_pooler` on (the
/// per-checkout transactions and no statement cache alone), and through PgBouncer.
#[allow(clippy::too_many_arguments)]
async fn scale_out(
    args: &Args,
    server_bin: &Path,
    pg_bin: &Path,
    admin_url: &str,
    dir: &Path,
    rows: &[Row],
    copy_url: &str,
    copy_rate: f64,
) -> Result<()> {
    psql(pg_bin, copy_url, "VACUUM ANALYZE sigint.signal_detections")?;
    let sizes = psql(
        pg_bin,
        copy_url,
        "SELECT sum(pg_relation_size(inhrelid)) || ' ' || sum(pg_indexes_size(inhrelid)) \
         FROM pg_inherits WHERE inhparent = 'sigint.signal_detections'::regclass",
    )?;
    let mut parts = sizes.split_whitespace().map(str::parse::<f64>);
    let (heap, indexes) = (
        parts.next().context("heap size")??,
        parts.next().context("index size")??,
    );
    let n = rows.len() as f64;
    println!(
        "\n## (g) scale-out\nstorage: {:.0} bytes per row ({:.0} heap + {:.0} indexes), {:.2} GiB per million rows",
        (heap + indexes) / n,
        heap / n,
        indexes / n,
        (heap + indexes) / n * 1e6 / f64::from(1u32 << 30)
    );
    let conc = args.concurrency.iter().copied().max().unwrap_or(4);
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        rows.chunks(args.batch)
            .map(|chunk| serde_json::to_vec(&chunk.iter().map(json_item).collect::<Vec<_>>()))
            .collect::<Result<_, _>>()?,
    );
    let spots: Vec<(f64, f64)> = rows
        .iter()
        .step_by((rows.len() / 1_000).max(1))
        .map(|r| (r.lat, r.lon))
        .collect();
    println!(
        "| path | ingest rows/s (concurrency {conc}) | ratio to COPY | request p50 / p99 ms | box read p50 / p99 ms |\n|---|---|---|---|---|"
    );
    let client = client()?;
    for (i, (label, through_bouncer, pooler)) in [
        ("direct", false, false),
        ("direct, transaction_pooler on", false, true),
        ("PgBouncer 1.18, transaction mode", true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let url = create_db(admin_url, &format!("bench_scale_{i}")).await?;
        let bouncer = if through_bouncer {
            Some(start_bouncer(&url, dir, conc + 2)?)
        } else {
            None
        };
        let server_url = match &bouncer {
            Some(b) => {
                let mut u = reqwest::Url::parse(&url)?;
                u.set_port(Some(b.port)).ok();
                u.set_path("/shadowcheck");
                u.to_string()
            }
            None => url.clone(),
        };
        let pooler_flag = if pooler { "true" } else { "false" };
        let server = start_server_with(
            server_bin,
            &server_url,
            conc + 2,
            &[("SHADOWCHECK__DATABASE__TRANSACTION_POOLER", pooler_flag)],
        )?;
        wait_ready(&client, &server.addr).await?;
        let (secs, mut latencies) = ingest_all(&client, &server.addr, &bodies, conc).await?;
        latencies.sort_by(f64::total_cmp);
        let rate = n / secs;
        psql(pg_bin, &url, "VACUUM ANALYZE sigint.signal_detections")?;
        let urls: Vec<String> = (0..args.queries)
            .map(|k| {
                let (lat, lon) = spots[k % spots.len()];
                format!(
                    "http://{}/api/v1/detections?bbox={},{},{},{}&limit=100",
                    server.addr,
                    lon - 0.002,
                    lat - 0.002,
                    lon + 0.002,
                    lat + 0.002
                )
            })
            .collect();
        let (mut reads, _, _) = timed_gets(&client, &urls).await?;
        reads.sort_by(f64::total_cmp);
        println!(
            "| {label} | {rate:.0} | {:.2} | {:.1} / {:.1} | {:.2} / {:.2} |",
            rate / copy_rate,
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            percentile(&reads, 50.0),
            percentile(&reads, 99.0)
        );
        drop(server);
        drop(bouncer);
    }
    Ok(())
}
