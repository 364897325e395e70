//! WiGLE CSV, as written by the WiGLE WiFi Wardriving app (1.4: 11 columns; 1.6: 14 columns,
//! adding Frequency, RCOIs and MfgrId), ESP32 wardriving firmwares and Kismet's exporter.
//! Columns are found by header name, so either version (and reordered writers) work.

use std::collections::HashMap;
use std::io::Read;

use serde_json::{json, Map, Value};

use super::{CaptureFile, FormatError, Row};

/// Bounds on the pre-header kept: real ones have about ten short `key=value` fields.
const PREHEADER_FIELDS: usize = 32;
const PREHEADER_KEY_CHARS: usize = 64;
const PREHEADER_VALUE_CHARS: usize = 256;

fn clip(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

/// The pre-header (`WigleWifi-1.6,appRelease=...,model=...,device=...`) as capture metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preheader {
    pub version: String,
    pub fields: Vec<(String, String)>,
}

impl Preheader {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("format".into(), Value::String(self.version.clone()));
        for (k, v) in &self.fields {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        Value::Object(m)
    }

    /// "brand model (device)" when the writer said so.
    pub fn device_name(&self) -> Option<String> {
        let parts: Vec<&str> = [self.get("brand"), self.get("model")]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        let mut name = parts.join(" ");
        if let Some(d) = self.get("device").filter(|d| !d.is_empty()) {
            name = if name.is_empty() {
                d.to_owned()
            } else {
                format!("{name} ({d})")
            };
        }
        (!name.is_empty()).then_some(name)
    }
}

pub struct WigleReader<R: Read> {
    csv: csv::Reader<R>,
    pub preheader: Preheader,
    columns: HashMap<String, usize>,
    device_id: String,
    device_name: Option<String>,
    record: csv::StringRecord,
    /// Set when the input could not be read to its end (I/O error, truncated compression).
    pub failure: Option<String>,
    /// Line number of the next record. Counted here: the csv crate's own line count is off
    /// after a CRLF pre-header.
    next_line: u64,
}

