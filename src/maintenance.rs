//! Scheduled upkeep: retention (old monthly partitions dropped by `retention.months`) and the
//! facts an operator alerts on that the API cannot see itself: the age of the newest backup and
//! the free space of the data volumes. Run inside `serve` (retention, when its role may) and by
//! `shadowcheck maintenance` (all of it, with its own metrics listener) in the compose stack.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::db::Pool;
use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::config::{RetentionSettings, Settings};
use crate::lifecycle::Lifecycle;

/// The first instant kept: the start of the UTC month `months` before the current one. Every
/// partition ending on or before it is dropped, so at least `months` whole months remain.
pub fn cutoff(now: DateTime<Utc>, months: u32) -> Option<DateTime<Utc>> {
    let index = i64::from(now.year()) * 12 + i64::from(now.month0()) - i64::from(months);
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month0 = u32::try_from(index.rem_euclid(12)).ok()?;
    Utc.with_ymd_and_hms(year, month0 + 1, 1, 0, 0, 0).single()
}

/// What one retention pass did.
#[derive(Debug, PartialEq, Eq)]
pub enum RetentionOutcome {
    Disabled,
    Dropped(Vec<String>),
    /// The role may not drop partitions (the API role of the compose stack); retention is the
    /// maintenance service's job there.
    NotPermitted,
}

/// One retention pass: drops the partitions older than the cutoff, logs each and counts them.
pub async fn apply_retention(
    pool: &Pool,
    settings: &RetentionSettings,
    now: DateTime<Utc>,
) -> Result<RetentionOutcome, sqlx::Error> {
    if settings.months == 0 {
        return Ok(RetentionOutcome::Disabled);
    }
    let Some(cutoff) = cutoff(now, settings.months) else {
        return Ok(RetentionOutcome::Disabled);
    };
    match crate::db::retention::drop_partitions_before(pool, cutoff).await {
        Ok(dropped) => {
            for partition in &dropped {
                tracing::info!(partition, cutoff = %cutoff, months = settings.months, "retention dropped a monthly partition");
            }
            metrics::counter!("shadowcheck_retention_partitions_dropped_total")
                .increment(dropped.len() as u64);
            metrics::gauge!("shadowcheck_retention_last_success_timestamp_seconds")
                .set(now.timestamp() as f64);
            Ok(RetentionOutcome::Dropped(dropped))
        }
        Err(e) if crate::db::retention::is_permission_denied(&e) => {
            Ok(RetentionOutcome::NotPermitted)
        }
        Err(e) => {
            metrics::counter!("shadowcheck_retention_failures_total").increment(1);
            Err(e)
        }
    }
}

/// The newest dump `scripts/backup` finished (`shadowcheck-*.dump`; never `.partial` or
/// `.unverified`): its modification time and size.
pub fn newest_backup(dir: &Path) -> std::io::Result<Option<(SystemTime, u64)>> {
    let mut newest: Option<(SystemTime, u64)> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("shadowcheck-") && name.ends_with(".dump")) {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified()?;
        if newest.is_none_or(|(t, _)| modified > t) {
            newest = Some((modified, meta.len()));
        }
    }
    Ok(newest)
}

/// Size and free space (for unprivileged users) of the filesystem holding `path`.
pub fn filesystem_space(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a valid NUL-terminated path and a pointer to writable memory of the right type.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let stat = unsafe { stat.assume_init() };
    let fragment = stat.f_frsize;
    Ok((
        stat.f_blocks.saturating_mul(fragment),
        stat.f_bavail.saturating_mul(fragment),
    ))
}

/// Sets the backup and volume gauges from what is on disk now.
pub fn report_storage(backup_dir: Option<&Path>, volumes: &[(String, PathBuf)]) {
    if let Some(dir) = backup_dir {
        match newest_backup(dir) {
            Ok(Some((modified, size))) => {
                let at = modified
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                metrics::gauge!("shadowcheck_backup_last_success_timestamp_seconds").set(at);
                metrics::gauge!("shadowcheck_backup_last_size_bytes").set(size as f64);
            }
            // No backup yet: age "since the epoch", so the backup alert fires until one exists.
            Ok(None) => {
                metrics::gauge!("shadowcheck_backup_last_success_timestamp_seconds").set(0.0);
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the backup directory");
                metrics::gauge!("shadowcheck_backup_last_success_timestamp_seconds").set(0.0);
            }
        }
    }
    for (name, path) in volumes {
        match filesystem_space(path) {
            Ok((size, free)) => {
                metrics::gauge!("shadowcheck_volume_size_bytes", "volume" => name.clone())
                    .set(size as f64);
                metrics::gauge!("shadowcheck_volume_free_bytes", "volume" => name.clone())
                    .set(free as f64);
            }
            Err(e) => {
                tracing::warn!(volume = %name, path = %path.display(), error = %e, "cannot read the volume's free space");
            }
        }
    }
}

