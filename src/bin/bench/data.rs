//! The generated rows: clustered positions over a few cities, transmitters seen again and
//! again; as CSV for COPY and as JSON for HTTP.

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use anyhow::Result;

pub(crate) const CITIES: [(&str, f64, f64); 5] = [
    ("Berlin", 52.520, 13.405),
    ("Paris", 48.857, 2.352),
    ("London", 51.507, -0.128),
    ("New York", 40.713, -74.006),
    ("Tokyo", 35.676, 139.650),
];

pub(crate) struct Row {
    pub(crate) at: DateTime<Utc>,
    pub(crate) lat: f64,
    pub(crate) lon: f64,
    pub(crate) kind: &'static str,
    pub(crate) mac: String,
    pub(crate) ssid: Option<String>,
    pub(crate) channel: Option<i32>,
    pub(crate) dbm: i32,
    pub(crate) cell: Option<(i32, i32, i32, i64)>,
    pub(crate) device: String,
    pub(crate) accuracy: f64,
    pub(crate) suspicious: bool,
}

/// Clustered positions over a few cities, transmitters seen again and again (a few popular
/// ones very often), strictly increasing times so no two rows share a natural key.
pub(crate) fn generate(n: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(42);
    let devices: Vec<String> = (0..50)
        .map(|i| format!("6f1c7a2e-3b1d-4c55-9f2a-{i:012x}"))
        .collect();
    let aps = (n / 20).max(10);
    let bts = (n / 50).max(10);
    let cells = (n / 500).max(5);
    let span = chrono::Duration::days(90);
    let start = Utc::now() - span - chrono::Duration::hours(1);
    let step_ms = (span.num_milliseconds() as f64 / n as f64).max(1.0);
    // A transmitter's home: a fixed city and offset, so it is seen near the same place.
    let home = |id: usize| {
        let (_, lat, lon) = CITIES[id % CITIES.len()];
        let mut r = StdRng::seed_from_u64(id as u64);
        // Sum of two uniforms: denser towards the centre.
        let dlat = r.gen_range(-1.0..1.0f64) + r.gen_range(-1.0..1.0f64);
        let dlon = r.gen_range(-1.0..1.0f64) + r.gen_range(-1.0..1.0f64);
        (lat + 0.05 * dlat, lon + 0.08 * dlon)
    };
    (0..n)
        .map(|i| {
            let at = start + chrono::Duration::milliseconds((i as f64 * step_ms) as i64);
            // Squared uniform: low ids are popular.
            let pick =
                |rng: &mut StdRng, pool: usize| ((rng.gen::<f64>().powi(2)) * pool as f64) as usize;
            let roll = rng.gen_range(0..100);
            let (kind, id) = match roll {
                0..=54 => ("wifi", pick(&mut rng, aps)),
                55..=79 => ("ble", aps + pick(&mut rng, bts)),
                80..=87 => ("bluetooth", aps + bts + pick(&mut rng, bts)),
                _ => ("cellular", aps + 2 * bts + pick(&mut rng, cells)),
            };
            let (hlat, hlon) = home(id);
            let jitter = if kind == "cellular" { 0.0 } else { 0.0004 };
            let b = (id as u64).to_be_bytes();
            let first = match kind {
                "wifi" => 0xa4,
                "ble" => 0xd6, // locally administered: randomised BLE addresses
                _ => 0xb4,
            };
            Row {
                at,
                lat: hlat + rng.gen_range(-jitter..=jitter),
                lon: hlon + rng.gen_range(-jitter..=jitter),
                kind,
                mac: format!(
                    "{first:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    b[3], b[4], b[5], b[6], b[7]
                ),
                ssid: (kind == "wifi").then(|| format!("net-{}", id % 5000)),
                channel: (kind == "wifi").then(|| 1 + (id % 11) as i32),
                dbm: -rng.gen_range(30..100),
                cell: (kind == "cellular").then(|| {
                    (
                        262,
                        1 + (id % 3) as i32,
                        1000 + (id % 50) as i32,
                        10_000 + id as i64,
                    )
                }),
                device: devices[i % devices.len()].clone(),
                accuracy: rng.gen_range(3.0..40.0),
                suspicious: rng.gen_range(0..1000) == 0,
            }
        })
        .collect()
}

