//! One observation of one transmitter by one capture device, and the rules it must satisfy.
//! Items arrive as loose JSON objects; `Detection::parse` checks every field and reports every
//! problem (not just the first), each naming its field.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::fields::{self, Kind, FIELDS, NETWORK_TYPES};
use super::geo::Position;
use super::mac::Mac;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalType {
    Wifi,
    Bluetooth,
    Ble,
    Cellular,
}

impl SignalType {
    pub const ALL: [SignalType; 4] = [Self::Wifi, Self::Bluetooth, Self::Ble, Self::Cellular];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wifi => "wifi",
            Self::Bluetooth => "bluetooth",
            Self::Ble => "ble",
            Self::Cellular => "cellular",
        }
    }
}

impl fmt::Display for SignalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignalType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "wifi" => Ok(Self::Wifi),
            "bluetooth" => Ok(Self::Bluetooth),
            "ble" => Ok(Self::Ble),
            "cellular" => Ok(Self::Cellular),
            _ => Err("must be one of wifi, bluetooth, ble, cellular".to_owned()),
        }
    }
}

/// Tag added to detections whose transmitter address is locally administered (randomised).
pub const TAG_RANDOMIZED_MAC: &str = "randomized-mac";
/// Tag added to access points whose SSID opts out of mapping (`_nomap`, `_optout`).
pub const TAG_NOMAP: &str = "nomap";

/// What the validator needs to know besides the item: the server's clock and its tolerance.
#[derive(Clone, Copy, Debug)]
pub struct ValidationPolicy {
    pub now: DateTime<Utc>,
    pub max_future_skew: Duration,
}

impl ValidationPolicy {
    /// Nothing before 802.11 and Bluetooth existed can be a real detection.
    pub fn earliest() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(1990, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// A problem with one field of one item in a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A validated detection: every field in range, the identifier its signal type needs present.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub detected_at: DateTime<Utc>,
    pub capture_duration_ms: Option<i32>,
    pub position: Position,
    pub altitude_meters: Option<f64>,
    pub accuracy_meters: Option<f64>,
    pub signal_type: SignalType,
    pub protocol_version: Option<String>,
    pub ssid: Option<String>,
    pub bssid: Option<Mac>,
    pub channel: Option<i32>,
    pub frequency_mhz: Option<i32>,
    pub signal_strength_dbm: Option<i32>,
    pub bt_address: Option<Mac>,
    pub bt_name: Option<String>,
    pub bt_class: Option<i32>,
    pub bt_rssi: Option<i32>,
    pub ble_manufacturer_id: Option<i32>,
    /// Normalised by [`normalise_service_uuid`].
    pub ble_service_uuids: Vec<String>,
    /// Lower-case hex.
    pub ble_advertisement: Option<String>,
    pub security: Option<String>,
    pub cell_id: Option<i64>,
    pub lac: Option<i32>,
    pub mcc: Option<i16>,
    pub mnc: Option<i16>,
    pub network_type: Option<String>,
    pub device_id: Option<Uuid>,
    pub device_name: Option<String>,
    pub is_suspicious: bool,
    pub surveillance_score: Option<f32>,
    /// Kept as its JSON text: a parsed object costs many times more memory per batch.
    pub raw_data: Option<RawObject>,
    pub tags: Vec<String>,
}

/// A JSON object kept as its text: parsed values cost many times more memory, and the
/// database takes text anyway.
#[derive(Clone, Debug)]
pub struct RawObject(Box<serde_json::value::RawValue>);

impl RawObject {
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawObject {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl serde::Serialize for RawObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Collects field errors while reading one item.
struct Reader<'a> {
    item: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(FieldError::new(field, reason));
    }

    /// The field's value, treating JSON null as absent.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.item.get(field).filter(|v| !v.is_null())
    }