/// `serve`'s share: retention every `interval_secs` once the database is there. Stops, saying
/// why once, when the role may not drop partitions.
pub async fn retention_in_serve(
    pool: Pool,
    settings: RetentionSettings,
    lifecycle: Arc<Lifecycle>,
) {
    if settings.months == 0 {
        return;
    }
    let shutdown = lifecycle.shutdown_token();
    tokio::select! {
        () = lifecycle.wait_started() => {}
        () = shutdown.cancelled() => return,
    }
    loop {
        match apply_retention(&pool, &settings, Utc::now()).await {
            Ok(RetentionOutcome::NotPermitted) => {
                tracing::warn!(
                    "retention.months is set but this database role may not drop partitions; \
                     run `shadowcheck maintenance` with the schema owner's URL instead"
                );
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention failed; retrying at the next interval"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(settings.interval_secs)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// `shadowcheck maintenance`: retention on schedule (needs the schema owner) and the storage
/// gauges, served on `server.metrics_listen` until SIGTERM.
pub async fn run(settings: Settings, url: crate::config::Secret) -> anyhow::Result<()> {
    let lifecycle = Lifecycle::new();
    lifecycle.listen_for_signals();
    // Exported from the first scrape, so "no failure yet" reads 0 rather than absent.
    metrics::counter!("shadowcheck_retention_partitions_dropped_total").increment(0);
    metrics::counter!("shadowcheck_retention_failures_total").increment(0);
    let listener = crate::telemetry::bind_metrics(settings.server.metrics_listen).await?;
    tracing::info!(
        metrics_listen = %listener.local_addr()?,
        retention_months = settings.retention.months,
        "shadowcheck maintenance running"
    );
    let backup_dir = settings.maintenance.backup_dir.clone();
    let volumes = settings.maintenance.volume_paths();
    let shutdown = lifecycle.shutdown_token();
    // Gauges are read from disk at scrape time, so they are never staler than the scrape.
    let server = crate::telemetry::serve_metrics(
        listener,
        move || report_storage(backup_dir.as_deref(), &volumes),
        shutdown.clone(),
    );
    let pool = crate::db::lazy_pool(&url, &settings.database)?;
    let retention = settings.retention.clone();
    while !shutdown.is_cancelled() {
        let outcome = apply_retention(&pool, &retention, Utc::now()).await;
        match &outcome {
            Ok(RetentionOutcome::NotPermitted) => {
                metrics::counter!("shadowcheck_retention_failures_total").increment(1);
                tracing::error!("retention: this database role may not drop partitions; give `maintenance` the schema owner's URL");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention failed; retrying in a minute"),
        }
        let next = if outcome.is_err() {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(retention.interval_secs)
        };
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = shutdown.cancelled() => {}
        }
    }
    pool.inner().close().await;
    server.abort();
    tracing::info!("maintenance stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0)
            .single()
            .expect("date")
    }

    #[test]
    fn cutoff_keeps_whole_months_before_the_current_one() {
        assert_eq!(
            cutoff(at(2026, 11, 30), 12),
            Some(at(2025, 11, 1) - chrono::Duration::hours(12))
        );
        assert_eq!(
            cutoff(at(2026, 1, 1), 1),
            Some(at(2025, 12, 1) - chrono::Duration::hours(12))
        );
        assert_eq!(
            cutoff(at(2026, 3, 15), 0),
            Some(at(2026, 3, 1) - chrono::Duration::hours(12))
        );
        assert_eq!(
            cutoff(at(2026, 3, 15), 27),
            Some(at(2023, 12, 1) - chrono::Duration::hours(12))
        );
    }
}