pub(crate) fn csv_line(r: &Row, out: &mut String) {
    use std::fmt::Write;
    let opt = |v: Option<String>| v.unwrap_or_default();
    let (bssid, bt) = if r.kind == "wifi" {
        (r.mac.clone(), String::new())
    } else if r.kind == "cellular" {
        (String::new(), String::new())
    } else {
        (String::new(), r.mac.clone())
    };
    let (mcc, mnc, lac, cid) = match r.cell {
        Some((a, b, c, d)) => (a.to_string(), b.to_string(), c.to_string(), d.to_string()),
        None => Default::default(),
    };
    let (ssdbm, btrssi) = if r.kind == "wifi" || r.kind == "cellular" {
        (r.dbm.to_string(), String::new())
    } else {
        (String::new(), r.dbm.to_string())
    };
    let _ = writeln!(
        out,
        "{},SRID=4326;POINT({} {}),{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{{}}",
        r.at.to_rfc3339(),
        r.lon,
        r.lat,
        r.kind,
        opt(r.ssid.clone()),
        bssid,
        r.channel.map(|c| c.to_string()).unwrap_or_default(),
        ssdbm,
        bt,
        btrssi,
        cid,
        lac,
        mcc,
        mnc,
        if r.kind == "cellular" { "LTE" } else { "" },
        r.device,
        r.accuracy,
        r.suspicious,
    );
}

pub(crate) const COPY_COLUMNS: &str = "detected_at, location, signal_type, ssid, bssid, channel, signal_strength_dbm, bt_address, bt_rssi, cell_id, lac, mcc, mnc, network_type, device_id, accuracy_meters, is_suspicious, tags";

pub(crate) fn json_item(r: &Row) -> serde_json::Value {
    let mut v = serde_json::json!({
        "detected_at": r.at.to_rfc3339(), "latitude": r.lat, "longitude": r.lon, "signal_type": r.kind,
        "device_id": r.device, "accuracy_meters": r.accuracy,
    });
    let m = v.as_object_mut().expect("object");
    match r.kind {
        "wifi" => {
            m.insert("bssid".into(), r.mac.clone().into());
            m.insert("ssid".into(), r.ssid.clone().into());
            m.insert("channel".into(), r.channel.into());
            m.insert("signal_strength_dbm".into(), r.dbm.into());
        }
        "cellular" => {
            let (mcc, mnc, lac, cid) = r.cell.unwrap_or_default();
            m.insert("mcc".into(), mcc.into());
            m.insert("mnc".into(), mnc.into());
            m.insert("lac".into(), lac.into());
            m.insert("cell_id".into(), cid.into());
            m.insert("network_type".into(), "LTE".into());
            m.insert("signal_strength_dbm".into(), r.dbm.into());
        }
        _ => {
            m.insert("bt_address".into(), r.mac.clone().into());
            m.insert("bt_rssi".into(), r.dbm.into());
        }
    }
    v
}

/// For the COPY baseline only: COPY cannot create partitions, and it measures the physical limit.
pub(crate) async fn prepare_partitions(url: &str, rows: &[Row]) -> Result<()> {
    use chrono::Datelike;
    let pool = sqlx::PgPool::connect(url).await?;
    let mut months: Vec<chrono::NaiveDate> = rows
        .iter()
        .filter_map(|r| chrono::NaiveDate::from_ymd_opt(r.at.year(), r.at.month(), 1))
        .collect();
    months.dedup();
    for m in months {
        sqlx::query("SELECT sigint.ensure_partition($1)")
            .bind(m)
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    Ok(())
}
