//! The following scorer: rescored (transmitter, capture device) pairs in bounded transactions,
//! run by the registry updater after each fold. Stores each score with its explanation, writes
//! it onto the pair's detections and the registry row, and counts new alerts.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use sqlx::PgConnection;
use uuid::Uuid;

use crate::db;
use crate::domain::following::{self, Fix, Level, Subject};
use crate::domain::registry::TransmitterKey;

/// Sightings per pair scored (the most recent).
const MAX_FIXES: i64 = 5_000;

/// Queues the pairs scored under an earlier version of the rules, once at start-up: the next
/// scoring rounds bring every stored verdict to the rules this binary has.
pub async fn rescore_other_rules(pool: &crate::db::Pool) {
    let queued = match pool.acquire().await {
        Ok(mut conn) => {
            db::following::requeue_other_rules(&mut conn, following::RULE_VERSION).await
        }
        Err(e) => Err(e),
    };
    match queued {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            pairs = n,
            rule_version = following::RULE_VERSION,
            "rescoring pairs scored under earlier rules"
        ),
        Err(e) => tracing::warn!(error = %e, "could not queue pairs scored under earlier rules"),
    }
}

/// Scores at most `batch` queued pairs that have settled for `settle_ms`, in one transaction
/// and a fixed number of statements whatever the batch size. Returns how many were taken.
pub async fn score_once(
    pool: &crate::db::Pool,
    batch: u32,
    settle_ms: u64,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let claimed = db::following::claim_pairs(&mut tx, i64::from(batch), settle_ms as i64).await?;
    if claimed.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let scored = match score_claimed(&mut tx, &claimed).await {
        Ok(counts) => tx.commit().await.map(|()| counts),
        Err(e) => {
            // Rolled back now, not when the connection is next used: the claimed rows stay
            // locked until then, and `defer` below would wait for them.
            let _ = tx.rollback().await;
            Err(e)
        }
    };
    match scored {
        Ok((items, alerts)) => {
            metrics::counter!("shadowcheck_following_scored_total").increment(items);
            if alerts > 0 {
                metrics::counter!("shadowcheck_follower_alerts_total").increment(alerts);
            }
            Ok(claimed.len())
        }
        // The database went away: nothing is wrong with the pairs, which the rollback kept.
        Err(e) if db::is_unavailable(&e) => Err(e),
        Err(e) => {
            // Something in these pairs cannot be scored: put them back behind the others, so
            // one bad pair never stalls the queue (it is retried alone, with a backoff).
            tracing::error!(error = %e, pairs = claimed.len(), "scoring failed; the pairs are retried one at a time");
            metrics::counter!("shadowcheck_following_score_failures_total").increment(1);
            let mut conn = pool.acquire().await?;
            db::following::defer(&mut conn, &claimed).await?;
            Ok(claimed.len())
        }
    }
}

