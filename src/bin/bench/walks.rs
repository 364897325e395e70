//! (e2) The detector on short walks near home with trackers in the bag (crates/shadowcheck-scenarios
//! `walks`): each walk uploaded as a phone would after it, the levels read once the detector has
//! settled, and beside it an AirGuard-style rule (≥ 3 sightings at ≥ 3 places more than 150 m
//! apart over ≥ 60 minutes, 14 days back, item trackers only) on the same data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::Value;
use shadowcheck_scenarios::walks::{self, Walks};

use crate::harness::{client, create_db, post_detections, psql_scalar, start_server, wait_ready};

/// What one rule said about one scenario: for each address, the first walk (0-based) after which
/// it was warned about (`suspicious` or above), and the addresses on the watch list at the end.
#[derive(Default)]
struct Verdicts {
    warned_after: BTreeMap<String, usize>,
    watched_at_end: BTreeSet<String>,
}

/// How one rule did over every scenario.
#[derive(Default)]
struct Tally {
    trackers: usize,
    warned: usize,
    /// Hours from a tracker's first sighting to its first warning.
    hours: Vec<f64>,
    false_warnings: usize,
    watched: usize,
    watched_carried: usize,
}

impl Tally {
    fn add(&mut self, s: &Walks, v: &Verdicts) {
        let carried: BTreeMap<&str, &str> = s
            .addresses
            .iter()
            .filter(|a| a.carried)
            .map(|a| (a.identifier.as_str(), a.owner.as_str()))
            .collect();
        let first_seen = first_sightings(s);
        let mut owners: BTreeMap<&str, Option<f64>> = BTreeMap::new();
        for owner in carried.values() {
            owners.entry(owner).or_insert(None);
        }
        let owner_first: BTreeMap<&str, DateTime<Utc>> = carried
            .iter()
            .filter_map(|(id, owner)| Some((*owner, *first_seen.get(*id)?)))
            .fold(BTreeMap::new(), |mut m, (o, t)| {
                let e = m.entry(o).or_insert(t);
                *e = (*e).min(t);
                m
            });
        for (id, walk) in &v.warned_after {
            match carried.get(id.as_str()) {
                Some(owner) => {
                    let at = walk_end(s, *walk);
                    let hours = owner_first
                        .get(owner)
                        .map_or(f64::NAN, |t| (at - *t).num_minutes() as f64 / 60.0);
                    let slot = owners.entry(owner).or_insert(None);
                    *slot = Some(slot.map_or(hours, |h: f64| h.min(hours)));
                }
                None => self.false_warnings += 1,
            }
        }
        self.trackers += owners.len();
        for hours in owners.values().flatten() {
            self.warned += 1;
            self.hours.push(*hours);
        }
        self.watched += v.watched_at_end.len();
        self.watched_carried += v
            .watched_at_end
            .iter()
            .filter(|id| carried.contains_key(id.as_str()))
            .count();
    }

    fn row(&self, name: &str) -> String {
        let mut hours = self.hours.clone();
        hours.sort_by(f64::total_cmp);
        let median = hours.get(hours.len() / 2).copied();
        let precision = if self.watched == 0 {
            "n/a".to_owned()
        } else {
            format!("{:.2}", self.watched_carried as f64 / self.watched as f64)
        };
        format!(
            "| {name} | {}/{} | {} | {} | {} | {} |",
            self.warned,
            self.trackers,
            median.map_or("n/a".to_owned(), |h| format!("{h:.1}")),
            self.false_warnings,
            self.watched,
            precision
        )
    }
}

fn first_sightings(s: &Walks) -> BTreeMap<String, DateTime<Utc>> {
    let mut out = BTreeMap::new();
    for d in s.walks.iter().flat_map(|w| &w.detections) {
        if let (Some(id), Some(at)) = (d["bt_address"].as_str(), time(d)) {
            out.entry(id.to_owned()).or_insert(at);
        }
    }
    out
}

