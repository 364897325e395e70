//! (g) Scale-out: bytes per stored row, ingest and reads directly, with the pooler setting, and
//! through PgBouncer.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::data::{json_item, Row};
use crate::harness::{
    client, create_db, percentile, psql, start_server_with, timed_gets, wait_ready, Process,
};
use crate::ingest::ingest_all;
use crate::Args;

/// PgBouncer with the stack's own configuration, moved onto loopback in front of `url`.
pub(crate) struct Bouncer {
    _process: Process,
    pub(crate) port: u16,
}

pub(crate) fn start_bouncer(url: &str, dir: &Path, pool_size: usize) -> Result<Bouncer> {
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
            return Ok(Bouncer {
                _process: Process(child),
                port,
            });
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
pub(crate) async fn scale_out(
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
