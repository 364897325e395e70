//! (c) Query latency on the full table: sequential requests, so each figure is one request's.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{percentile, psql, Server};
use crate::Args;

pub(crate) async fn latency(
    args: &Args,
    client: &reqwest::Client,
    server: &Server,
    pg_bin: &Path,
    http_url: &str,
    spots: &[(f64, f64)],
    rows: usize,
) -> Result<()> {
    psql(pg_bin, http_url, "VACUUM ANALYZE sigint.signal_detections")?;
    let mut rng = StdRng::seed_from_u64(7);
    let end = Utc::now();
    let start = end - chrono::Duration::days(91);
    println!("\n## (c) query latency on {} rows ({} requests each)\n| query | p50 ms | p95 ms | p99 ms | mean features |\n|---|---|---|---|---|", rows, args.queries);
    type Kind = (&'static str, Box<dyn Fn(&mut StdRng) -> String>);
    // Leaked once per run so the query closures can share it by plain reference.
    let spots: &'static [(f64, f64)] = Vec::leak(spots.to_vec());
    let near_city = move |rng: &mut StdRng| spots[rng.gen_range(0..spots.len())];
    let first_id: i64 = psql(
        pg_bin,
        http_url,
        "SELECT min(id) FROM sigint.signal_detections",
    )?
    .parse()?;
    let last_page_start = first_id + (rows as i64 - 1000).max(1);
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
    Ok(())
}
