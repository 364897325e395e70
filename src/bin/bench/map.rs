//! (f) Map serving: vector tiles cold and cached beside martin on the same table, an OGC API
//! page, a streamed export.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::CITIES;
use crate::harness::{percentile, psql_scalar, timed_gets, Process, Server};
use crate::Args;

/// The XYZ tile of a position.
pub(crate) fn tile_of(lat: f64, lon: f64, z: u8) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor() as u32;
    let r = lat.to_radians();
    let y =
        ((1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor() as u32;
    (x.min(n as u32 - 1), y.min(n as u32 - 1))
}

/// martin serving the same table, for comparison (detections with id and signal type).
pub(crate) struct Martin {
    _process: Process,
    pub(crate) addr: String,
}

pub(crate) async fn start_martin(bin: &Path, url: &str, dir: &Path) -> Result<Martin> {
    let port = shadowcheck::db::embedded::free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("martin.yaml");
    std::fs::write(
        &config,
        format!(
            "listen_addresses: '{addr}'\npostgres:\n  connection_string: '{url}'\n  auto_publish: false\n  tables:\n    detections:\n      schema: sigint\n      table: signal_detections\n      srid: 4326\n      geometry_column: location\n      geometry_type: POINT\n      id_column: id\n      properties:\n        ssid: text\n"
        ),
    )?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let martin = Martin {
        _process: Process(child),
        addr,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client
            .get(format!("http://{}/catalog", martin.addr))
            .send()
            .await
        {
            if r.status() == 200 {
                return Ok(martin);
            }
        }
        if Instant::now() > deadline {
            bail!("martin did not start");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (f) Map serving on the full table: vector tiles cold and cached (next to martin on the same
/// table when it is installed), an OGC API page of 1000 features, and a streamed export.
pub(crate) async fn map_serving(
    args: &Args,
    client: &reqwest::Client,
    server: &Server,
    spots: &[(f64, f64)],
    url: &str,
) -> Result<()> {
    let martin_bin = args.martin.clone().or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("martin"))
                .find(|p| p.is_file())
        })
    });
    let dir = std::env::temp_dir().join(format!("shadowcheck-bench-martin-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let martin = match &martin_bin {
        Some(bin) => Some(start_martin(bin, url, &dir).await?),
        None => None,
    };
    println!(
        "\n## (f) map serving on the same table ({} distinct tiles per zoom around stored positions, sequential requests)",
        args.tiles
    );
    if martin.is_none() {
        println!("martin not installed: its rows are skipped (`cargo install martin --locked --no-default-features --features postgres`)");
    }
    println!("| server | zoom | cold p50 ms | cold p99 ms | cold tiles/s | cached p50 ms | cached p99 ms | cached tiles/s | mean KiB |\n|---|---|---|---|---|---|---|---|---|");
    let mut rng = StdRng::seed_from_u64(11);
    for z in [10u8, 12, 14, 16] {
        let mut tiles = std::collections::BTreeSet::new();
        let mut tries = 0;
        while tiles.len() < args.tiles && tries < args.tiles * 50 {
            let (la, lo) = spots[rng.gen_range(0..spots.len())];
            tiles.insert(tile_of(la, lo, z));
            tries += 1;
        }
        let mut tiles: Vec<(u32, u32)> = tiles.into_iter().collect();
        // Not in x order: a map pans around.
        for i in (1..tiles.len()).rev() {
            tiles.swap(i, rng.gen_range(0..=i));
        }
        let ours: Vec<String> = tiles
            .iter()
            .map(|(x, y)| format!("http://{}/tiles/detections/{z}/{x}/{y}.pbf", server.addr))
            .collect();
        let mut servers: Vec<(&str, Vec<String>)> = vec![("shadowcheck", ours)];
        if let Some(m) = &martin {
            servers.push((
                "martin",
                tiles
                    .iter()
                    .map(|(x, y)| format!("http://{}/detections/{z}/{x}/{y}", m.addr))
                    .collect(),
            ));
        }
        for (name, urls) in servers {
            let (cold, cold_secs, bytes) = timed_gets(client, &urls).await?;
            let (warm, warm_secs, _) = timed_gets(client, &urls).await?;
            println!(
                "| {name} | {z} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} |",
                percentile(&cold, 50.0),
                percentile(&cold, 99.0),
                urls.len() as f64 / cold_secs,
                percentile(&warm, 50.0),
                percentile(&warm, 99.0),
                urls.len() as f64 / warm_secs,
                bytes as f64 / urls.len() as f64 / 1024.0
            );
        }
    }
    drop(martin);
    let _ = std::fs::remove_dir_all(&dir);

    // OGC API – Features: pages of 1000 in a city box, and a streamed FlatGeobuf export of it.
    let pages: Vec<String> = (0..args.queries.min(100))
        .map(|_| {
            let (la, lo) = spots[rng.gen_range(0..spots.len())];
            format!(
                "http://{}/ogc/collections/detections/items?limit=1000&bbox={},{},{},{}",
                server.addr,
                lo - 0.07,
                la - 0.045,
                lo + 0.07,
                la + 0.045
            )
        })
        .collect();
    let (lat, _, bytes) = timed_gets(client, &pages).await?;
    println!(
        "\n| OGC API – Features page | p50 ms | p99 ms | mean KiB |\n|---|---|---|---|\n| 1000 features, city bbox | {:.1} | {:.1} | {:.0} |",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        bytes as f64 / pages.len() as f64 / 1024.0
    );
    let (_, la, lo) = CITIES[0];
    let export = format!(
        "http://{}/api/v1/detections?f=fgb&bbox={},{},{},{}",
        server.addr,
        lo - 0.2,
        la - 0.12,
        lo + 0.2,
        la + 0.12
    );
    let t = Instant::now();
    let body = client.get(&export).send().await?.bytes().await?;
    let secs = t.elapsed().as_secs_f64();
    let rows = psql_scalar(
        url,
        &format!(
            "SELECT count(*) FROM sigint.signal_detections WHERE location && ST_MakeEnvelope({}, {}, {}, {}, 4326)",
            lo - 0.2,
            la - 0.12,
            lo + 0.2,
            la + 0.12
        ),
    )
    .await?;
    println!(
        "\n| export | rows | seconds | rows/s | MiB |\n|---|---|---|---|---|\n| FlatGeobuf, Berlin box | {rows} | {secs:.2} | {:.0} | {:.1} |",
        rows as f64 / secs,
        body.len() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