fn unquote_octal(s: &str) -> String {
    // Kismet escapes non-printable SSID bytes as \ooo.
    if !s.contains('\\') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = (digits[0] - b'0') as u32 * 64
                    + (digits[1] - b'0') as u32 * 8
                    + (digits[2] - b'0') as u32;
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl<R: Read> WigleReader<R> {
    /// Reads the pre-header (when present) and the column header. `device_id` overrides the id
    /// derived from the pre-header.
    pub fn new(reader: R, device_id: Option<String>) -> Result<Self, String> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::None)
            .from_reader(reader);
        let mut first = csv::StringRecord::new();
        if !csv
            .read_record(&mut first)
            .map_err(|e| format!("not a WiGLE CSV file: {e}"))?
        {
            return Err("empty file".into());
        }
        let mut preheader = Preheader::default();
        let header = if first.get(0).is_some_and(|f| f.starts_with("WigleWifi-")) {
            // Metadata about the phone, stored with the import and echoed in the report: kept to
            // what a real pre-header holds, however long the line a client sends.
            preheader.version = clip(first.get(0).unwrap_or_default(), PREHEADER_VALUE_CHARS);
            for field in first.iter().skip(1).take(PREHEADER_FIELDS) {
                if let Some((k, v)) = field.split_once('=') {
                    preheader.fields.push((
                        clip(k.trim(), PREHEADER_KEY_CHARS),
                        clip(v.trim(), PREHEADER_VALUE_CHARS),
                    ));
                }
            }
            let mut header = csv::StringRecord::new();
            if !csv
                .read_record(&mut header)
                .map_err(|e| format!("no column header: {e}"))?
            {
                return Err("no column header after the WigleWifi pre-header".into());
            }
            header
        } else {
            first
        };
        let columns: HashMap<String, usize> = header
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim().to_owned(), i))
            .collect();
        for required in [
            "MAC",
            "FirstSeen",
            "CurrentLatitude",
            "CurrentLongitude",
            "Type",
        ] {
            if !columns.contains_key(required) {
                return Err(format!("not a WiGLE CSV file: no `{required}` column"));
            }
        }
        let description = format!(
            "wigle:{}",
            preheader
                .fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let device_id = device_id.unwrap_or_else(|| super::device_uuid(&description).to_string());
        let device_name = preheader.device_name();
        let next_line = if preheader.version.is_empty() { 2 } else { 3 };
        Ok(Self {
            next_line,
            csv,
            preheader,
            columns,
            device_id,
            device_name,
            record: csv::StringRecord::new(),
            failure: None,
        })
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.columns
            .get(name)
            .and_then(|&i| self.record.get(i))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// The next data row, or `None` at the end. A broken CSV record (e.g. a truncated file)
    /// becomes that row's error; reading goes on.
    pub fn next_row(&mut self) -> Option<Row> {
        if self.failure.is_some() {
            return None;
        }
        match self.csv.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let line = self.next_line;
                // Quoted fields may span lines.
                self.next_line += 1 + self
                    .record
                    .iter()
                    .map(|f| f.matches('\n').count() as u64)
                    .sum::<u64>();
                if self.record.len() == 1 && self.record.get(0).is_some_and(|f| f.trim().is_empty())
                {
                    return self.next_row();
                }
                Some((line, self.convert()))
            }
            Err(e) => {
                let line = self.next_line;
                self.next_line += 1;
                if let csv::ErrorKind::Io(io) = e.kind() {
                    // A truncated gzip or a broken upload ends the file; say where.
                    self.failure = Some(format!("input unreadable after line {line}: {io}"));
                    return None;
                }
                Some((line, Err(format!("malformed CSV: {e}"))))
            }
        }
    }

    fn convert(&self) -> Result<Value, String> {
        if self.record.len() < self.columns.len().min(11) {
            return Err(format!(
                "{} columns; a WiGLE row has at least 11",
                self.record.len()
            ));
        }
        let kind = self.field("Type").unwrap_or("").to_ascii_uppercase();
        let mut item = Map::new();
        let first_seen = self.field("FirstSeen").unwrap_or("");
        // WiGLE writes UTC as "yyyy-MM-dd HH:mm:ss".
        let at = match first_seen.split_once(' ') {
            Some((d, t)) if !first_seen.contains('T') => format!("{d}T{t}Z"),
            _ => first_seen.to_owned(),
        };
        item.insert("detected_at".into(), Value::String(at));
        let number = |v: Option<&str>| -> Value {
            match v {
                Some(s) => s
                    .parse::<f64>()
                    .map(|f| json!(f))
                    .unwrap_or_else(|_| Value::String(s.to_owned())),
                None => Value::Null,
            }
        };
        item.insert("latitude".into(), number(self.field("CurrentLatitude")));
        item.insert("longitude".into(), number(self.field("CurrentLongitude")));
        if let Some(alt) = self.field("AltitudeMeters") {
            item.insert("altitude_meters".into(), number(Some(alt)));
        }
        // Kismet writes 0 when it has no accuracy: unknown, not perfect.
        if let Some(acc) = self
            .field("AccuracyMeters")
            .filter(|a| !a.parse::<f64>().is_ok_and(|v| v == 0.0))
        {
            item.insert("accuracy_meters".into(), number(Some(acc)));
        }
        item.insert("device_id".into(), Value::String(self.device_id.clone()));
        if let Some(name) = &self.device_name {
            item.insert(
                "device_name".into(),
                Value::String(name.chars().take(128).collect()),
            );
        }
        let mut raw = Map::new();
        raw.insert(
            "source".into(),
            Value::String(
                format!("wigle-csv {}", self.preheader.version)
                    .trim()
                    .to_owned(),
            ),
        );
        if let Some(auth) = self.field("AuthMode") {
            raw.insert("auth_mode".into(), Value::String(auth.to_owned()));
        }
        if let Some(rcois) = self.field("RCOIs") {
            raw.insert("rcois".into(), Value::String(rcois.to_owned()));
        }
        if let Some(m) = self.field("MfgrId") {
            let parsed = match m.strip_prefix("0x").or_else(|| m.strip_prefix("0X")) {
                Some(hex) => i64::from_str_radix(hex, 16).ok(),
                None => m.parse::<i64>().ok(),
            };
            raw.insert(
                "mfgr_id".into(),
                parsed.map_or_else(|| Value::String(m.to_owned()), Value::from),
            );
        }
        let rssi = self.field("RSSI").and_then(|r| r.parse::<i64>().ok());
        let mac = self.field("MAC").unwrap_or("").to_owned();
        match kind.as_str() {
            "WIFI" => {
                item.insert("signal_type".into(), "wifi".into());
                item.insert("bssid".into(), Value::String(mac));
                if let Some(ssid) = self.field("SSID") {
                    item.insert("ssid".into(), Value::String(unquote_octal(ssid)));
                }
                if let Some(ch) = self
                    .field("Channel")
                    .and_then(|c| c.parse::<i64>().ok())
                    .filter(|c| *c > 0)
                {
                    item.insert("channel".into(), ch.into());
                }
                if let Some(f) = self
                    .field("Frequency")
                    .and_then(|f| f.parse::<i64>().ok())
                    .filter(|f| *f > 0)
                {
                    item.insert("frequency_mhz".into(), f.into());
                }
                if let Some(r) = rssi {
                    item.insert("signal_strength_dbm".into(), r.into());
                }
                if let Some(auth) = self.field("AuthMode").filter(|a| a.len() <= 128) {
                    item.insert("security".into(), Value::String(auth.to_owned()));
                }
            }
            "BT" | "BLE" => {
                // WiGLE 1.6 MfgrId: the advertisement's company id (76 for Apple).
                if let Some(id) = raw
                    .get("mfgr_id")
                    .and_then(Value::as_i64)
                    .filter(|i| (0..=0xFFFF).contains(i))
                {
                    item.insert("ble_manufacturer_id".into(), id.into());
                }
                item.insert(
                    "signal_type".into(),
                    if kind == "BT" { "bluetooth" } else { "ble" }.into(),
                );
                item.insert("bt_address".into(), Value::String(mac));
                if let Some(name) = self.field("SSID") {
                    item.insert("bt_name".into(), Value::String(unquote_octal(name)));
                }
                // Kismet writes 0 for an unknown Bluetooth RSSI.
                if let Some(r) = rssi.filter(|r| *r != 0) {
                    item.insert("bt_rssi".into(), r.into());
                }
            }
            "GSM" | "CDMA" | "WCDMA" | "LTE" | "NR" => {
                item.insert("signal_type".into(), "cellular".into());
                item.insert("network_type".into(), Value::String(kind.clone()));
                let (mcc, mnc, lac, cid) = parse_cell_key(&mac, &kind)?;
                item.insert("mcc".into(), mcc.into());
                item.insert("mnc".into(), mnc.into());
                item.insert("lac".into(), lac.into());
                item.insert("cell_id".into(), cid.into());
                if let Some(r) = rssi {
                    item.insert("signal_strength_dbm".into(), r.into());
                }
                if let Some(op) = self.field("SSID") {
                    raw.insert("operator".into(), Value::String(op.to_owned()));
                }
                if let Some(ch) = self.field("Channel") {
                    // EARFCN/UARFCN/ARFCN, not a wifi channel.
                    raw.insert(
                        "arfcn".into(),
                        ch.parse::<i64>()
                            .map_or_else(|_| Value::String(ch.to_owned()), Value::from),
                    );
                }
            }
            other => {
                return Err(format!(
                    "unknown Type `{other}` (WIFI, BT, BLE, GSM, CDMA, WCDMA, LTE, NR)"
                ))
            }
        }
        item.insert("raw_data".into(), Value::Object(raw));
        Ok(Value::Object(item))
    }
}