    fn string(&mut self, field: &str, max_bytes: usize) -> Option<String> {
        match self.get(field)? {
            Value::String(s) if s.len() > max_bytes => {
                self.fail(field, format!("longer than {max_bytes} bytes"));
                None
            }
            Value::String(s) if s.contains('\0') => {
                self.fail(field, "must not contain NUL characters");
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    fn float(&mut self, field: &str, min: f64, max: f64) -> Option<f64> {
        let value = self.get(field)?;
        match value.as_f64() {
            Some(v) if v.is_finite() && (min..=max).contains(&v) => Some(v),
            Some(_) => {
                self.fail(field, format!("must be between {min} and {max}"));
                None
            }
            None => {
                self.fail(field, "must be a number");
                None
            }
        }
    }

    fn int(&mut self, field: &str, min: i64, max: i64) -> Option<i64> {
        let value = self.get(field)?;
        // Accept 6.0 from clients that only have doubles, but not 6.5.
        let parsed = value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        });
        match parsed {
            Some(v) if (min..=max).contains(&v) => Some(v),
            Some(_) => {
                self.fail(field, format!("must be an integer between {min} and {max}"));
                None
            }
            None => {
                self.fail(field, "must be an integer");
                None
            }
        }
    }

    /// The bounds of `field` as the field table states them.
    fn int_of(&mut self, field: &str) -> Option<i64> {
        match fields::by_name(field).map(|f| f.kind) {
            Some(Kind::Integer { min, max }) => self.int(field, min, max),
            _ => None,
        }
    }

    fn float_of(&mut self, field: &str) -> Option<f64> {
        match fields::by_name(field).map(|f| f.kind) {
            Some(
                Kind::Number { min, max } | Kind::Real { min, max } | Kind::Coordinate { min, max },
            ) => self.float(field, min, max),
            _ => None,
        }
    }

    fn string_of(&mut self, field: &str) -> Option<String> {
        match fields::by_name(field).map(|f| f.kind) {
            Some(Kind::Text { max_bytes }) => self.string(field, max_bytes),
            _ => None,
        }
    }

    /// Hex digits (either case, optional `0x`), stored lower-case; the bound is the field's.
    fn hex(&mut self, field: &str) -> Option<String> {
        let Some(Kind::Hex { max_bytes }) = fields::by_name(field).map(|f| f.kind) else {
            return None;
        };
        let s = self.string(field, 2 * max_bytes + 2)?;
        let digits = s.strip_prefix("0x").unwrap_or(&s);
        if digits.len() % 2 != 0 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.fail(field, "must be an even number of hex digits");
            return None;
        }
        if digits.len() > 2 * max_bytes {
            self.fail(field, format!("longer than {max_bytes} bytes"));
            return None;
        }
        Some(digits.to_ascii_lowercase())
    }

    fn service_uuids(&mut self, field: &str) -> Vec<String> {
        let Some(Kind::ServiceUuids { max_items }) = fields::by_name(field).map(|f| f.kind) else {
            return Vec::new();
        };
        let Some(value) = self.get(field) else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.fail(field, "must be an array of UUID strings");
            return Vec::new();
        };
        if items.len() > max_items {
            self.fail(field, format!("at most {max_items} UUIDs"));
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            match item.as_str().and_then(normalise_service_uuid) {
                Some(u) => {
                    if !out.contains(&u) {
                        out.push(u);
                    }
                }
                None => {
                    self.fail(
                        field,
                        "each UUID must be 16-bit (`FEED`), 32-bit or 128-bit (`0000feed-0000-1000-8000-00805f9b34fb`)",
                    );
                    return Vec::new();
                }
            }
        }
        out
    }

    fn mac(&mut self, field: &str) -> Option<Mac> {
        let s = self.string(field, 64)?;
        match s.parse::<Mac>() {
            Ok(mac) => Some(mac),
            Err(e) => {
                self.fail(field, e.to_string());
                None
            }
        }
    }
}

/// The Bluetooth base UUID's tail: a 128-bit UUID ending in it is a 16- or 32-bit alias.
const BLUETOOTH_BASE_TAIL: &str = "-0000-1000-8000-00805f9b34fb";

/// One spelling per service UUID: lower-case; a 16-bit alias as four digits (`feed`), a 32-bit
/// one as eight, any other 128-bit UUID hyphenated. `None` when it is not a UUID.
pub fn normalise_service_uuid(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_prefix("0x").unwrap_or(&s);
    let hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    match s.len() {
        4 | 8 if hex(s) => Some(s.to_owned()),
        36 => {
            let parsed = Uuid::parse_str(s).ok()?.hyphenated().to_string();
            match parsed.strip_suffix(BLUETOOTH_BASE_TAIL) {
                Some(short) if short.starts_with("0000") => Some(short[4..].to_owned()),
                Some(short) => Some(short.to_owned()),
                None => Some(parsed),
            }
        }
        _ => None,
    }
}

/// A leap second (`23:59:60`) as the last microsecond before it (`23:59:59.999999`; PostgreSQL
/// keeps microseconds). PostgreSQL has no leap seconds and would store it as the next second,
/// which may be the next month (and partition) while the batch's months were computed from the
/// leap-second value: a 500 and a lost batch.
fn without_leap_second(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    if t.nanosecond() >= 1_000_000_000 {
        t.with_nanosecond(999_999_000).unwrap_or(t)
    } else {
        t
    }
}

