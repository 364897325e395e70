//! `shadowcheck import PATH...`: files from capture devices, with a progress bar on a terminal,
//! a summary per file, `--dry-run`, and a non-zero exit when a file cannot be read.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::import::{
    import_wigle, store_rows, Destination, ImportError, ImportOptions, ImportReport,
};
use crate::config::Settings;

/// Counts bytes as they are read, for the progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Format {
    Wigle,
    Geosubmit,
    Kismet,
}

fn format_of(path: &Path) -> Format {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name = name.trim_end_matches(".gz");
    if name.ends_with(".kismet") {
        Format::Kismet
    } else if name.ends_with(".json") {
        Format::Geosubmit
    } else {
        Format::Wigle
    }
}

pub async fn import(
    settings: Settings,
    dry_run: bool,
    device_id: Option<String>,
    paths: Vec<PathBuf>,
) -> anyhow::Result<()> {
    if let Some(id) = &device_id {
        uuid::Uuid::parse_str(id).context("--device-id must be a UUID")?;
    }
    let (destination, embedded) = if dry_run {
        (Destination::DryRun, None)
    } else {
        let (url, embedded) = crate::cli::database(&settings).await?;
        let pool = crate::db::lazy_pool(&url, &settings.database)?;
        crate::db::MIGRATOR
            .run(&pool)
            .await
            .context("migration failed")?;
        (Destination::Database(pool), embedded)
    };
    let privacy = Arc::new(settings.privacy.policy());
    let skew = chrono::Duration::seconds(settings.ingest.max_future_skew_secs);
    let mut failures = Vec::new();
    for path in &paths {
        match import_one(path, &destination, &privacy, skew, device_id.clone()).await {
            Ok(report) => print_summary(path, &report),
            Err(e) => {
                eprintln!("{}: {e:#}", path.display());
                failures.push(path.display().to_string());
            }
        }
    }
    if let Destination::Database(pool) = destination {
        pool.close().await;
    }
    if let Some(mut pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop()).await??;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} files could not be imported: {}",
            failures.len(),
            paths.len(),
            failures.join(", ")
        )
    }
}

fn print_summary(path: &Path, r: &ImportReport) {
    let verb = if r.dry_run { "valid" } else { "stored" };
    eprintln!(
        "{}: {} — {} rows read, {} {verb}, {} duplicates, {} rejected, {} filtered by the privacy policy{}",
        path.display(),
        r.format,
        r.rows_read,
        r.stored,
        r.duplicates,
        r.rejected,
        r.filtered,
        if r.complete { String::new() } else { format!("; INCOMPLETE: {}", r.failure.clone().unwrap_or_default()) }
    );
    for e in r.errors.iter().take(20) {
        eprintln!(
            "  line {}: {}{}",
            e.line,
            if e.field.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.field)
            },
            e.reason
        );
    }
    if r.errors.len() > 20 || r.errors_truncated {
        eprintln!("  ... and more ({} rejected in all)", r.rejected);
    }
}

async fn import_one(
    path: &Path,
    destination: &Destination,
    privacy: &Arc<crate::domain::privacy::PrivacyPolicy>,
    max_future_skew: chrono::Duration,
    device_id: Option<String>,
) -> anyhow::Result<ImportReport> {
    let file = std::fs::File::open(path).with_context(|| "cannot open".to_string())?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let read = Arc::new(AtomicU64::new(0));
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(size);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        bar
    });
    let progress: Option<Arc<dyn Fn(u64) + Send + Sync>> = bar.clone().map(|bar| {
        let read = Arc::clone(&read);
        Arc::new(move |_rows: u64| bar.set_position(read.load(Ordering::Relaxed)))
            as Arc<dyn Fn(u64) + Send + Sync>
    });
    let options = ImportOptions {
        filename: path.file_name().map(|n| n.to_string_lossy().into_owned()),
        device_id,
        max_future_skew,
        privacy: Arc::clone(privacy),
        progress,
    };
    let reader = Counting {
        inner: file,
        read: Arc::clone(&read),
    };
    let destination = match destination {
        Destination::DryRun => Destination::DryRun,
        Destination::Database(pool) => Destination::Database(pool.clone()),
    };
    let result = match format_of(path) {
        Format::Kismet => import_kismet(path, destination, options).await,
        Format::Wigle => import_wigle(Box::new(reader), destination, options)
            .await
            .map_err(|e| match e {
                ImportError::Format(why) => anyhow::anyhow!("{why}"),
                ImportError::Api(e) => anyhow::anyhow!("{e}"),
            }),
        Format::Geosubmit => import_geosubmit(Box::new(reader), destination, options).await,
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result?;
    if !report.complete {
        anyhow::bail!(
            "{} (the {} rows before it were processed)",
            report.failure.clone().unwrap_or_default(),
            report.rows_read
        );
    }
    Ok(report)
}

