//! Mozilla Location Service "geosubmit v2" (ichnaea), as NeoStumbler, Tower Collector and the old
//! MozStumbler post it: `{"items": [{timestamp, position, wifiAccessPoints, cellTowers,
//! bluetoothBeacons}]}`. Every observed transmitter becomes one detection; unknown fields are
//! ignored, as clients add their own.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::{CaptureFile, FormatError, Row, Rows};

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

/// Who captured the reports: derived from the API key (or the file), for the natural key.
#[derive(Clone, Debug)]
pub struct Capture {
    pub device_id: String,
    pub device_name: String,
    /// The time of reports that carry none.
    pub now: DateTime<Utc>,
}

/// Longest text of one report: real ones hold at most a few hundred transmitters.
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;

/// Why a geosubmit body was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    Malformed(String),
    #[error("{count} reports in one request; the limit is {limit}")]
    TooManyReports { count: usize, limit: usize },
}

/// Rows of a geosubmit body, produced one report at a time: only the report being read is
/// ever a parsed value. Reports that cannot be used at all are counted in `skipped`.
pub fn rows(
    body: Bytes,
    capture: Capture,
    max_reports: usize,
    skipped: Arc<AtomicU64>,
) -> Result<Rows, BodyError> {
    let malformed = |why: &str| BodyError::Malformed(why.to_owned());
    let text =
        std::str::from_utf8(&body).map_err(|_| malformed("invalid JSON: the body is not UTF-8"))?;
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        items: Option<&'a RawValue>,
    }
    let top: Body<'_> =
        serde_json::from_str(text).map_err(|e| malformed(&format!("invalid JSON: {e}")))?;
    let expected = || malformed("expected {\"items\": [...]}");
    let items = top.items.ok_or_else(expected)?;
    let reports = super::json::elements(items.get(), max_reports).map_err(|_| expected())?;
    if reports.total > max_reports {
        return Err(BodyError::TooManyReports {
            count: reports.total,
            limit: max_reports,
        });
    }
    let reports: Vec<Bytes> = reports
        .kept
        .iter()
        .map(|r| body.slice_ref(r.get().as_bytes()))
        .collect();
    let mut reports = reports.into_iter().enumerate();
    let mut pending = std::collections::VecDeque::new();
    let mut index = 0u64;
    let next = move || loop {
        if let Some(item) = pending.pop_front() {
            index += 1;
            return Some((index - 1, Ok(item)));
        }
        let (i, report) = reports.next()?;
        let converted = super::json::item_value(&report, "report")
            .and_then(|report| convert_report(&report, &capture));
        match converted {
            Ok(items) => pending.extend(items),
            Err(why) => {
                tracing::debug!(report = i, %why, "geosubmit report skipped");
                skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    Ok(Rows::new(None, std::iter::from_fn(next)))
}

/// The detections (our JSON shape) of one report, or why it cannot be used at all.
fn convert_report(report: &Value, capture: &Capture) -> Result<Vec<Value>, String> {
    let Capture {
        device_id,
        device_name,
        now,
    } = capture;
    let mut items = Vec::new();
    {
        let Some(position) = report.get("position").filter(|p| p.is_object()) else {
            return Err("no position".to_owned());
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
            return Err("no wifiAccessPoints, cellTowers or bluetoothBeacons".to_owned());
        }
    }
    Ok(items)
}

/// Streams the reports of `{"items": [...]}` from a reader into `emit`, one report parsed at a
/// time; counts reports, and stops when `emit` says so.
struct ItemsSeed<'a> {
    capture: &'a Capture,
    emit: &'a mut dyn FnMut(Row) -> bool,
    line: u64,
    reports: u64,
    skipped: u64,
    stopped: bool,
}

impl<'de> Visitor<'de> for &mut ItemsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("{\"items\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen_items = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "items" && !seen_items {
                seen_items = true;
                map.next_value_seed(ItemsArray(&mut *self))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
            if self.stopped {
                return Ok(());
            }
        }
        if !seen_items {
            return Err(serde::de::Error::custom("expected {\"items\": [...]}"));
        }
        Ok(())
    }
}

struct ItemsArray<'s, 'a>(&'s mut ItemsSeed<'a>);

