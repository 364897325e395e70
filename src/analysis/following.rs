//! The following scorer: rescored (transmitter, capture device) pairs in bounded transactions,
//! run by the registry updater after each fold. Stores each score with its explanation, writes
//! it onto the pair's detections and the registry row, and counts new alerts.

use std::collections::BTreeSet;

use sqlx::{Acquire, PgConnection, PgPool};

use crate::db;
use crate::domain::following::{self, Fix, Level, Subject};
use crate::domain::registry::TransmitterKey;

/// Sightings per pair scored (the most recent).
const MAX_FIXES: i64 = 5_000;

/// Scores at most `batch` queued pairs that have settled for `settle_ms`. Returns how many.
pub async fn score_once(pool: &PgPool, batch: u32, settle_ms: u64) -> Result<usize, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let pairs = db::following::claim_pairs(&mut tx, i64::from(batch), settle_ms as i64).await?;
    if pairs.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let keys: Vec<TransmitterKey> = pairs
        .iter()
        .map(|p| p.0.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let subjects = db::following::subjects(&mut tx, &keys).await?;
    let zones = db::following::zones(&mut tx).await?;
    let mut alerts = 0u64;
    for (key, device) in &pairs {
        let (allowlisted, tracker, seen) = subjects.get(key).copied().unwrap_or((false, None, 0));
        // Fewer sightings in all than the first gate needs, by any device: nothing to score
        // (most transmitters; skipping them keeps the scorer's cost off the common case).
        if seen < following::MIN_SIGHTINGS as i64 {
            continue;
        }
        let fixes = db::following::fixes(&mut tx, key, *device, MAX_FIXES).await?;
        let Some(last) = fixes.last().map(|f| f.at) else {
            continue;
        };
        let from = last - following::lookback(key);
        let fixes: Vec<Fix> = fixes.into_iter().filter(|f| f.at >= from).collect();
        let path = db::following::path(&mut tx, *device, from, last).await?;
        let subject = Subject {
            key,
            tracker,
            allowlisted,
        };
        let mut a = following::assess(subject, &fixes, &path, &zones, 0);
        if let (true, Some(together)) = (a.gates_passed, a.together) {
            let crowd = db::following::crowd(&mut tx, key, *device, together).await?;
            if crowd > 0 {
                a = following::assess(subject, &fixes, &path, &zones, crowd as usize);
            }
        }
        let stored = db::following::store(&mut tx, key, *device, &a).await?;
        if stored.alerted {
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
        if stored.passed_before.unwrap_or(false) != a.gates_passed {
            if let Some(together) = a.together {
                db::following::requeue_overlapping(&mut tx, key, *device, together).await?;
            }
        }
        if stored.score_before != Some(a.score) {
            let same_level = stored.level_before.as_deref() == Some(a.level.as_str());
            db::following::write_back(
                &mut tx,
                &fixes,
                a.score,
                a.level >= Level::Suspicious,
                same_level,
            )
            .await?;
        }
    }
    for key in &keys {
        db::following::roll_up(&mut tx, key).await?;
    }
    tx.commit().await?;
    metrics::counter!("shadowcheck_following_scored_total").increment(pairs.len() as u64);
    if alerts > 0 {
        metrics::counter!("shadowcheck_follower_alerts_total").increment(alerts);
    }
    Ok(pairs.len())
}

/// The scoring queue's length and the scored pairs by level.
pub async fn record_gauges(conn: &mut PgConnection) {
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
