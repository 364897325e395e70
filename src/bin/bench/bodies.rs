//! (d) Memory under the largest bodies the server accepts, sent at once.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chrono::Utc;

use crate::harness::{client, create_db, peak_rss_kib, rss_kib, start_server, wait_ready};

pub(crate) const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// A `[0,0,…]` array whose JSON text is about `bytes` long: the cheapest text per parsed value,
/// so the costliest body a client can send within the size limit.
pub(crate) fn zeros(bytes: usize) -> serde_json::Value {
    serde_json::Value::Array(vec![0.into(); bytes / 2])
}

/// A detections body just under the size limit: as many items as one batch may hold, each
/// carrying a `raw_data` of small numbers.
pub(crate) fn large_detections_body() -> Result<Vec<u8>> {
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
pub(crate) fn large_geosubmit_body() -> Result<Vec<u8>> {
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

/// (d) Memory under the costliest legal bodies: a fresh server, idle RSS, then
/// `concurrency` maximum-size bodies at once per endpoint; peak RSS above idle.
pub(crate) async fn large_bodies(
    server_bin: &Path,
    admin_url: &str,
    concurrency: usize,
) -> Result<()> {
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