/// A Kismet log: devices read on a blocking thread, stored in batches as they come.
async fn import_kismet(
    path: &Path,
    destination: Destination,
    options: ImportOptions,
) -> anyhow::Result<ImportReport> {
    let path = path.to_owned();
    let device = options.device_id.clone().unwrap_or_else(|| {
        super::device_uuid(&format!(
            "kismet:{}",
            options.filename.clone().unwrap_or_default()
        ))
        .to_string()
    });
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<super::wigle::Row>>(2);
    let reader = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
        let conn = super::kismet::open(&path)?;
        let source = super::kismet::describe(&conn);
        let mut batch = Vec::with_capacity(super::import::BATCH_ROWS);
        super::kismet::read_devices(&conn, &device, |row| {
            batch.push(row);
            if batch.len() == super::import::BATCH_ROWS {
                let full =
                    std::mem::replace(&mut batch, Vec::with_capacity(super::import::BATCH_ROWS));
                return tx.blocking_send(full).is_ok();
            }
            true
        })?;
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        Ok(source)
    });
    let mut report = ImportReport::new(
        "kismetdb",
        options.filename.clone(),
        matches!(destination, Destination::DryRun),
    );
    let mut stored = Ok(());
    while let Some(rows) = rx.recv().await {
        if let Err(e) = store_rows(&rows, &destination, &options, &mut report).await {
            stored = Err(anyhow::anyhow!("{e}"));
            break;
        }
    }
    drop(rx);
    report.source = reader.await?.map_err(anyhow::Error::msg)?;
    stored?;
    if let Destination::Database(pool) = &destination {
        super::import::record_import(pool, &report).await?;
    }
    Ok(report)
}

/// A file holding one geosubmit v2 body (`{"items": [...]}`), as stumbler apps can export.
async fn import_geosubmit(
    reader: Box<dyn Read + Send>,
    destination: Destination,
    options: ImportOptions,
) -> anyhow::Result<ImportReport> {
    let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        super::import::maybe_gunzip(reader)?.read_to_end(&mut out)?;
        Ok(out)
    })
    .await??;
    let body: serde_json::Value = serde_json::from_slice(&bytes).context("not JSON")?;
    let device = options.device_id.clone().unwrap_or_else(|| {
        super::device_uuid(&format!(
            "geosubmit-file:{}",
            options.filename.clone().unwrap_or_default()
        ))
        .to_string()
    });
    let converted =
        super::geosubmit::convert(&body, &device, "geosubmit import", chrono::Utc::now())
            .map_err(anyhow::Error::msg)?;
    let mut report = ImportReport {
        source: serde_json::json!({"reports": body.get("items").and_then(|i| i.as_array()).map_or(0, Vec::len)}),
        ..ImportReport::new(
            "geosubmit-v2",
            options.filename.clone(),
            matches!(destination, Destination::DryRun),
        )
    };
    // "Lines" are observation numbers (1-based) here.
    let rows: Vec<super::wigle::Row> = converted
        .items
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as u64 + 1, Ok(v)))
        .collect();
    for chunk in rows.chunks(super::import::BATCH_ROWS) {
        store_rows(chunk, &destination, &options, &mut report)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if let Destination::Database(pool) = &destination {
        super::import::record_import(pool, &report).await?;
    }
    Ok(report)
}