fn time(d: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(d["detected_at"].as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn walk_end(s: &Walks, walk: usize) -> DateTime<Utc> {
    s.walks[walk]
        .detections
        .last()
        .and_then(time)
        .unwrap_or(s.walks[walk].started)
}

/// Whether a detection announces an item tracker, as AirGuard recognises them.
fn is_tracker(d: &Value) -> bool {
    let services = d["ble_service_uuids"].as_array().into_iter().flatten();
    let by_service = services
        .filter_map(Value::as_str)
        .any(|u| ["feed", "feec", "fe33", "fe65", "fd5a"].contains(&u));
    let find_my = d["ble_advertisement"]
        .as_str()
        .is_some_and(|a| a.starts_with("1eff4c0012"));
    by_service || find_my
}

/// When and where (latitude, longitude) an address was heard.
type Sightings = Vec<(DateTime<Utc>, (f64, f64))>;

/// The AirGuard-style rule, evaluated after each walk on everything uploaded so far.
fn airguard(s: &Walks) -> Verdicts {
    let mut v = Verdicts::default();
    let mut seen: BTreeMap<String, Sightings> = BTreeMap::new();
    for (w, walk) in s.walks.iter().enumerate() {
        for d in walk.detections.iter().filter(|d| is_tracker(d)) {
            if let (Some(id), Some(at), Some(lat), Some(lon)) = (
                d["bt_address"].as_str(),
                time(d),
                d["latitude"].as_f64(),
                d["longitude"].as_f64(),
            ) {
                seen.entry(id.to_owned())
                    .or_default()
                    .push((at, (lat, lon)));
            }
        }
        for (id, fixes) in &seen {
            if v.warned_after.contains_key(id) {
                continue;
            }
            let Some(last) = fixes.last().map(|f| f.0) else {
                continue;
            };
            let recent: Vec<_> = fixes
                .iter()
                .filter(|f| last - f.0 <= chrono::Duration::days(14))
                .collect();
            let mut places: Vec<(f64, f64)> = Vec::new();
            for f in &recent {
                if places
                    .iter()
                    .all(|p| shadowcheck::domain::geo::haversine_m(*p, f.1) > 150.0)
                {
                    places.push(f.1);
                }
            }
            let span = recent
                .last()
                .map_or(0, |l| (l.0 - recent[0].0).num_minutes());
            if recent.len() >= 3 && places.len() >= 3 && span >= 60 {
                v.warned_after.insert(id.clone(), w);
            }
        }
    }
    // AirGuard has no watch list: what it warns about is what it shows.
    v.watched_at_end = v.warned_after.keys().cloned().collect();
    v
}

/// Ours: each walk uploaded over HTTP, the threats at `watch` and above read once the registry
/// and the scorer have settled.
async fn ours(client: &reqwest::Client, base: &str, url: &str, s: &Walks) -> Result<Verdicts> {
    let mut v = Verdicts::default();
    for (w, walk) in s.walks.iter().enumerate() {
        post_detections(client, base, &walk.detections, 1_000)
            .await
            .with_context(|| format!("walk {w}"))?;
        let t = Instant::now();
        loop {
            let queued: usize = psql_scalar(url, "SELECT (SELECT count(*) FROM sigint.registry_queue) + (SELECT count(*) FROM sigint.following_queue)").await?;
            if queued == 0 {
                break;
            }
            if t.elapsed() > Duration::from_secs(300) {
                bail!("walk {w}: the detector did not settle in 5 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let threats: Value = client
            .get(format!(
                "{base}/api/v1/threats?device_id={}&level=watch&limit=1000",
                s.device
            ))
            .send()
            .await?
            .json()
            .await?;
        let mut watched = BTreeSet::new();
        for t in threats["threats"].as_array().into_iter().flatten() {
            let Some(id) = t["identifier"].as_str() else {
                continue;
            };
            if matches!(t["level"].as_str(), Some("suspicious" | "alert")) {
                v.warned_after.entry(id.to_owned()).or_insert(w);
            }
            watched.insert(id.to_owned());
        }
        v.watched_at_end = watched;
    }
    Ok(v)
}

/// (e2) `n` randomised four-day walk scenarios: per rule, trackers warned about, the median
/// hours from a tracker's first sighting to its first warning, warnings about anything not
/// carried, and the watch list's size and precision at the end.
pub(crate) async fn walks_quality(
    server_bin: &Path,
    admin_url: &str,
    n: u64,
    weeks: u64,
) -> Result<()> {
    let url = create_db(admin_url, "bench_walks").await?;
    let server = start_server(server_bin, &url, 8)?;
    let client = client()?;
    wait_ready(&client, &server.addr).await?;
    let base = format!("http://{}", server.addr);
    let start = (Utc::now() - chrono::Duration::days(5))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or_else(Utc::now, |t| t.and_utc());
    let (mut mine, mut peer) = (Tally::default(), Tally::default());
    let mut per_tracker: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    // Per carried tracker, whose first warning came first: (ours earlier, same walk, baseline
    // earlier, only ours, only the baseline, neither).
    let mut race = [0usize; 6];
    for seed in 0..n {
        let s = walks::generate(2_000 + seed, start);
        let v = ours(&client, &base, &url, &s).await?;
        let a = airguard(&s);
        mine.add(&s, &v);
        peer.add(&s, &a);
        let first = |v: &Verdicts, owner: &str| {
            s.addresses
                .iter()
                .filter(|x| x.carried && x.owner == owner)
                .filter_map(|x| v.warned_after.get(&x.identifier).copied())
                .min()
        };
        for owner in ["tile", "airtag", "chipolo", "smarttag"] {
            let slot = match (first(&v, owner), first(&a, owner)) {
                (Some(o), Some(b)) if o < b => 0,
                (Some(o), Some(b)) if o == b => 1,
                (Some(_), Some(_)) => 2,
                (Some(_), None) => 3,
                (None, Some(_)) => 4,
                (None, None) => 5,
            };
            race[slot] += 1;
        }
        for addr in s.addresses.iter().filter(|a| a.carried) {
            let e = per_tracker.entry(addr.owner.clone()).or_default();
            e.0 += usize::from(v.warned_after.contains_key(&addr.identifier));
            e.1 += usize::from(a.warned_after.contains_key(&addr.identifier));
        }
    }
    println!(
        "\n## (e2) detector on {n} scenarios of 16 short walks (4 days, 4 trackers carried)\n\
         | rule | trackers warned | median hours to first warning | warnings about what was not carried | watch list at end | watch precision |\n|---|---|---|---|---|---|"
    );
    println!("{}", mine.row("ShadowCheck"));
    println!("{}", peer.row("AirGuard-style baseline"));
    println!("addresses warned about, per carried tracker (ours, baseline): {per_tracker:?}");
    println!(
        "first warning per carried tracker: ours earlier {}, same walk {}, baseline earlier {}, only ours {}, only the baseline {}, neither {}",
        race[0], race[1], race[2], race[3], race[4], race[5]
    );
    if weeks > 0 {
        week_quality(&client, &base, &url, weeks).await?;
    }
    drop(server);
    Ok(())
}

/// (e3) A week of commuting (crates/shadowcheck-scenarios `week`), with and without an AirTag
/// planted on the Wednesday: the same rules, and what the false warnings were about.
async fn week_quality(client: &reqwest::Client, base: &str, url: &str, n: u64) -> Result<()> {
    let start = (Utc::now() - chrono::Duration::days(8))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or_else(Utc::now, |t| t.and_utc());
    println!(
        "\n## (e3) detector on {n} weeks of commuting (train crowds, two regulars on the morning train, colleagues, shops passed daily)\n\
         | week | rule | trackers warned | median hours to first warning | warnings about what was not carried | watch list at end | watch precision |\n|---|---|---|---|---|---|---|"
    );
    let mut wrongly: BTreeMap<String, usize> = BTreeMap::new();
    for planted in [true, false] {
        let (mut mine, mut peer) = (Tally::default(), Tally::default());
        for seed in 0..n {
            // Another person each time (a device of their own): the weeks share one database.
            let person = if planted { 3_000 } else { 3_500 } + seed;
            let s = shadowcheck_scenarios::week::generate(person, start, planted);
            let v = ours(client, base, url, &s).await?;
            let a = airguard(&s);
            mine.add(&s, &v);
            peer.add(&s, &a);
            for id in v.warned_after.keys() {
                if let Some(addr) = s
                    .addresses
                    .iter()
                    .find(|x| &x.identifier == id && !x.carried)
                {
                    *wrongly.entry(addr.owner.clone()).or_default() += 1;
                }
            }
        }
        let week = if planted {
            "AirTag planted Wednesday"
        } else {
            "nothing follows"
        };
        println!(
            "| {week} |{}",
            mine.row("ShadowCheck").trim_start_matches('|')
        );
        println!(
            "| {week} |{}",
            peer.row("AirGuard-style baseline").trim_start_matches('|')
        );
    }
    println!("ShadowCheck's warnings about what was not carried, by role: {wrongly:?}");
    Ok(())
}
