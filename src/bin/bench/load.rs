//! (i) Liveness and registry lag under sustained ingest with followers: ten capture devices
//! driving at 10 m/s, each scanning once a second — ten BLE tags riding along (100 followers in
//! all) and ninety roadside access points — for `--load-secs` seconds at 1,000 rows/s, paced in
//! real time. Halfway through, a safe zone is added, which requeues every scored pair (a
//! rescoring burst). Meanwhile `/api/v1/health/live` is probed every 20 ms and the registry's
//! queue read from `/metrics` every second.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use serde_json::{json, Value};

use crate::harness::{
    client, create_db, percentile, post_detections, psql_scalar, start_server, wait_ready,
};

const DEVICES: usize = 10;
const FOLLOWERS_PER_DEVICE: usize = 10;
const ROADSIDE_PER_SCAN: usize = 90;
const SPEED_M_S: f64 = 10.0;

/// One second of scans from every device: 1,000 rows.
fn second(t: usize, now: chrono::DateTime<Utc>) -> Vec<Value> {
    let mut rows = Vec::with_capacity(DEVICES * (FOLLOWERS_PER_DEVICE + ROADSIDE_PER_SCAN));
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for d in 0..DEVICES {
        let device = format!("10ad0000-0000-4000-8000-{:012x}", d);
        // Each device drives east from its own start; 1 degree of longitude ~ 68 km here.
        let (lat, lon0) = (52.0 + d as f64 * 0.05, 13.0);
        let lon = lon0 + (t as f64 * SPEED_M_S) / 68_000.0;
        for f in 0..FOLLOWERS_PER_DEVICE {
            rows.push(
                json!({"signal_type": "ble", "bt_address": format!("c4:{d:02x}:{f:02x}:00:00:01"),
                "bt_rssi": -60, "detected_at": at, "latitude": lat + 0.00002, "longitude": lon,
                "accuracy_meters": 5.0, "device_id": device,
                "ble_service_uuids": ["feed"]}),
            );
        }
        // Roadside access points every 20 m, each heard over ~90 s of driving (900 m).
        let slot = (t as f64 * SPEED_M_S / 20.0) as usize;
        for k in 0..ROADSIDE_PER_SCAN {
            let ap = slot.saturating_sub(k / 2) * 2 + k % 2;
            rows.push(json!({"signal_type": "wifi", "bssid": format!("a4:2b:{d:02x}:{:02x}:{:02x}:{:02x}", (ap >> 16) & 0xff, (ap >> 8) & 0xff, ap & 0xff),
                "signal_strength_dbm": -70, "detected_at": at, "latitude": lat, "longitude": lon,
                "accuracy_meters": 5.0, "device_id": device}));
        }
    }
    rows
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

pub(crate) async fn live_under_load(server_bin: &Path, admin_url: &str, secs: usize) -> Result<()> {
    let url = create_db(admin_url, "bench_load").await?;
    let server = start_server(server_bin, &url, 8)?;
    let client = client()?;
    wait_ready(&client, &server.addr).await?;
    let base = format!("http://{}", server.addr);
    let done = Arc::new(AtomicBool::new(false));

    // Liveness, probed on its own connection every 20 ms.
    let probe = {
        let (done, live) = (Arc::clone(&done), format!("{base}/api/v1/health/live"));
        let probe_client = reqwest::Client::new();
        tokio::spawn(async move {
            let mut ms = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = probe_client
                    .get(&live)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                ms.push((t.elapsed().as_secs_f64() * 1000.0, ok));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ms
        })
    };
    // The registry's queue, every second.
    let lag = {
        let (done, metrics) = (
            Arc::clone(&done),
            format!("http://{}/metrics", server.metrics_addr),
        );
        let c = client.clone();
        tokio::spawn(async move {
            let mut rows = Vec::new();
            while !done.load(Ordering::Relaxed) {
                if let Ok(r) = c.get(&metrics).send().await {
                    let text = r.text().await.unwrap_or_default();
                    rows.push((
                        metric(&text, "shadowcheck_registry_lag_rows").unwrap_or(f64::NAN),
                        metric(&text, "shadowcheck_following_queue_pairs").unwrap_or(f64::NAN),
                    ));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            rows
        })
    };

    let started = Instant::now();
    let mut late = 0usize;
    for t in 0..secs {
        if t == secs / 2 {
            // A safe zone far from every route: every scored pair is requeued and rescored.
            let zone =
                json!({"name": "burst", "latitude": 48.0, "longitude": 2.0, "radius_m": 100});
            client
                .post(format!("{base}/api/v1/safe-zones"))
                .json(&zone)
                .send()
                .await?;
        }
        let rows = second(t, Utc::now());
        post_detections(&client, &base, &rows, 500)
            .await
            .context("ingest")?;
        let next = Duration::from_secs(t as u64 + 1);
        match next.checked_sub(started.elapsed()) {
            Some(wait) => tokio::time::sleep(wait).await,
            None => late += 1,
        }
    }
    let sent_in = started.elapsed().as_secs_f64();
    let t = Instant::now();
    while psql_scalar(&url, "SELECT (SELECT count(*) FROM sigint.registry_queue) + (SELECT count(*) FROM sigint.following_queue)").await? > 0 {
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the registry and detector did not catch up in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let probes = probe.await?;
    let lags = lag.await?;
    let mut ms: Vec<f64> = probes.iter().map(|(m, _)| *m).collect();
    ms.sort_by(f64::total_cmp);
    let failed = probes.iter().filter(|(_, ok)| !ok).count();
    let warned = psql_scalar(
        &url,
        "SELECT count(*) FROM sigint.following WHERE level IN ('suspicious', 'alert')",
    )
    .await
    .unwrap_or(0);
    println!(
        "\n## (i) liveness and registry lag: {secs} s at 1,000 rows/s ({DEVICES} devices driving, {} followers, {ROADSIDE_PER_SCAN} roadside access points per scan), a rescoring burst at {} s",
        DEVICES * FOLLOWERS_PER_DEVICE,
        secs / 2
    );
    println!(
        "sent {} rows in {sent_in:.1} s ({late} seconds late); /health/live over {} probes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {failed} failed",
        secs * DEVICES * (FOLLOWERS_PER_DEVICE + ROADSIDE_PER_SCAN),
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    println!("registry lag (rows) and detector queue (pairs), every 10 s:");
    for (i, (rows, pairs)) in lags.iter().enumerate().step_by(10) {
        println!("  t={i:>4} s  lag {rows:>8.0} rows  queue {pairs:>6.0} pairs");
    }
    let max_lag = lags.iter().map(|l| l.0).fold(0.0, f64::max);
    println!(
        "max lag {max_lag:.0} rows; caught up {drained:.1} s after the last request; pairs at suspicious or above: {warned}"
    );
    drop(server);
    Ok(())
}
