//! ShadowCheck benchmark: the physical limit (psql COPY into the same schema with the same
//! indexes) against HTTP ingest through the real server, then query latencies, map serving,
//! memory under large bodies, the detector's quality and scale-out, on one machine in one run.
//! Prints figures; asserts nothing. Run it with `scripts/bench [--rows N]`. One module per
//! section; `harness` starts and measures things, `data` makes the rows.

mod bodies;
mod data;
mod detector;
mod geolocate;
mod harness;
mod indexes;
mod ingest;
mod load;
mod map;
mod queries;
mod scale;
mod walks;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Parser;
use shadowcheck::db::embedded::EmbeddedPostgres;

use harness::{client, peak_rss_kib, psql, start_server, wait_ready};

#[derive(Parser, Debug)]
#[command(about = "COPY baseline vs HTTP ingest, and query latencies, on a throwaway PostGIS")]
pub(crate) struct Args {
    /// Detections to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) rows: usize,
    /// Items per HTTP request.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) batch: usize,
    /// Concurrency levels for HTTP ingest (comma-separated).
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    pub(crate) concurrency: Vec<usize>,
    /// Requests per query kind.
    #[arg(long, default_value_t = 300)]
    pub(crate) queries: usize,
    /// The shadowcheck binary to serve with (default: next to this one).
    #[arg(long)]
    pub(crate) server: Option<PathBuf>,
    /// Maximum-size bodies sent at once in the memory section (d).
    #[arg(long, default_value_t = 8)]
    pub(crate) large_concurrency: usize,
    /// Randomised known-truth scenarios for the detector's precision and recall (section e).
    #[arg(long, default_value_t = 20)]
    pub(crate) scenarios: u64,
    /// Only the detector's sections (e) and (e2): quality on known truth, without the ingest,
    /// query and map runs.
    #[arg(long)]
    pub(crate) detector_only: bool,
    /// Randomised four-day walk scenarios with carried trackers (section e2), beside an
    /// AirGuard-style rule on the same data.
    #[arg(long, default_value_t = 5)]
    pub(crate) walks: u64,
    /// Only section (i): /health/live and the registry's lag under sustained ingest at
    /// 1,000 rows/s with 100 followers and a rescoring burst.
    #[arg(long)]
    pub(crate) load_only: bool,
    /// How long section (i) ingests, seconds.
    #[arg(long, default_value_t = 120)]
    pub(crate) load_secs: usize,
    /// Only the geolocate section (h): position error on held-out real WiGLE scans.
    #[arg(long)]
    pub(crate) geolocate_only: bool,
    /// Weeks of commuting, with and without a planted AirTag (section e3).
    #[arg(long, default_value_t = 3)]
    pub(crate) weeks: u64,
    /// Also measure each index's ingest cost and query benefit (on min(rows, 200000) rows).
    #[arg(long)]
    pub(crate) index_study: bool,
    /// Distinct tiles requested per zoom level in the map section (f).
    #[arg(long, default_value_t = 200)]
    pub(crate) tiles: usize,
    /// Only (a) and the map section (f), served from the COPY table: a quick look at map
    /// serving without the ingest runs.
    #[arg(long)]
    pub(crate) map_only: bool,
    /// Only (a) and the scale-out section (g): storage per row, and ingest and reads directly,
    /// with `database.transaction_pooler` on, and through PgBouncer (`/usr/sbin/pgbouncer`).
    #[arg(long)]
    pub(crate) scale_only: bool,
    /// martin, to serve the same table beside us in (f) (default: `martin` on PATH; skipped
    /// with a note when there is none).
    #[arg(long)]
    pub(crate) martin: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let server_bin = match &args.server {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("shadowcheck"),
    };
    println!(
        "# ShadowCheck benchmark: {} rows, batches of {}, concurrency {:?}, {} queries per kind",
        args.rows, args.batch, args.concurrency, args.queries
    );
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned())
            )
            .unwrap_or_default()
    );

    // A throwaway cluster in a directory the postgres user can enter.
    let dir = std::env::temp_dir().join(format!("shadowcheck-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let data = dir.join("data");
    let mut pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&data)).await??;
    let admin_url = pg.url("postgres").expose().to_owned();
    // The same server binaries the cluster runs on, psql included.
    let pg_bin = pg.bin_dir().to_owned();
    let result = run(&args, &server_bin, &pg_bin, &admin_url, &dir).await;
    let _ = tokio::task::spawn_blocking(move || pg.stop()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(
    args: &Args,
    server_bin: &Path,
    pg_bin: &Path,
    admin_url: &str,
    dir: &Path,
) -> Result<()> {
    if args.load_only {
        return load::live_under_load(server_bin, admin_url, args.load_secs).await;
    }
    if args.geolocate_only {
        return geolocate::geolocate_accuracy(server_bin, admin_url).await;
    }
    if args.detector_only {
        detector::detector_quality(server_bin, admin_url, args.scenarios).await?;
        return walks::walks_quality(server_bin, admin_url, args.walks, args.weeks).await;
    }
    let t = std::time::Instant::now();
    let rows = data::generate(args.rows);
    let by_kind = |k: &str| rows.iter().filter(|r| r.kind == k).count();
    let distinct: std::collections::HashSet<&str> = rows.iter().map(|r| r.mac.as_str()).collect();
    println!(
        "generated in {:.1} s: wifi {}, ble {}, bluetooth {}, cellular {}; {} distinct transmitters",
        t.elapsed().as_secs_f64(), by_kind("wifi"), by_kind("ble"), by_kind("bluetooth"), by_kind("cellular"), distinct.len()
    );
    // Map users look where the data is: centre queries and tiles on stored positions.
    let spots: Vec<(f64, f64)> = rows
        .iter()
        .step_by((rows.len() / 10_000).max(1))
        .map(|r| (r.lat, r.lon))
        .collect();

    let baseline = ingest::copy_baseline(&rows, pg_bin, admin_url, dir).await?;
    if args.map_only {
        psql(
            pg_bin,
            &baseline.url,
            "VACUUM ANALYZE sigint.signal_detections",
        )?;
        let server = start_server(server_bin, &baseline.url, 4)?;
        let client = client()?;
        wait_ready(&client, &server.addr).await?;
        return map::map_serving(args, &client, &server, &spots, &baseline.url).await;
    }
    if args.scale_only {
        return scale::scale_out(
            args,
            server_bin,
            pg_bin,
            admin_url,
            dir,
            &rows,
            &baseline.url,
            baseline.rows_per_sec,
        )
        .await;
    }
    let (server, http_url) = ingest::http_ingest(
        args,
        server_bin,
        pg_bin,
        admin_url,
        &rows,
        baseline.rows_per_sec,
    )
    .await?;
    let client = client()?;
    ingest::registry_timings(&client, &server).await?;
    queries::latency(
        args,
        &client,
        &server,
        pg_bin,
        &http_url,
        &spots,
        rows.len(),
    )
    .await?;
    map::map_serving(args, &client, &server, &spots, &http_url).await?;
    geolocate::geolocate_accuracy(server_bin, admin_url).await?;
    load::live_under_load(server_bin, admin_url, args.load_secs).await?;
    let rss = peak_rss_kib(server.child.id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    println!("\nserver peak RSS over the whole run: {rss:.1} MiB (target <= 150 MiB)");
    drop(server);
    bodies::large_bodies(server_bin, admin_url, args.large_concurrency).await?;
    detector::detector_quality(server_bin, admin_url, args.scenarios).await?;
    walks::walks_quality(server_bin, admin_url, args.walks, args.weeks).await?;
    if args.index_study {
        indexes::index_study(&rows[..rows.len().min(200_000)], pg_bin, admin_url, dir).await?;
    }
    Ok(())
}
