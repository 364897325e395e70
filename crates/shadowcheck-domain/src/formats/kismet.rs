//! Kismet logs (`.kismet`, SQLite "kismetdb"): every device in the `devices` table becomes a
//! detection at its first and at its last sighting (one when they coincide), at its average GPS
//! position, with Kismet's bounds and metadata kept in `raw_data`. Wi-Fi access points, clients
//! and bridged devices, classic Bluetooth and BTLE are read; other phys (RTL433, Zigbee, ...) are
//! reported as rejected rows.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Map, Value};

use super::{CaptureFile, FormatError, Row};

/// What the file says about itself, for the import report.
pub fn describe(conn: &Connection) -> Value {
    let mut source = Map::new();
    if let Ok((version, db_version)) =
        conn.query_row("SELECT kismet_version, db_version FROM KISMET", [], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
    {
        source.insert("kismet_version".into(), version.into());
        source.insert("db_version".into(), db_version.into());
    }
    if let Ok(sources) = conn
        .prepare("SELECT name, typestring, uuid FROM datasources")
        .and_then(|mut s| s.query_map([], |r| Ok(json!({"name": r.get::<_, String>(0)?, "type": r.get::<_, String>(1)?, "uuid": r.get::<_, String>(2)?})))?.collect::<Result<Vec<_>, _>>())
    {
        source.insert("datasources".into(), Value::Array(sources));
    }
    Value::Object(source)
}

/// The largest value (a device's JSON) read from a log; a larger one is a rejected row.
pub const MAX_VALUE_BYTES: i64 = 4 * 1024 * 1024;
/// SQLite's own memory, for every log read in this process at once.
const HEAP_LIMIT_BYTES: i64 = 256 * 1024 * 1024;
/// How long reading one log may take in SQLite, whatever its shape.
pub const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// Opens a log for reading as a hostile file may be shaped: read-only, its schema distrusted (no
/// functions run from it), `devices` (and `KISMET`, `datasources` when present) real tables,
/// not views that compute without end; values, statements and SQLite's heap bounded; every
/// statement interrupted past `READ_DEADLINE`.
pub fn open(path: &Path) -> Result<Connection, String> {
    use rusqlite::limits::Limit;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open as a Kismet log: {e}"))?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES as i32 + 1024);
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 64 * 1024);
    conn.set_limit(Limit::SQLITE_LIMIT_EXPR_DEPTH, 100);
    conn.set_limit(Limit::SQLITE_LIMIT_COMPOUND_SELECT, 8);
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0);
    conn.set_limit(Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 1);
    let deadline = std::time::Instant::now() + READ_DEADLINE;
    conn.progress_handler(10_000, Some(move || std::time::Instant::now() > deadline));
    conn.execute_batch(&format!(
        "PRAGMA trusted_schema = OFF; PRAGMA cell_size_check = ON; PRAGMA mmap_size = 0; \
         PRAGMA cache_size = -16384; PRAGMA hard_heap_limit = {HEAP_LIMIT_BYTES};"
    ))
    .map_err(|e| format!("cannot open as a Kismet log: {e}"))?;
    let kinds: Vec<(String, String)> = conn
        .prepare("SELECT name, type FROM sqlite_schema WHERE name IN ('devices', 'KISMET', 'datasources')")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .map_err(|e| format!("not a Kismet log (unreadable schema): {e}"))?;
    if !kinds.iter().any(|(name, _)| name == "devices") {
        return Err("not a Kismet log (no devices table)".to_owned());
    }
    if let Some((name, kind)) = kinds.iter().find(|(_, kind)| kind != "table") {
        return Err(format!(
            "not a Kismet log: `{name}` is a {kind}, not a table (a log stores its rows)"
        ));
    }
    Ok(conn)
}

