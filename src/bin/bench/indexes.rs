//! Each index's ingest cost and query benefit (`--index-study`).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::data::{csv_line, prepare_partitions, Row, COPY_COLUMNS};
use crate::harness::{create_db, psql};

/// Each optional index: COPY rate without it vs with every index, and its query with vs without.
pub(crate) async fn index_study(
    rows: &[Row],
    pg_bin: &Path,
    admin_url: &str,
    dir: &Path,
) -> Result<()> {
    let url = create_db(admin_url, "bench_index").await?;
    prepare_partitions(&url, rows).await?;
    let csv_path = dir.join("index-rows.csv");
    let mut text = String::with_capacity(rows.len() * 200);
    for r in rows {
        csv_line(r, &mut text);
    }
    std::fs::write(&csv_path, text)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&csv_path, std::fs::Permissions::from_mode(0o644))?;
    }
    let copy = || -> Result<f64> {
        psql(pg_bin, &url, "TRUNCATE sigint.signal_detections")?;
        let t = Instant::now();
        psql(
            pg_bin,
            &url,
            &format!(
                "\\copy sigint.signal_detections ({COPY_COLUMNS}) FROM '{}' WITH (FORMAT csv)",
                csv_path.display()
            ),
        )?;
        Ok(rows.len() as f64 / t.elapsed().as_secs_f64())
    };
    let pool = sqlx::PgPool::connect(&url).await?;
    let mid = &rows[rows.len() / 2];
    let day = |t: DateTime<Utc>| (t.to_rfc3339(), (t + chrono::Duration::days(1)).to_rfc3339());
    let (from, to) = day(mid.at);
    let wifi = rows
        .iter()
        .find(|r| r.kind == "wifi")
        .map(|r| r.mac.clone())
        .unwrap_or_default();
    let ble = rows
        .iter()
        .find(|r| r.kind == "ble")
        .map(|r| r.mac.clone())
        .unwrap_or_default();
    let studies: Vec<(&str, String)> = vec![
        ("signal_detections_location", format!("SELECT count(*) FROM sigint.signal_detections WHERE location && ST_MakeEnvelope({}, {}, {}, {}, 4326)", mid.lon - 0.0015, mid.lat - 0.0009, mid.lon + 0.0015, mid.lat + 0.0009)),
        ("signal_detections_type_time", format!("SELECT count(*) FROM sigint.signal_detections WHERE signal_type = 'cellular' AND detected_at >= '{from}' AND detected_at < '{to}'")),
        ("signal_detections_device", format!("SELECT count(*) FROM sigint.signal_detections WHERE device_id = '{}' AND detected_at >= '{from}' AND detected_at < '{to}'", mid.device)),
        ("signal_detections_bssid", format!("SELECT count(*) FROM sigint.signal_detections WHERE bssid = '{wifi}'")),
        ("signal_detections_bt_address", format!("SELECT count(*) FROM sigint.signal_detections WHERE bt_address = '{ble}'")),
        ("signal_detections_ssid_trgm", "SELECT count(*) FROM sigint.signal_detections WHERE ssid ILIKE '%et-123%'".to_owned()),
        ("signal_detections_suspicious", "SELECT count(*) FROM sigint.signal_detections WHERE is_suspicious".to_owned()),
    ];
    let time_query = |sql: String| {
        let pool = pool.clone();
        async move {
            let mut best = f64::MAX;
            for _ in 0..15 {
                let t = Instant::now();
                sqlx::query(&sql).execute(&pool).await?;
                best = best.min(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<f64, anyhow::Error>(best)
        }
    };
    let all = copy()?;
    psql(pg_bin, &url, "ANALYZE sigint.signal_detections")?;
    println!("\n## index study on {} rows: COPY {all:.0} rows/s with every index\n| index | COPY rows/s without it | ingest cost | its query with (ms, best of 15) | without (ms) | speed-up |\n|---|---|---|---|---|---|", rows.len());
    for (index, query) in studies {
        let with = time_query(query.clone()).await?;
        let def = psql(
            pg_bin,
            &url,
            &format!("SELECT pg_get_indexdef('sigint.{index}'::regclass)"),
        )?;
        psql(pg_bin, &url, &format!("DROP INDEX sigint.{index}"))?;
        let without_rate = copy()?;
        psql(pg_bin, &url, "ANALYZE sigint.signal_detections")?;
        let without = time_query(query).await?;
        // pg_get_indexdef says ON ONLY for a partitioned parent; recreate it on every partition.
        psql(pg_bin, &url, &def.replace(" ON ONLY ", " ON "))?;
        println!(
            "| {index} | {without_rate:.0} | {:.1} % | {with:.2} | {without:.2} | {:.1}x |",
            (1.0 - all / without_rate) * 100.0,
            without / with.max(0.001)
        );
        copy()?;
    }
    pool.close().await;
    Ok(())
}
