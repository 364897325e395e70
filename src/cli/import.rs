//! `shadowcheck import PATH...`: capture files through the ingest service, with a progress bar
//! on a terminal, a summary per file, `--dry-run`, and a non-zero exit when a file cannot be read.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Settings;
use crate::formats::{FileFormat, Input};
use crate::ingest::{ImportReport, ImportRequest, Ingest};

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

pub async fn import(
    settings: Settings,
    dry_run: bool,
    device_id: Option<String>,
    paths: Vec<PathBuf>,
) -> anyhow::Result<()> {
    if let Some(id) = &device_id {
        uuid::Uuid::parse_str(id).context("--device-id must be a UUID")?;
    }
    let privacy = Arc::new(settings.privacy.policy());
    let (ingest, pool, embedded) = if dry_run {
        (Ingest::dry_run(privacy, &settings.ingest), None, None)
    } else {
        let (url, embedded) = super::database(&settings).await?;
        let pool = crate::db::lazy_pool(&url, &settings.database)?;
        crate::db::migrate_if_pending(&pool)
            .await
            .context("migration failed")?;
        (
            Ingest::new(pool.clone(), privacy, &settings.ingest),
            Some(pool),
            embedded,
        )
    };
    let mut failures = Vec::new();
    for path in &paths {
        match import_one(&ingest, path, device_id.clone()).await {
            Ok(report) => print_summary(path, &report),
            Err(e) => {
                eprintln!("{}: {e:#}", path.display());
                failures.push(path.display().to_string());
            }
        }
    }
    if let Some(pool) = pool {
        pool.inner().close().await;
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
    ingest: &Ingest,
    path: &Path,
    device_id: Option<String>,
) -> anyhow::Result<ImportReport> {
    let filename = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let format = FileFormat::of_name(filename.as_deref().unwrap_or_default());
    let file = std::fs::File::open(path).context("cannot open")?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let read = Arc::new(AtomicU64::new(0));
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(size);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(filename.clone().unwrap_or_default());
        bar
    });
    let progress: Option<Arc<dyn Fn(u64) + Send + Sync>> = bar.clone().map(|bar| {
        let read = Arc::clone(&read);
        Arc::new(move |_rows: u64| bar.set_position(read.load(Ordering::Relaxed)))
            as Arc<dyn Fn(u64) + Send + Sync>
    });
    let input = match format {
        // A SQLite database is read in place, not streamed.
        FileFormat::Kismet => Input::Path(path.to_owned()),
        _ => Input::Stream(Box::new(Counting {
            inner: file,
            read: Arc::clone(&read),
        })),
    };
    let result = ingest
        .import(ImportRequest {
            format,
            input,
            filename,
            device_id,
            progress,
            max_bytes: None,
            reporter: None,
        })
        .await;
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