impl<'de> DeserializeSeed<'de> for ItemsArray<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsArray<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of reports")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let seed = self.0;
        while let Some(report) = seq.next_element::<Box<RawValue>>()? {
            seed.reports += 1;
            let converted = super::json::item_value(report.get().as_bytes(), "report")
                .and_then(|report| convert_report(&report, seed.capture));
            drop(report);
            let Ok(items) = converted else {
                seed.skipped += 1;
                continue;
            };
            for item in items {
                seed.line += 1;
                if !(seed.emit)((seed.line, Ok(item))) {
                    seed.stopped = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// A file holding one geosubmit v2 body (`{"items": [...]}`), as stumbler apps can export; its
/// "lines" are observation numbers (1-based). Read as a stream: only one report is held at once.
pub fn open_file(
    reader: Box<dyn std::io::Read + Send>,
    device_id: Option<String>,
    filename: Option<&str>,
) -> Result<CaptureFile, FormatError> {
    let mut reader = std::io::BufReader::new(reader);
    let head = std::io::BufRead::fill_buf(&mut reader)
        .map_err(|e| FormatError(format!("unreadable input: {e}")))?;
    if head.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(FormatError("not JSON: expected {\"items\": [...]}".into()));
    }
    let capture = Capture {
        device_id: device_id.unwrap_or_else(|| {
            super::device_uuid(&format!("geosubmit-file:{}", filename.unwrap_or_default()))
                .to_string()
        }),
        device_name: "geosubmit import".to_owned(),
        now: Utc::now(),
    };
    Ok(CaptureFile::new(
        "geosubmit-v2".to_owned(),
        json!({}),
        move |emit| {
            let mut seed = ItemsSeed {
                capture: &capture,
                emit,
                line: 0,
                reports: 0,
                skipped: 0,
                stopped: false,
            };
            let mut de = serde_json::Deserializer::from_reader(reader);
            let result = serde::Deserializer::deserialize_map(&mut de, &mut seed).and_then(|()| {
                if seed.stopped {
                    Ok(())
                } else {
                    de.end()
                }
            });
            tracing::debug!(
                reports = seed.reports,
                skipped = seed.skipped,
                "geosubmit file read"
            );
            result.err().map(|e| format!("geosubmit file: {e}"))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture() -> Capture {
        Capture {
            device_id: "6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a01".into(),
            device_name: "stumbler".into(),
            now: Utc::now(),
        }
    }

    #[test]
    fn each_transmitter_becomes_a_detection_at_timestamp_minus_age() {
        let body = json!({"items": [{
            "timestamp": 1405602028568i64,
            "position": {"latitude": -22.7539192, "longitude": -43.4371081, "accuracy": 10.0, "age": 1000, "altitude": 100.0, "source": "gps", "extra": 1},
            "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab", "age": 5000, "channel": 11, "frequency": 2412, "signalStrength": -51, "ssid": "wifi"}],
            "cellTowers": [{"radioType": "lte", "mobileCountryCode": 208, "mobileNetworkCode": 1, "locationAreaCode": 2, "cellId": 12345, "age": 3, "signalStrength": -60}],
            "bluetoothBeacons": [{"macAddress": "ff:74:27:89:5a:77", "age": 2000, "name": "beacon", "signalStrength": -110}],
            "clientOwnField": true
        }, {"timestamp": 1, "wifiAccessPoints": []}, {"position": {"latitude": 1, "longitude": 2}}]});
        let skipped = Arc::new(AtomicU64::new(0));
        let body = Bytes::from(body.to_string());
        let items: Vec<Value> = rows(body, capture(), 10, Arc::clone(&skipped))
            .expect("converts")
            .map(|(_, item)| item.expect("item"))
            .collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["detected_at"], "2014-07-17T13:00:23.568Z");
        assert_eq!(items[1]["network_type"], "LTE");
        assert_eq!(items[2]["signal_type"], "ble");
        assert_eq!(items[0]["raw_data"]["position_source"], "gps");
        assert_eq!(skipped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn refuses_other_shapes_or_too_many_reports() {
        let skipped = Arc::new(AtomicU64::new(0));
        let run = |body: &str, max| {
            rows(
                Bytes::from(body.to_owned()),
                capture(),
                max,
                Arc::clone(&skipped),
            )
            .err()
        };
        assert!(matches!(
            run(r#"{"items": 1}"#, 10),
            Some(BodyError::Malformed(_))
        ));
        assert!(matches!(
            run(r#"{"other": []}"#, 10),
            Some(BodyError::Malformed(_))
        ));
        assert!(matches!(
            run(r#"{"items": [{}, {}, {}]}"#, 2),
            Some(BodyError::TooManyReports { count: 3, limit: 2 })
        ));
        assert!(run(r#"{"items": []}"#, 2).is_none());
    }
}
