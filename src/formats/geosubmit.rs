//! Mozilla Location Service "geosubmit v2" (ichnaea), as NeoStumbler, Tower Collector and the old
//! MozStumbler post it: `{"items": [{timestamp, position, wifiAccessPoints, cellTowers,
//! bluetoothBeacons}]}`. Every observed transmitter becomes one detection; unknown fields are
//! ignored, as clients add their own.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::{CaptureFile, FormatError};

/// Detections (our JSON shape) from one geosubmit body, with a reason per unusable report.
pub struct Converted {
    pub items: Vec<Value>,
    /// Reports (not transmitters) that could not be used at all, with why.
    pub skipped_reports: Vec<(usize, String)>,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(|x| {
        x.as_i64()
            .or_else(|| x.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
    })
}

fn time_of(report_ms: i64, age_ms: Option<i64>) -> Option<String> {
    // `age` is how long before the report's timestamp the transmitter was seen.
    let ms = report_ms - age_ms.unwrap_or(0).max(0);
    let t: DateTime<Utc> = Utc.timestamp_millis_opt(ms).single()?;
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Maps ichnaea radio names onto ours.
fn network_type(radio: Option<&str>) -> Option<&'static str> {
    match radio?.to_ascii_lowercase().as_str() {
        "gsm" => Some("GSM"),
        "wcdma" | "umts" => Some("WCDMA"),
        "lte" => Some("LTE"),
        "nr" | "5g" => Some("NR"),
        "cdma" => Some("CDMA"),
        _ => None,
    }
}

/// `device` tells whose capture this is (derived from the API key), for the natural key.
pub fn convert(
    body: &Value,
    device_id: &str,
    device_name: &str,
    now: DateTime<Utc>,
) -> Result<Converted, String> {
    let reports = body
        .get("items")
        .and_then(Value::as_array)
        .ok_or("expected {\"items\": [...]}")?;
    let mut items = Vec::new();
    let mut skipped_reports = Vec::new();
    for (index, report) in reports.iter().enumerate() {
        let Some(position) = report.get("position").filter(|p| p.is_object()) else {
            skipped_reports.push((index, "no position".to_owned()));
            continue;
        };
        let report_ms = int(report, "timestamp").unwrap_or_else(|| now.timestamp_millis());
        // Position age shifts the fix back in time too; we keep the report's time for it.
        let mut base = Map::new();
        base.insert(
            "latitude".into(),
            position.get("latitude").cloned().unwrap_or(Value::Null),
        );
        base.insert(
            "longitude".into(),
            position.get("longitude").cloned().unwrap_or(Value::Null),
        );
        if let Some(acc) = num(position, "accuracy") {
            base.insert("accuracy_meters".into(), json!(acc));
        }
        if let Some(alt) = num(position, "altitude") {
            base.insert("altitude_meters".into(), json!(alt));
        }
        base.insert("device_id".into(), Value::String(device_id.to_owned()));
        base.insert(
            "device_name".into(),
            Value::String(device_name.chars().take(128).collect()),
        );
        let mut raw = Map::new();
        raw.insert("source".into(), "geosubmit-v2".into());
        for key in [
            "source",
            "heading",
            "speed",
            "pressure",
            "altitudeAccuracy",
            "age",
        ] {
            if let Some(v) = position.get(key) {
                raw.insert(format!("position_{key}"), v.clone());
            }
        }
        let emit = |extra: Map<String, Value>,
                    age: Option<i64>,
                    raw_extra: Map<String, Value>,
                    items: &mut Vec<Value>| {
            let mut item = base.clone();
            item.insert(
                "detected_at".into(),
                time_of(report_ms, age).map_or(Value::Null, Value::String),
            );
            item.extend(extra);
            let mut r = raw.clone();
            r.extend(raw_extra);
            item.insert("raw_data".into(), Value::Object(r));
            items.push(Value::Object(item));
        };
        let mut seen_any = false;
        for ap in report
            .get("wifiAccessPoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            seen_any = true;
            let mut m = Map::new();
            m.insert("signal_type".into(), "wifi".into());
            m.insert(
                "bssid".into(),
                ap.get("macAddress").cloned().unwrap_or(Value::Null),
            );
            if let Some(ssid) = ap
                .get("ssid")
                .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
            {
                m.insert("ssid".into(), ssid.clone());
            }
            if let Some(c) = int(ap, "channel").filter(|c| *c > 0) {
                m.insert("channel".into(), c.into());
            }
            if let Some(f) = int(ap, "frequency").filter(|f| *f > 0) {
                m.insert("frequency_mhz".into(), f.into());
            }
            if let Some(s) = int(ap, "signalStrength").filter(|s| *s != 0) {
                m.insert("signal_strength_dbm".into(), s.into());
            }
            let mut r = Map::new();
            for key in ["radioType", "signalToNoiseRatio"] {
                if let Some(v) = ap.get(key) {
                    r.insert(key.into(), v.clone());
                }
            }
            emit(m, int(ap, "age"), r, &mut items);
        }
        for cell in report
            .get("cellTowers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            seen_any = true;
            let mut m = Map::new();
            m.insert("signal_type".into(), "cellular".into());
            let radio = cell
                .get("radioType")
                .and_then(Value::as_str)
                .or_else(|| report.get("radioType").and_then(Value::as_str));
            if let Some(nt) = network_type(radio) {
                m.insert("network_type".into(), nt.into());
            }
            m.insert(
                "mcc".into(),
                cell.get("mobileCountryCode")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            m.insert(
                "mnc".into(),
                cell.get("mobileNetworkCode")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            if let Some(lac) = cell.get("locationAreaCode") {
                m.insert("lac".into(), lac.clone());
            }
            m.insert(
                "cell_id".into(),
                cell.get("cellId").cloned().unwrap_or(Value::Null),
            );
            if let Some(s) = int(cell, "signalStrength").filter(|s| *s != 0) {
                m.insert("signal_strength_dbm".into(), s.into());
            }
            let mut r = Map::new();
            for key in [
                "primaryScramblingCode",
                "asu",
                "serving",
                "timingAdvance",
                "arfcn",
            ] {
                if let Some(v) = cell.get(key) {
                    r.insert(key.into(), v.clone());
                }
            }
            emit(m, int(cell, "age"), r, &mut items);
        }
        for beacon in report
            .get("bluetoothBeacons")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            seen_any = true;
            let mut m = Map::new();
            m.insert("signal_type".into(), "ble".into());
            m.insert(
                "bt_address".into(),
                beacon.get("macAddress").cloned().unwrap_or(Value::Null),
            );
            if let Some(name) = beacon
                .get("name")
                .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
            {
                m.insert("bt_name".into(), name.clone());
            }
            if let Some(s) = int(beacon, "signalStrength").filter(|s| *s != 0) {
                m.insert("bt_rssi".into(), s.into());
            }
            emit(m, int(beacon, "age"), Map::new(), &mut items);
        }
        if !seen_any {
            skipped_reports.push((
                index,
                "no wifiAccessPoints, cellTowers or bluetoothBeacons".to_owned(),
            ));
        }
    }
    Ok(Converted {
        items,
        skipped_reports,
    })
}

/// A file holding one geosubmit v2 body (`{"items": [...]}`), as stumbler apps can export; its
/// "lines" are observation numbers (1-based).
pub fn open_file(
    reader: Box<dyn std::io::Read + Send>,
    device_id: Option<String>,
    filename: Option<&str>,
) -> Result<CaptureFile, FormatError> {
    let mut bytes = Vec::new();
    let mut reader = reader;
    std::io::Read::read_to_end(&mut reader, &mut bytes)
        .map_err(|e| FormatError(format!("unreadable input: {e}")))?;
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|e| FormatError(format!("not JSON: {e}")))?;
    let device = device_id.unwrap_or_else(|| {
        super::device_uuid(&format!("geosubmit-file:{}", filename.unwrap_or_default())).to_string()
    });
    let converted = convert(&body, &device, "geosubmit import", Utc::now())
        .map_err(|why| FormatError(why.to_owned()))?;
    let reports = body
        .get("items")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Ok(CaptureFile::new(
        "geosubmit-v2".to_owned(),
        json!({ "reports": reports }),
        move |emit| {
            for (i, item) in converted.items.into_iter().enumerate() {
                if !emit((i as u64 + 1, Ok(item))) {
                    break;
                }
            }
            None
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_transmitter_becomes_a_detection_at_timestamp_minus_age() {
        let body = json!({"items": [{
            "timestamp": 1405602028568i64,
            "position": {"latitude": -22.7539192, "longitude": -43.4371081, "accuracy": 10.0, "age": 1000, "altitude": 100.0, "source": "gps", "extra": 1},
            "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab", "age": 5000, "channel": 11, "frequency": 2412, "signalStrength": -51, "ssid": "wifi"}],
            "cellTowers": [{"radioType": "lte", "mobileCountryCode": 208, "mobileNetworkCode": 1, "locationAreaCode": 2, "cellId": 12345, "age": 3, "signalStrength": -60}],
            "bluetoothBeacons": [{"macAddress": "ff:74:27:89:5a:77", "age": 2000, "name": "beacon", "signalStrength": -110}],
            "clientOwnField": true
        }]});
        let now = Utc::now();
        let c = convert(
            &body,
            "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a01",
            "stumbler",
            now,
        )
        .expect("converts");
        assert_eq!(c.items.len(), 3);
        assert_eq!(c.items[0]["detected_at"], "2014-07-17T13:00:23.568Z");
        assert_eq!(c.items[1]["network_type"], "LTE");
        assert_eq!(c.items[2]["signal_type"], "ble");
        assert_eq!(c.items[0]["raw_data"]["position_source"], "gps");
    }
}
