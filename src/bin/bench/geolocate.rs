//! (h) `/v1/geolocate` on real scans: fifteen real WiGLE exports of two phones walking a campus
//! (tests/fixtures/real/wigle-ariel, bmitay4/WiGLE-WiFi). Every fifth scan of each file is held
//! out; the rest is ingested over HTTP and folded by the registry; each held-out scan's Wi-Fi list
//! is sent to `/v1/geolocate` and the answer compared with the scan's own GPS fix. Beside it, two
//! simple peers on the same registry: the strongest heard access point's position, and the plain
//! centroid of every heard access point the registry knows.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use shadowcheck::domain::geo::haversine_m;
use shadowcheck::formats::{CaptureFile, FileFormat, Input};

use crate::harness::{
    client, create_db, percentile, post_detections, psql_scalar, start_server, wait_ready,
};

/// One scan: where the phone was, and what it heard (address, signal, SSID).
struct Scan {
    at: (f64, f64),
    heard: Vec<(String, Option<i64>, Option<String>)>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real/wigle-ariel")
}

/// Reads every export with the service's own WiGLE reader: the training rows (as detections) and
/// the held-out scans.
fn split() -> Result<(Vec<Value>, Vec<Scan>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let (mut training, mut held_out) = (Vec::new(), Vec::new());
    for path in files {
        let file = CaptureFile::open(
            FileFormat::WigleCsv,
            Input::Path(path.clone()),
            None,
            None,
            None,
        )
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.0))?;
        let mut rows = Vec::new();
        let _ = file.read(&mut |(_, row)| {
            if let Ok(v) = row {
                rows.push(v);
            }
            true
        });
        // A scan: the rows written at one time and place.
        let mut scans: BTreeMap<(String, String, String), Vec<Value>> = BTreeMap::new();
        for row in rows {
            let key = (
                row["detected_at"].to_string(),
                row["latitude"].to_string(),
                row["longitude"].to_string(),
            );
            scans.entry(key).or_default().push(row);
        }
        for (i, (_, rows)) in scans.into_iter().enumerate() {
            let wifi: Vec<&Value> = rows.iter().filter(|r| r["signal_type"] == "wifi").collect();
            if i % 5 != 2 || wifi.is_empty() {
                training.extend(rows);
                continue;
            }
            let at = (
                rows[0]["latitude"].as_f64().context("latitude")?,
                rows[0]["longitude"].as_f64().context("longitude")?,
            );
            let heard = wifi
                .iter()
                .filter_map(|r| {
                    Some((
                        r["bssid"].as_str()?.to_owned(),
                        r["signal_strength_dbm"].as_i64(),
                        r["ssid"].as_str().map(str::to_owned),
                    ))
                })
                .collect();
            held_out.push(Scan { at, heard });
        }
    }
    Ok((training, held_out))
}

/// Errors (metres) of the scans a method placed, and how many it could not.
#[derive(Default)]
struct Errors {
    metres: Vec<f64>,
    unplaced: usize,
}

impl Errors {
    fn row(&mut self, name: &str) -> String {
        self.metres.sort_by(f64::total_cmp);
        format!(
            "| {name} | {} of {} | {:.0} | {:.0} |",
            self.metres.len(),
            self.metres.len() + self.unplaced,
            percentile(&self.metres, 50.0),
            percentile(&self.metres, 90.0)
        )
    }
}

pub(crate) async fn geolocate_accuracy(server_bin: &Path, admin_url: &str) -> Result<()> {
    let (training, held_out) = split()?;
    let url = create_db(admin_url, "bench_geolocate").await?;
    let server = start_server(server_bin, &url, 4)?;
    let client = client()?;
    wait_ready(&client, &server.addr).await?;
    let base = format!("http://{}", server.addr);
    post_detections(&client, &base, &training, 1_000)
        .await
        .context("training upload")?;
    let t = Instant::now();
    while psql_scalar(&url, "SELECT count(*) FROM sigint.registry_queue").await? > 0 {
        if t.elapsed() > Duration::from_secs(120) {
            bail!("the registry did not fold the training scans in 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool = sqlx::PgPool::connect(&url).await?;
    let placed: Vec<(String, f64, f64)> = sqlx::query_as(
        "SELECT identifier, ST_Y(location), ST_X(location) FROM sigint.transmitters \
         WHERE radio = 'wifi' AND location IS NOT NULL",
    )
    .fetch_all(&pool)
    .await?;
    let registry: HashMap<String, (f64, f64)> = placed
        .into_iter()
        .map(|(m, lat, lon)| (m, (lat, lon)))
        .collect();

    let (mut ours, mut strongest, mut centroid) =
        (Errors::default(), Errors::default(), Errors::default());
    // The peers again, on only the scans ours placed (two agreeing known networks or more).
    let (mut strongest_same, mut centroid_same) = (Errors::default(), Errors::default());
    let mut latencies = Vec::with_capacity(held_out.len());
    for scan in &held_out {
        let body = json!({"wifiAccessPoints": scan.heard.iter().map(|(mac, dbm, ssid)| {
            json!({"macAddress": mac, "signalStrength": dbm, "ssid": ssid})
        }).collect::<Vec<_>>()});
        let t = Instant::now();
        let resp = client
            .post(format!("{base}/v1/geolocate"))
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let answer: Value = resp.json().await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        let placed = match (
            answer["location"]["lat"].as_f64(),
            answer["location"]["lng"].as_f64(),
        ) {
            (Some(lat), Some(lng)) => {
                ours.metres.push(haversine_m(scan.at, (lat, lng)));
                true
            }
            _ if status == 404 => {
                ours.unplaced += 1;
                false
            }
            _ => bail!("geolocate answered {status}: {answer}"),
        };
        let known: Vec<(&(f64, f64), Option<i64>)> = scan
            .heard
            .iter()
            .filter_map(|(mac, dbm, _)| Some((registry.get(mac)?, *dbm)))
            .collect();
        match known.iter().max_by_key(|(_, dbm)| dbm.unwrap_or(-200)) {
            Some((p, _)) => {
                let e = haversine_m(scan.at, **p);
                strongest.metres.push(e);
                if placed {
                    strongest_same.metres.push(e);
                }
            }
            None => strongest.unplaced += 1,
        }
        if known.is_empty() {
            centroid.unplaced += 1;
        } else {
            let n = known.len() as f64;
            let lat = known.iter().map(|(p, _)| p.0).sum::<f64>() / n;
            let lon = known.iter().map(|(p, _)| p.1).sum::<f64>() / n;
            let e = haversine_m(scan.at, (lat, lon));
            centroid.metres.push(e);
            if placed {
                centroid_same.metres.push(e);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "\n## (h) /v1/geolocate on {} held-out real scans (15 WiGLE exports, 2 phones; registry from the other {} rows)\n\
         | method | scans placed | median error m | p90 error m |\n|---|---|---|---|",
        held_out.len(),
        training.len()
    );
    println!("{}", ours.row("ShadowCheck /v1/geolocate"));
    println!("{}", strongest.row("peer: strongest known access point"));
    println!("{}", centroid.row("peer: centroid of known access points"));
    println!(
        "{}",
        strongest_same.row("peer: strongest, on the scans ours placed")
    );
    println!(
        "{}",
        centroid_same.row("peer: centroid, on the scans ours placed")
    );
    println!(
        "(ours answers only with two agreeing known networks, as ichnaea does: one access point alone \
         is not an answer; the peers answer from one)"
    );
    println!(
        "geolocate latency over HTTP: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0)
    );
    drop(server);
    Ok(())
}