/// What makes two detections the same observation: one device seeing one transmitter at one
/// instant (the table's unique natural key).
pub type NaturalKey = (
    DateTime<Utc>,
    SignalType,
    Option<Uuid>,
    Option<Mac>,
    Option<Mac>,
    Option<i16>,
    Option<i16>,
    Option<i32>,
    Option<i64>,
);

impl Detection {
    pub fn natural_key(&self) -> NaturalKey {
        (
            self.detected_at,
            self.signal_type,
            self.device_id,
            self.bssid,
            self.bt_address,
            self.mcc,
            self.mnc,
            self.lac,
            self.cell_id,
        )
    }

    pub fn parse(value: &Value, policy: &ValidationPolicy) -> Result<Detection, Vec<FieldError>> {
        let Value::Object(item) = value else {
            return Err(vec![FieldError::new(
                "",
                "each detection must be a JSON object",
            )]);
        };
        let mut r = Reader {
            item,
            errors: Vec::new(),
        };

        // Anything not in the field table is reported, so a typo such as `lattitude` is not
        // silently dropped.
        for key in item.keys() {
            if fields::SERVER_FIELDS.contains(&key.as_str()) {
                r.fail(key, "assigned by the server; do not send it");
            } else if fields::by_name(key).is_none() {
                r.fail(key, "unknown field");
            }
        }

        let signal_type = match r.get("signal_type") {
            None => {
                r.fail("signal_type", "required");
                None
            }
            Some(Value::String(s)) => match s.parse::<SignalType>() {
                Ok(t) => Some(t),
                Err(e) => {
                    r.fail("signal_type", e);
                    None
                }
            },
            Some(_) => {
                r.fail("signal_type", "must be a string");
                None
            }
        };

        let detected_at = match r.get("detected_at") {
            None => {
                r.fail("detected_at", "required");
                None
            }
            Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => {
                    let t = without_leap_second(t.with_timezone(&Utc));
                    if t > policy.now + policy.max_future_skew {
                        r.fail(
                            "detected_at",
                            format!(
                                "more than {} s in the future",
                                policy.max_future_skew.num_seconds()
                            ),
                        );
                        None
                    } else if t < ValidationPolicy::earliest() {
                        r.fail("detected_at", "before 1990-01-01");
                        None
                    } else {
                        Some(t)
                    }
                }
                Err(e) => {
                    r.fail("detected_at", format!("not an RFC 3339 timestamp ({e})"));
                    None
                }
            },
            Some(_) => {
                r.fail("detected_at", "must be an RFC 3339 timestamp string");
                None
            }
        };

        let lat = r.float_of("latitude");
        let lon = r.float_of("longitude");
        if r.get("latitude").is_none() {
            r.fail("latitude", "required");
        }
        if r.get("longitude").is_none() {
            r.fail("longitude", "required");
        }
        let position = match (lat, lon) {
            (Some(lat), Some(lon)) => match Position::new(lat, lon) {
                Ok(p) if p.is_null_island() => {
                    r.fail(
                        "latitude",
                        "0,0 (null island) is a missing GPS fix, not a position",
                    );
                    None
                }
                p => p.ok(),
            },
            _ => None,
        };

        let capture_duration_ms = r.int_of("capture_duration_ms").map(|v| v as i32);
        let altitude_meters = r.float_of("altitude_meters");
        let accuracy_meters = r.float_of("accuracy_meters");
        let protocol_version = r.string_of("protocol_version");

        // 802.11 limits an SSID to 32 octets.
        let ssid = r.string_of("ssid");
        let bssid = r.mac("bssid");
        // 2.4, 5 and 6 GHz channel numbers run up to 233.
        let channel = r.int_of("channel").map(|v| v as i32);
        let frequency_mhz = r.int_of("frequency_mhz").map(|v| v as i32);
        let signal_strength_dbm = r.int_of("signal_strength_dbm").map(|v| v as i32);

        let bt_address = r.mac("bt_address");
        // The Bluetooth remote name is at most 248 octets.
        let bt_name = r.string_of("bt_name");
        // Class of Device is a 24-bit field.
        let bt_class = r.int_of("bt_class").map(|v| v as i32);
        let bt_rssi = r.int_of("bt_rssi").map(|v| v as i32);
        let ble_manufacturer_id = r.int_of("ble_manufacturer_id").map(|v| v as i32);
        let ble_service_uuids = r.service_uuids("ble_service_uuids");
        let ble_advertisement = r.hex("ble_advertisement");
        let security = r.string_of("security");

