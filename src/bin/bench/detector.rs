//! (e) The following detector's precision and recall on randomised known-truth scenarios.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;

use anyhow::{bail, Result};

use crate::harness::{client, create_db, percentile, psql_scalar, start_server, wait_ready};

/// Precision and recall of `n` counts.
#[derive(Default)]
pub(crate) struct Confusion {
    pub(crate) tp: usize,
    pub(crate) fp: usize,
    pub(crate) fn_: usize,
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
pub(crate) async fn detector_quality(server_bin: &Path, admin_url: &str, n: u64) -> Result<()> {
    use shadowcheck_scenarios as scenario;
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
        for flag in shadowcheck::domain::rogue::RogueFlag::ALL.map(|f| f.as_str()) {
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
                match (t.flag == Some(flag), got.contains(id)) {
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