/// Scores the claimed pairs in the caller's transaction: how many scores were stored, and how
/// many of them are new alerts.
async fn score_claimed(
    tx: &mut PgConnection,
    claimed: &[(TransmitterKey, Uuid)],
) -> Result<(u64, u64), sqlx::Error> {
    let keys: Vec<TransmitterKey> = claimed
        .iter()
        .map(|p| p.0.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let subjects = db::following::subjects(&mut *tx, &keys).await?;
    // Fewer sightings in all than the first gate needs, by any device: nothing to score (most
    // transmitters; skipping them keeps the scorer's cost off the common case).
    let pairs: Vec<(TransmitterKey, Uuid)> = claimed
        .iter()
        .filter(|(k, _)| {
            subjects
                .get(k)
                .is_some_and(|s| s.detections >= following::MIN_SIGHTINGS as i64)
        })
        .cloned()
        .collect();
    let fixes = db::following::fixes(&mut *tx, &pairs, MAX_FIXES).await?;
    // Each pair's window: its look-back, ending at its last sighting.
    let mut scored: Vec<(usize, Vec<Fix>)> = Vec::new();
    let mut windows: BTreeMap<Uuid, (DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    // Pairs without enough fixes: perhaps heard by a device without GPS, scored on time alone.
    let mut fixless: Vec<usize> = Vec::new();
    for (i, fixes) in fixes.into_iter().enumerate() {
        let (key, device) = &pairs[i];
        let Some(last) = fixes.last().map(|f| f.at) else {
            fixless.push(i);
            continue;
        };
        let days = subjects.get(key).map_or(0, |s| s.days_seen);
        let from = last - following::lookback(key, days);
        let fixes: Vec<Fix> = fixes.into_iter().filter(|f| f.at >= from).collect();
        if fixes.len() < following::MIN_SIGHTINGS {
            fixless.push(i);
            continue;
        }
        let w = windows.entry(*device).or_insert((from, last));
        *w = (w.0.min(from), w.1.max(last));
        scored.push((i, fixes));
    }
    let paths = db::following::paths(&mut *tx, &windows).await?;
    let no_path = Vec::new();
    // A rotating tracker's earlier and later addresses are one candidate: their sightings are
    // scored with this address's (the windows above already cover the look-back they lie in).
    let mut linked: BTreeMap<usize, Vec<TransmitterKey>> = BTreeMap::new();
    for (n, (i, fixes)) in scored.iter_mut().enumerate() {
        let (key, device) = &pairs[*i];
        let subject = subjects.get(key).copied().unwrap_or_default();
        let Some(class) = subject.tracker.filter(|c| c.is_tracker()) else {
            continue;
        };
        if !following::rotating(key, subject.days_seen) {
            continue;
        }
        let last = fixes[fixes.len() - 1].at;
        let lookback = following::lookback(key, subject.days_seen);
        let spans =
            db::following::tracker_spans(&mut *tx, class, *device, last - lookback, last).await?;
        let path = paths.get(device).unwrap_or(&no_path);
        let chain = following::linked(key, &spans, path);
        if chain.is_empty() {
            continue;
        }
        let chain_pairs: Vec<(TransmitterKey, Uuid)> =
            chain.iter().map(|k| (k.clone(), *device)).collect();
        let theirs = db::following::fixes(&mut *tx, &chain_pairs, MAX_FIXES).await?;
        let from = last - lookback;
        fixes.extend(theirs.into_iter().flatten().filter(|f| f.at >= from));
        fixes.sort_by_key(|f| (f.at, f.id));
        fixes.dedup_by_key(|f| f.id);
        if fixes.len() > MAX_FIXES as usize {
            fixes.drain(..fixes.len() - MAX_FIXES as usize);
        }
        linked.insert(n, chain);
    }

    // The zones around what is scored: every fix of the batch, padded in `zones_near`.
    let zones = match bbox(
        scored
            .iter()
            .flat_map(|(_, f)| f.iter().map(|f| (f.lon, f.lat))),
    ) {
        Some(b) => db::following::zones_near(&mut *tx, b).await?,
        None => Vec::new(),
    };
    let assess = |i: usize, fixes: &[Fix], crowd: usize| {
        let (key, device) = &pairs[i];
        let subject = subjects.get(key).copied().unwrap_or_default();
        let (from, to) = (
            fixes[0].at - following::lookback(key, subject.days_seen),
            fixes[fixes.len() - 1].at,
        );
        let path = paths.get(device).unwrap_or(&no_path);
        let a = path.partition_point(|p| p.minute < from);
        let b = path.partition_point(|p| p.minute <= to);
        following::assess(
            Subject {
                key,
                tracker: subject.tracker,
                allowlisted: subject.allowlisted,
                days_seen: subject.days_seen,
            },
            fixes,
            &path[a..b],
            &zones,
            crowd,
        )
    };
    let explain_links = |n: usize, mut a: following::Assessment| {
        if let Some(chain) = linked.get(&n) {
            a.explanation.linked_addresses = chain.iter().map(|k| k.identifier.clone()).collect();
        }
        a
    };
    let mut assessments: Vec<_> = off_the_runtime(|| {
        scored
            .iter()
            .enumerate()
            .map(|(n, (i, f))| explain_links(n, assess(*i, f, 0)))
            .collect()
    });
    // The crowd around those that pass the gates, from the pairs stored before.
    let passing: Vec<usize> = (0..scored.len())
        .filter(|&n| assessments[n].gates_passed && assessments[n].together.is_some())
        .collect();
    let crowd_items: Vec<_> = passing
        .iter()
        .filter_map(|&n| {
            let (key, device) = &pairs[scored[n].0];
            Some((key, *device, assessments[n].together?))
        })
        .collect();
    let crowds = db::following::crowds(&mut *tx, &crowd_items).await?;
    for (&n, &crowd) in passing.iter().zip(&crowds) {
        if crowd > 0 {
            assessments[n] = explain_links(n, assess(scored[n].0, &scored[n].1, crowd as usize));
        }
    }
    // Time-only evidence for the pairs without fixes (stored after the others: no crowd, no
    // fixes to write scores onto).
    let fixless_pairs: Vec<(TransmitterKey, Uuid)> =
        fixless.iter().map(|&i| pairs[i].clone()).collect();
    let times = db::following::fixless_times(
        &mut *tx,
        &fixless_pairs,
        crate::domain::ValidationPolicy::earliest(),
        MAX_FIXES,
    )
    .await?;
    let mut churns: BTreeMap<(Uuid, DateTime<Utc>), following::Churn> = BTreeMap::new();
    for (&i, times) in fixless.iter().zip(times) {
        let (key, device) = &pairs[i];
        let Some(&last) = times.last() else {
            continue;
        };
        let from = last - chrono::Duration::hours(following::TIME_ONLY_LOOKBACK_HOURS);
        let times: Vec<DateTime<Utc>> = times.into_iter().filter(|t| *t >= from).collect();
        if times.len() < following::MIN_SIGHTINGS {
            continue;
        }
        let churn = match churns.get(&(*device, last)) {
            Some(c) => *c,
            None => {
                let c = db::following::churn(&mut *tx, *device, from, last).await?;
                churns.insert((*device, last), c);
                c
            }
        };
        let subject = subjects.get(key).copied().unwrap_or_default();
        let a = following::assess_by_time(
            Subject {
                key,
                tracker: subject.tracker,
                allowlisted: subject.allowlisted,
                days_seen: subject.days_seen,
            },
            &times,
            churn,
        );
        scored.push((i, Vec::new()));
        assessments.push(a);
    }
    // The operators' verdicts on these pairs.
    let scored_pairs: Vec<(TransmitterKey, Uuid)> =
        scored.iter().map(|(i, _)| pairs[*i].clone()).collect();
    let verdicts = db::following::feedback_on(&mut *tx, &scored_pairs).await?;
    for (pair, a) in scored_pairs.iter().zip(assessments.iter_mut()) {
        if let Some(fb) = verdicts.get(pair) {
            following::heed(a, &fb.verdict, serde_json::to_value(fb).unwrap_or_default());
        }
    }
    let items: Vec<_> = scored
        .iter()
        .zip(&assessments)
        .map(|((i, _), a)| (&pairs[*i].0, pairs[*i].1, a))
        .collect();
    let stored = db::following::store(&mut *tx, &items).await?;
    let mut alerts = 0u64;
    let mut changed = Vec::new();
    let mut writes = Vec::new();
    let mut rises = Vec::new();
    for (n, st) in stored.iter().enumerate() {
        let (key, device) = &pairs[scored[n].0];
        let a = &assessments[n];
        // A warning people must hear of: the pair has just risen to `suspicious` or `alert`.
        let before = st.level_before.as_deref().and_then(Level::parse);
        if a.level >= Level::Suspicious && before.is_none_or(|b| b < a.level) {
            rises.push(db::events::Rise {
                key,
                device: *device,
                level: a.level.as_str(),
                level_before: st.level_before.as_deref(),
                score: a.score,
                tracker_class: tracker_class(&a.explanation),
                summary: following::words::summary(
                    &serde_json::to_value(&a.explanation).unwrap_or_default(),
                ),
            });
        }
        if st.alerted {
            alerts += 1;
            tracing::warn!(
                radio = key.radio.as_str(),
                identifier = %key.identifier,
                device_id = %device,
                score = a.score,
                "a transmitter is following a capture device"
            );
        }
        // Others' crowd penalties count the pairs that pass the gates beside them.
        if st.passed_before.unwrap_or(false) != a.gates_passed {
            if let Some(together) = a.together {
                changed.push((key, *device, together));
            }
        }
        // Scores below `watch` stay off the detections (most pairs: writing them would double
        // ingest's writes); a pair that drops back to `none` is written once, as it falls.
        let was = st.level_before.as_deref();
        let matters = a.level > Level::None || was.is_some_and(|l| l != Level::None.as_str());
        if matters && st.score_before != Some(a.score) {
            let same_level = was == Some(a.level.as_str());
            writes.push((
                scored[n].1.as_slice(),
                a.score,
                a.level >= Level::Suspicious,
                same_level,
            ));
        }
    }
    db::events::record(&mut *tx, &rises).await?;
    db::following::requeue_overlapping(&mut *tx, &changed).await?;
    db::following::write_back(&mut *tx, &writes).await?;
    let touched: Vec<TransmitterKey> = items
        .iter()
        .map(|i| i.0.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !touched.is_empty() {
        db::following::roll_up(&mut *tx, &touched).await?;
    }
    Ok((items.len() as u64, alerts))
}

/// The scoring queue's length, the scored pairs by level, and the operators' verdicts with the
/// precision they give the detector (confirmed over confirmed and false alarms).
pub async fn record_gauges(conn: &mut PgConnection) {
    if let Ok(counts) = db::following::feedback_counts(conn).await {
        let of = |v: &str| counts.iter().find(|c| c.0 == v).map_or(0, |c| c.1);
        let (confirmed, false_alarms) = (of("confirmed"), of("false_alarm"));
        for (verdict, n) in [("confirmed", confirmed), ("false_alarm", false_alarms)] {
            metrics::gauge!("shadowcheck_follower_feedback", "verdict" => verdict).set(n as f64);
        }
        if confirmed + false_alarms > 0 {
            metrics::gauge!("shadowcheck_follower_precision")
                .set(confirmed as f64 / (confirmed + false_alarms) as f64);
        }
    }
    if let Ok(n) = db::following::queue_len(conn).await {
        metrics::gauge!("shadowcheck_following_queue_pairs").set(n as f64);
    }
    if let Ok(counts) = db::following::level_counts(conn).await {
        for level in Level::ALL {
            let n = counts
                .iter()
                .find(|(l, _)| l == level.as_str())
                .map_or(0, |c| c.1);
            metrics::gauge!("shadowcheck_followers", "level" => level.as_str()).set(n as f64);
        }
    }
}

/// West, south, east, north of the points; `None` when there are none.
fn bbox(points: impl Iterator<Item = (f64, f64)>) -> Option<[f64; 4]> {
    points.fold(None, |b, (lon, lat)| {
        Some(match b {
            None => [lon, lat, lon, lat],
            Some([w, s, e, n]) => [w.min(lon), s.min(lat), e.max(lon), n.max(lat)],
        })
    })
}

/// Runs CPU-bound scoring (a batch of thousands of fixes) without holding up the other tasks of
/// this worker thread — probes and requests: on the multi-threaded runtime `serve` uses, the
/// worker hands them on before it computes. (A single-threaded runtime, as in tests, just runs
/// it.)
fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// The tracker class the explanation names, if any.
fn tracker_class(e: &following::Explanation) -> Option<&'static str> {
    e.components
        .iter()
        .find(|c| c.component == "tracker_signature")
        .and_then(|c| c.inputs["tracker_class"].as_str())
        .and_then(crate::domain::tracker::TrackerClass::parse)
        .map(crate::domain::tracker::TrackerClass::as_str)
}
