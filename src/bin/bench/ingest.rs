//! (a) the physical limit, psql COPY; (b) HTTP ingest through the real server at each
//! concurrency, with the registry beside it; and the registry's own timings.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::data::{csv_line, json_item, prepare_partitions, Row, COPY_COLUMNS};
use crate::harness::{
    client, create_db, peak_rss_kib, percentile, psql, start_server, wait_ready, Server,
};
use crate::Args;

/// The COPY table: where it is, and how fast rows went in.
pub(crate) struct Baseline {
    pub(crate) url: String,
    pub(crate) rows_per_sec: f64,
}

/// (a) psql `\copy` of the same rows into the same schema with the same indexes.
pub(crate) async fn copy_baseline(
    rows: &[Row],
    pg_bin: &Path,
    admin_url: &str,
    dir: &Path,
) -> Result<Baseline> {
    let copy_url = create_db(admin_url, "bench_copy").await?;
    prepare_partitions(&copy_url, rows).await?;
    let csv_path = dir.join("rows.csv");
    {
        let mut text = String::with_capacity(rows.len() * 200);
        for r in rows {
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
    Ok(Baseline {
        url: copy_url,
        rows_per_sec: copy_rate,
    })
}

/// (b) HTTP ingest, a fresh table per concurrency level; the server stays up for the reads.
pub(crate) async fn http_ingest(
    args: &Args,
    server_bin: &Path,
    pg_bin: &Path,
    admin_url: &str,
    rows: &[Row],
    copy_rate: f64,
) -> Result<(Server, String)> {
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
    Ok((server, http_url))
}

/// Posts every body, `conc` at a time; the wall time and each request's milliseconds.
pub(crate) async fn ingest_all(
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

/// Where the registry updater spent its time during (b): each of its statements' mean duration
/// and count, from the server's own query histogram.
pub(crate) async fn registry_timings(client: &reqwest::Client, server: &Server) -> Result<()> {
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