        let network_type = r.string("network_type", 16).and_then(|s| {
            let upper = s.trim().to_ascii_uppercase();
            if NETWORK_TYPES.contains(&upper.as_str()) {
                Some(upper)
            } else {
                r.fail(
                    "network_type",
                    format!("must be one of {}", NETWORK_TYPES.join(", ")),
                );
                None
            }
        });
        let is_nr = network_type.as_deref() == Some("NR");
        // NR cell identities are 36 bits and NR tracking areas 24 bits; older radios are smaller.
        let cell_id = r.int(
            "cell_id",
            1,
            if is_nr { (1 << 36) - 1 } else { (1 << 28) - 1 },
        );
        let lac = r
            .int("lac", 1, if is_nr { (1 << 24) - 1 } else { 65_533 })
            .map(|v| v as i32);
        let mcc = r.int_of("mcc").map(|v| v as i16);
        let mnc = r.int_of("mnc").map(|v| v as i16);

        let device_id = match r.string("device_id", 64) {
            Some(s) => match Uuid::parse_str(&s) {
                Ok(u) => Some(u),
                Err(_) => {
                    r.fail("device_id", "must be a UUID");
                    None
                }
            },
            None => None,
        };
        let device_name = r.string_of("device_name");
        // The detector's verdict is never a client's to send.
        for owned in fields::SERVER_OWNED {
            if r.get(owned).is_some() {
                r.fail(
                    owned,
                    "is set by the following detector; clients cannot send it",
                );
            }
        }
        let (is_suspicious, surveillance_score) = (false, None);
        let raw_data = match r.get("raw_data") {
            None => None,
            Some(v @ Value::Object(_)) => {
                let text = v.to_string();
                if text.len() > 64 * 1024 {
                    r.fail("raw_data", "larger than 64 KiB");
                    None
                } else if text.contains("\\u0000") {
                    r.fail("raw_data", "must not contain NUL characters");
                    None
                } else {
                    serde_json::value::RawValue::from_string(text)
                        .ok()
                        .map(RawObject)
                }
            }
            Some(_) => {
                r.fail("raw_data", "must be a JSON object");
                None
            }
        };
        let tags = match r.get("tags") {
            None => Vec::new(),
            Some(Value::Array(items)) if items.len() > 32 => {
                r.fail("tags", "at most 32 tags");
                Vec::new()
            }
            Some(Value::Array(items)) => {
                let mut tags = Vec::with_capacity(items.len());
                for tag in items {
                    match tag.as_str() {
                        Some(t) if !t.is_empty() && t.len() <= 64 && !t.contains('\0') => {
                            tags.push(t.to_owned())
                        }
                        _ => {
                            r.fail(
                                "tags",
                                "each tag must be a non-empty string of at most 64 bytes",
                            );
                            break;
                        }
                    }
                }
                tags
            }
            Some(_) => {
                r.fail("tags", "must be an array of strings");
                Vec::new()
            }
        };

        if let Some(kind) = signal_type {
            for field in FIELDS {
                if !field.applies_to(kind) && r.get(field.name).is_some() {
                    r.fail(field.name, format!("does not apply to signal_type {kind}"));
                }
            }
            // Fields every detection needs were reported above; these depend on the type.
            for field in FIELDS.iter().filter(|f| !f.only_for.is_empty()) {
                if field.required_for(kind) && r.get(field.name).is_none() {
                    r.fail(field.name, format!("required for signal_type {kind}"));
                }
            }
            if kind == SignalType::Wifi {
                if let Some(f) = frequency_mhz {
                    if !(2_400..=7_125).contains(&f) {
                        r.fail(
                            "frequency_mhz",
                            "wifi frequency must be between 2400 and 7125 MHz",
                        );
                    }
                }
            }
        }