/// Cell keys in the MAC column: `MCCMNC_LAC_CID` (WiGLE) or `MCC_MNC_LAC_CID`.
fn parse_cell_key(key: &str, kind: &str) -> Result<(i64, i64, i64, i64), String> {
    let parts: Vec<&str> = key.split('_').map(str::trim).collect();
    let num = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("cell key `{key}`: `{s}` is not a number"))
    };
    match parts.as_slice() {
        [mcc, mnc, lac, cid] => Ok((num(mcc)?, num(mnc)?, num(lac)?, num(cid)?)),
        [_, _, _] if kind == "CDMA" => Err(format!(
            "cell key `{key}`: CDMA SID_NID_BSID carries no MCC/MNC"
        )),
        [mccmnc, lac, cid]
            if (5..=6).contains(&mccmnc.len()) && mccmnc.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok((num(&mccmnc[..3])?, num(&mccmnc[3..])?, num(lac)?, num(cid)?))
        }
        _ => Err(format!(
            "cell key `{key}` is not MCCMNC_LAC_CID or MCC_MNC_LAC_CID"
        )),
    }
}

/// A WiGLE CSV stream (already inflated) as a capture file: the header is read now, rows later.
pub fn open_file(
    reader: Box<dyn Read + Send>,
    device_id: Option<String>,
) -> Result<CaptureFile, FormatError> {
    let mut wigle = WigleReader::new(reader, device_id)?;
    let source = wigle.preheader.to_json();
    let format = match source.get("format").and_then(Value::as_str) {
        Some(v) if !v.is_empty() => format!("wigle-csv ({v})"),
        _ => "wigle-csv".to_owned(),
    };
    Ok(CaptureFile::new(format, source, move |emit| {
        while let Some(row) = wigle.next_row() {
            if !emit(row) {
                break;
            }
        }
        wigle.failure.take()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<u64> {
        let mut r = WigleReader::new(text.as_bytes(), None).expect("header");
        let mut out = Vec::new();
        while let Some((line, _)) = r.next_row() {
            out.push(line);
        }
        out
    }

    #[test]
    fn line_numbers_count_both_header_lines() {
        let body = "MAC,SSID,AuthMode,FirstSeen,Channel,RSSI,CurrentLatitude,CurrentLongitude,AltitudeMeters,AccuracyMeters,Type";
        let row = "a4:00:00:00:00:01,x,[ESS],2026-01-01 00:00:00,1,-50,52.5,13.4,0,5,WIFI";
        for eol in ["\n", "\r\n"] {
            let text = format!("WigleWifi-1.4,appRelease=1{eol}{body}{eol}{row}{eol}{row}{eol}");
            assert_eq!(lines(&text), vec![3, 4], "{eol:?}");
            let text = format!("{body}{eol}{row}{eol}");
            assert_eq!(lines(&text), vec![2], "{eol:?}");
        }
    }

    #[test]
    fn capture_columns_reach_the_detector_fields() {
        let text = "WigleWifi-1.6,appRelease=2.70\n\
            MAC,SSID,AuthMode,FirstSeen,Channel,Frequency,RSSI,CurrentLatitude,CurrentLongitude,AltitudeMeters,AccuracyMeters,RCOIs,MfgrId,Type\n\
            c4:11:22:33:44:55,,Misc [LE],2026-01-01 00:00:00,0,0,-60,52.5,13.4,0,5,,76,BLE\n\
            a4:00:00:00:00:01,cafe,[WPA2-PSK-CCMP][ESS],2026-01-01 00:00:01,6,2437,-50,52.5,13.4,0,5,,,WIFI\n";
        let mut r = WigleReader::new(text.as_bytes(), None).expect("header");
        let (_, ble) = r.next_row().expect("ble row");
        let ble = ble.expect("converts");
        assert_eq!(ble["ble_manufacturer_id"], 76, "{ble}");
        let (_, wifi) = r.next_row().expect("wifi row");
        let wifi = wifi.expect("converts");
        assert_eq!(wifi["security"], "[WPA2-PSK-CCMP][ESS]", "{wifi}");
        assert!(wifi.get("ble_manufacturer_id").is_none());
    }

    #[test]
    fn cell_keys() {
        assert_eq!(
            parse_cell_key("42501_7211_3084803", "GSM"),
            Ok((425, 1, 7211, 3084803))
        );
        assert_eq!(
            parse_cell_key("262_02_4712_1234567", "WCDMA"),
            Ok((262, 2, 4712, 1234567))
        );
        assert!(parse_cell_key("4_112_1001", "CDMA").is_err());
        assert!(parse_cell_key("garbage", "LTE").is_err());
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unquote_octal("Bob\\342\\200\\231s"), "Bob\u{2019}s");
        assert_eq!(unquote_octal("plain\\x"), "plain\\x");
    }
}
