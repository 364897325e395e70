//! The registry updater: folds queued detections into the transmitter registry in bounded
//! transactions (claim, merge, write, commit — or roll back and leave them queued), and reports
//! its lag. One updater at a time per database, whatever the number of API processes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::RegistrySettings;
use crate::db;
use crate::domain::registry::{Entry, TransmitterKey};
use crate::ingest::IngestActivity;
use crate::lifecycle::Lifecycle;

use super::following;

/// Folds at most `chunk` queued detections into the registry in one transaction. Returns how
/// many were folded; `None` when another updater holds the lock.
pub async fn fold_once(pool: &db::Pool, chunk: u32) -> Result<Option<usize>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !db::registry::try_lock_updater(&mut tx).await? {
        return Ok(None);
    }
    let sightings = db::registry::claim(&mut tx, i64::from(chunk)).await?;
    if sightings.is_empty() {
        tx.commit().await?;
        return Ok(Some(0));
    }
    let mut by_key: BTreeMap<TransmitterKey, Vec<usize>> = BTreeMap::new();
    for (i, s) in sightings.iter().enumerate() {
        by_key.entry(s.key.clone()).or_default().push(i);
    }
    let keys: Vec<TransmitterKey> = by_key.keys().cloned().collect();
    let mut entries: BTreeMap<TransmitterKey, Entry> = db::registry::load(&mut tx, &keys)
        .await?
        .into_iter()
        .map(|e| (e.key.clone(), e))
        .collect();
    for (key, indexes) in &by_key {
        let entry = entries
            .entry(key.clone())
            .or_insert_with(|| Entry::empty(key.clone(), sightings[indexes[0]].at));
        for &i in indexes {
            entry.absorb(&sightings[i]);
        }
        entry.settle();
    }
    let entries: Vec<Entry> = entries.into_values().collect();
    db::registry::save(&mut tx, &entries).await?;
    db::rogue::refresh_related_flags(&mut tx, &entries).await?;
    db::following::add_device_minutes(&mut tx, &sightings).await?;
    db::following::queue_pairs(&mut tx, &sightings).await?;
    tx.commit().await?;
    metrics::counter!("shadowcheck_registry_detections_total").increment(sightings.len() as u64);
    Ok(Some(sightings.len()))
}

async fn record_lag(pool: &db::Pool) {
    let Ok(mut conn) = pool.acquire().await else {
        return;
    };
    if let Ok((rows, seconds)) = db::registry::lag(&mut conn).await {
        metrics::gauge!("shadowcheck_registry_lag_rows").set(rows as f64);
        metrics::gauge!("shadowcheck_registry_lag_seconds").set(seconds);
    }
    following::record_gauges(&mut conn).await;
}

/// The updater inside `serve`: starts once the database is ready, runs until shutdown. A
/// transaction cut short by shutdown rolls back, leaving its detections queued.
pub async fn run_in_serve(
    pool: db::Pool,
    settings: RegistrySettings,
    lifecycle: Arc<Lifecycle>,
    ingest: Arc<IngestActivity>,
) {
    if !settings.enabled {
        return;
    }
    let shutdown = lifecycle.shutdown_token();
    tokio::select! {
        () = lifecycle.wait_started() => {}
        () = shutdown.cancelled() => return,
    }
    // Present from the start, so an alert rule's increase() sees the first alert.
    metrics::counter!("shadowcheck_follower_alerts_total").increment(0);
    following::rescore_other_rules(&pool).await;
    record_lag(&pool).await;
    let idle = Duration::from_millis(settings.idle_ms);
    // The lag is a count over the whole queue: taken at most once a second, not once per chunk,
    // so a long backlog does not make every chunk rescan it.
    let mut lag_recorded: Option<Instant> = None;
    let mut last_scored = Instant::now();
    loop {
        let started = Instant::now();
        let folded = match fold_once(&pool, settings.chunk_rows).await {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Ok(0),
            Err(e) => Err(e),
        };
        // The registry first: scoring runs once folding has caught up, and at least once a
        // second during a backlog, so neither starves the other.
        let behind = matches!(folded, Ok(n) if n >= settings.chunk_rows as usize);
        let scored = if !behind || last_scored.elapsed() >= Duration::from_secs(1) {
            last_scored = Instant::now();
            following::score_once(&pool, settings.score_pairs, settings.score_settle_ms).await
        } else {
            Ok(0)
        };
        // Ingest comes first: while this process is storing detections, the updater takes at
        // most a quarter of the time (three times its own work in pause), so a burst is stored
        // at full speed and folded in behind it; the lag is exported and drains afterwards.
        let give_way = if ingest.active_within(Duration::from_millis(500)) {
            started.elapsed() * 3
        } else {
            Duration::ZERO
        };
        let pause = match (folded, scored) {
            (Ok(f), Ok(s)) if f > 0 || s > 0 => give_way,
            (Ok(_), Ok(_)) => idle,
            (f, s) => {
                for e in [f.err(), s.err()].into_iter().flatten() {
                    tracing::warn!(error = %e, "registry update failed; retrying");
                }
                metrics::counter!("shadowcheck_registry_errors_total").increment(1);
                idle.max(Duration::from_secs(1))
            }
        };
        if lag_recorded.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            record_lag(&pool).await;
            lag_recorded = Some(Instant::now());
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