/// Reads every device, calling `emit` with rows (the `line` is the devices table's rowid).
pub fn read_devices(
    conn: &Connection,
    device_id: &str,
    mut emit: impl FnMut(Row) -> bool,
) -> Result<(), String> {
    // A device's JSON larger than MAX_VALUE_BYTES is not read (octet_length() needs only its size):
    // the row is rejected, the rest of the log still read.
    let mut stmt = conn
        .prepare(
            "SELECT rowid, first_time, last_time, phyname, devmac, strongest_signal, min_lat, min_lon, max_lat, max_lon, avg_lat, avg_lon, type, \
             CASE WHEN octet_length(device) <= ?1 THEN device END, octet_length(device) FROM devices ORDER BY rowid",
        )
        .map_err(|e| format!("unexpected Kismet schema: {e}"))?;
    let mut rows = stmt.query([MAX_VALUE_BYTES]).map_err(|e| e.to_string())?;
    while let Some(r) = rows.next().map_err(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted) => format!(
            "reading the Kismet log took longer than {} s; stopped",
            READ_DEADLINE.as_secs()
        ),
        _ => format!("unreadable Kismet log: {e}"),
    })? {
        let rowid: i64 = r.get(0).unwrap_or(0);
        let get_f = |i: usize| r.get::<_, Option<f64>>(i).ok().flatten();
        let get_i = |i: usize| r.get::<_, Option<i64>>(i).ok().flatten();
        let phy: String = r
            .get::<_, Option<String>>(3)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mac: String = r
            .get::<_, Option<String>>(4)
            .ok()
            .flatten()
            .unwrap_or_default();
        let kind: String = r
            .get::<_, Option<String>>(12)
            .ok()
            .flatten()
            .unwrap_or_default();
        // The device column is a JSON blob (text or bytes depending on the writer).
        let blob: Option<Value> = r
            .get::<_, Option<Vec<u8>>>(13)
            .ok()
            .flatten()
            .or_else(|| {
                r.get::<_, Option<String>>(13)
                    .ok()
                    .flatten()
                    .map(String::into_bytes)
            })
            .and_then(|b| serde_json::from_slice(&b).ok());
        let (first, last) = (get_i(1), get_i(2));
        if get_i(14).is_some_and(|n| n > MAX_VALUE_BYTES) {
            let why = format!("device record larger than {MAX_VALUE_BYTES} bytes; not read");
            if !emit((rowid as u64, Err(why))) {
                return Ok(());
            }
            continue;
        }
        let converted = convert(
            &phy,
            &mac,
            &kind,
            get_i(5),
            (get_f(10), get_f(11)),
            blob.as_ref(),
            device_id,
        )
        .map(|mut item| {
            let raw = item["raw_data"]
                .as_object_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            let mut raw = raw;
            raw.insert("first_time".into(), first.into());
            raw.insert("last_time".into(), last.into());
            raw.insert(
                "bounds".into(),
                json!([get_f(7), get_f(6), get_f(9), get_f(8)]),
            );
            item["raw_data"] = Value::Object(raw);
            item
        });
        let times: Vec<Option<i64>> = match (first, last) {
            (Some(f), Some(l)) if f != l => vec![Some(f), Some(l)],
            (f, l) => vec![l.or(f)],
        };
        for t in times {
            let row = match (&converted, t) {
                (Ok(item), Some(secs)) => {
                    let mut item = item.clone();
                    let at = chrono::DateTime::from_timestamp(secs, 0)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                    item["detected_at"] = at.map_or(Value::Null, Value::String);
                    Ok(item)
                }
                (Ok(_), None) => Err("device has no first/last time".to_owned()),
                (Err(e), _) => Err(e.clone()),
            };
            if !emit((rowid as u64, row)) {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn convert(
    phy: &str,
    mac: &str,
    kind: &str,
    strongest: Option<i64>,
    (lat, lon): (Option<f64>, Option<f64>),
    blob: Option<&Value>,
    device_id: &str,
) -> Result<Value, String> {
    let base = |key: &str| blob.and_then(|b| b.get(key));
    let name = base("kismet.device.base.name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let mut item = Map::new();
    item.insert("latitude".into(), lat.map_or(Value::Null, |v| json!(v)));
    item.insert("longitude".into(), lon.map_or(Value::Null, |v| json!(v)));
    item.insert("device_id".into(), Value::String(device_id.to_owned()));
    item.insert("device_name".into(), "kismet".into());
    let mut raw = Map::new();
    raw.insert("source".into(), "kismetdb".into());
    raw.insert("kismet_type".into(), Value::String(kind.to_owned()));
    if let Some(manuf) = base("kismet.device.base.manuf") {
        raw.insert("manufacturer".into(), manuf.clone());
    }
    // Kismet writes 0 when it never measured a signal.
    let signal = strongest.filter(|s| *s != 0);
    match phy {
        "IEEE802.11" => {
            item.insert("signal_type".into(), "wifi".into());
            item.insert("bssid".into(), Value::String(mac.to_owned()));
            if let Some(ssid) = name.filter(|_| kind.contains("AP")) {
                item.insert("ssid".into(), Value::String(ssid));
            }
            if let Some(ch) = base("kismet.device.base.channel")
                .and_then(Value::as_str)
                .and_then(|c| c.parse::<i64>().ok())
                .filter(|c| *c > 0)
            {
                item.insert("channel".into(), ch.into());
            }
            // Kismet stores frequencies in kHz.
            if let Some(khz) = base("kismet.device.base.frequency")
                .and_then(Value::as_f64)
                .filter(|f| *f > 0.0)
            {
                item.insert("frequency_mhz".into(), json!((khz / 1000.0).round() as i64));
            }
            if let Some(s) = signal {
                item.insert("signal_strength_dbm".into(), s.into());
            }
        }
        "Bluetooth" | "BTLE" | "BLE" => {
            let le = phy != "Bluetooth" || kind.contains("BTLE");
            item.insert(
                "signal_type".into(),
                if le { "ble" } else { "bluetooth" }.into(),
            );
            item.insert("bt_address".into(), Value::String(mac.to_owned()));
            if let Some(n) = name {
                item.insert("bt_name".into(), Value::String(n));
            }
            if let Some(s) = signal {
                item.insert("bt_rssi".into(), s.into());
            }
            // Kismet keeps the advertised services and the last scan response bytes.
            let bt = base("bluetooth.device");
            let uuids: Vec<String> = bt
                .and_then(|b| b.get("bluetooth.device.service_uuid_vec"))
                .and_then(Value::as_array)
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_str)
                        .filter_map(crate::domain::detection::normalise_service_uuid)
                        .take(32)
                        .collect()
                })
                .unwrap_or_default();
            if !uuids.is_empty() {
                item.insert("ble_service_uuids".into(), json!(uuids));
            }
            if let Some(hex) = bt
                .and_then(|b| b.get("bluetooth.device.scan_data_bytes"))
                .and_then(Value::as_str)
                .filter(|h| {
                    h.len() % 2 == 0 && h.len() <= 510 && h.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .filter(|h| !h.is_empty())
            {
                item.insert(
                    "ble_advertisement".into(),
                    Value::String(hex.to_ascii_lowercase()),
                );
            }
        }
        other => return Err(format!("Kismet phy `{other}` is not wifi or bluetooth")),
    }
    item.insert("raw_data".into(), Value::Object(raw));
    Ok(Value::Object(item))
}

/// A Kismet log as a capture file; the capture device is `device_id` or derived from the name.
pub fn open_file(
    path: &Path,
    device_id: Option<String>,
    filename: Option<&str>,
) -> Result<CaptureFile, FormatError> {
    let conn = open(path)?;
    let device = device_id.unwrap_or_else(|| {
        super::device_uuid(&format!("kismet:{}", filename.unwrap_or_default())).to_string()
    });
    let source = describe(&conn);
    Ok(CaptureFile::new(
        "kismetdb".to_owned(),
        source,
        move |emit| read_devices(&conn, &device, emit).err(),
    ))
}