        // Privacy flags, whatever the client sent: randomised (locally administered) MACs, and
        // access points whose owners opted out of mapping with an `_nomap`/`_optout` SSID.
        let mut tags = tags;
        let randomised = [bssid, bt_address]
            .iter()
            .flatten()
            .any(|m| m.is_locally_administered());
        if randomised && !tags.iter().any(|t| t == TAG_RANDOMIZED_MAC) {
            tags.push(TAG_RANDOMIZED_MAC.to_owned());
        }
        let opted_out = ssid
            .as_deref()
            .is_some_and(|s| s.ends_with("_nomap") || s.contains("_optout"));
        if opted_out && !tags.iter().any(|t| t == TAG_NOMAP) {
            tags.push(TAG_NOMAP.to_owned());
        }
        match (r.errors.is_empty(), detected_at, position, signal_type) {
            (true, Some(detected_at), Some(position), Some(signal_type)) => Ok(Detection {
                detected_at,
                capture_duration_ms,
                position,
                altitude_meters,
                accuracy_meters,
                signal_type,
                protocol_version,
                ssid,
                bssid,
                channel,
                frequency_mhz,
                signal_strength_dbm,
                bt_address,
                bt_name,
                bt_class,
                bt_rssi,
                ble_manufacturer_id,
                ble_service_uuids,
                ble_advertisement,
                security,
                cell_id,
                lac,
                mcc,
                mnc,
                network_type,
                device_id,
                device_name,
                is_suspicious,
                surveillance_score,
                raw_data,
                tags,
            }),
            _ => {
                let mut errors = r.errors;
                if errors.is_empty() {
                    errors.push(FieldError::new("", "invalid detection"));
                }
                Err(errors)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> ValidationPolicy {
        ValidationPolicy {
            now: Utc
                .with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
                .single()
                .expect("valid"),
            max_future_skew: Duration::seconds(300),
        }
    }

    fn fields(v: Value) -> Vec<String> {
        match Detection::parse(&v, &policy()) {
            Ok(_) => vec![],
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn accepts_each_signal_type() {
        let base =
            json!({"detected_at": "2026-11-23T11:00:00Z", "latitude": 52.5, "longitude": 13.4});
        let cases = [
            json!({"signal_type": "wifi", "bssid": "AA-BB-CC-DD-EE-01", "ssid": "x", "channel": 6, "frequency_mhz": 2437, "signal_strength_dbm": -60}),
            json!({"signal_type": "bluetooth", "bt_address": "aabbccddee02", "bt_name": "hp", "bt_class": 2360344, "bt_rssi": -70}),
            json!({"signal_type": "BLE", "bt_address": "aa:bb:cc:dd:ee:03", "bt_rssi": -80}),
            json!({"signal_type": "cellular", "mcc": 262, "mnc": 1, "lac": 1234, "cell_id": 56789, "network_type": "lte", "signal_strength_dbm": -95}),
        ];
        for case in cases {
            let mut item = base.clone();
            item.as_object_mut()
                .expect("object")
                .extend(case.as_object().expect("object").clone());
            let d = Detection::parse(&item, &policy()).expect("valid");
            if let Some(mac) = d.bssid.or(d.bt_address) {
                assert!(mac.to_string().starts_with("aa:bb:cc:dd:ee:0"));
            }
        }
    }

    #[test]
    fn reports_every_bad_field() {
        let got = fields(json!({
            "detected_at": "2026-11-23 11:00", "latitude": 91, "longitude": "13",
            "signal_type": "wifi", "bssid": "zz", "channel": 0, "bt_name": "x", "lattitude": 1
        }));
        for f in [
            "detected_at",
            "latitude",
            "longitude",
            "bssid",
            "channel",
            "bt_name",
            "lattitude",
        ] {
            assert!(got.contains(&f.to_string()), "{f} missing from {got:?}");
        }
    }

    #[test]
    fn type_specific_requirements() {
        let got = fields(
            json!({"detected_at": "2026-11-23T11:00:00Z", "latitude": 1, "longitude": 1, "signal_type": "cellular", "mcc": 262}),
        );
        assert_eq!(got, vec!["mnc", "cell_id"]);
        let got = fields(
            json!({"detected_at": "2026-11-23T11:00:00Z", "latitude": 1, "longitude": 1, "signal_type": "wifi", "bssid": "aa:bb:cc:dd:ee:ff", "frequency_mhz": 900}),
        );
        assert_eq!(got, vec!["frequency_mhz"]);
    }

    #[test]
    fn future_skew_and_ancient_times() {
        let item = |t: &str| json!({"detected_at": t, "latitude": 1, "longitude": 1, "signal_type": "ble", "bt_address": "aa:bb:cc:dd:ee:ff"});
        assert!(fields(item("2026-11-23T12:04:59Z")).is_empty());
        assert_eq!(fields(item("2026-11-23T12:05:01Z")), vec!["detected_at"]);
        assert_eq!(fields(item("1989-12-31T23:59:59Z")), vec!["detected_at"]);
        assert!(fields(item("2026-11-23T13:00:00+01:00")).is_empty());
    }

    #[test]
    fn leap_second_is_the_last_instant_of_its_minute() {
        let item = json!({"detected_at": "2016-12-31T23:59:60.5Z", "latitude": 1, "longitude": 1,
                          "signal_type": "ble", "bt_address": "aa:bb:cc:dd:ee:ff"});
        let d = Detection::parse(&item, &policy()).expect("valid");
        assert_eq!(
            d.detected_at
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "2016-12-31T23:59:59.999999000Z"
        );
    }

    #[test]
    fn non_object_item() {
        assert_eq!(fields(json!([1, 2])), vec![""]);
    }
}
