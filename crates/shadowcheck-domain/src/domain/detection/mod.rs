//! One observation of one transmitter by one capture device, and the rules it must satisfy.
//! Items arrive as loose JSON objects; `Detection::parse` checks every field and reports every
//! problem (not just the first), each naming its field.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::geo::Position;
use super::mac::Mac;

mod common;
mod radio;
mod reader;

pub use reader::normalise_service_uuid;

use radio::{Bluetooth, Cellular, Wifi};
use reader::Reader;

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
/// Tag added to detections stored without a position (the capture had no GPS fix).
pub const TAG_NO_FIX: &str = "no-fix";
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
    /// `None` when the capture had no fix: stored, counted and scored by time, never on a map.
    pub position: Option<Position>,
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

    /// Reads one loose JSON item, reporting every problem (each naming its field): the common
    /// fields, then the radio's, then the rules its signal type sets. Privacy tags are added
    /// whatever the client sent.
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
        common::refuse_foreign_fields(&mut r);
        let signal_type = common::signal_type(&mut r);
        let detected_at = common::detected_at(&mut r, policy);
        let fix = common::position(&mut r);
        let capture_duration_ms = r.int_of("capture_duration_ms").map(|v| v as i32);
        let altitude_meters = r.float_of("altitude_meters");
        let accuracy_meters = r.float_of("accuracy_meters");
        let protocol_version = r.string_of("protocol_version");
        let wifi = Wifi::read(&mut r);
        let bluetooth = Bluetooth::read(&mut r);
        let cell = Cellular::read(&mut r);
        let device_id = common::device_id(&mut r);
        let device_name = r.string_of("device_name");
        let raw_data = common::raw_data(&mut r);
        let mut tags = common::tags(&mut r);
        if let Some(kind) = signal_type {
            common::type_rules(&mut r, kind, wifi.frequency_mhz);
        }
        // Privacy flags, whatever the client sent: randomised (locally administered) MACs, and
        // access points whose owners opted out of mapping with an `_nomap`/`_optout` SSID.
        let randomised = [wifi.bssid, bluetooth.address]
            .iter()
            .flatten()
            .any(|m| m.is_locally_administered());
        if randomised && !tags.iter().any(|t| t == TAG_RANDOMIZED_MAC) {
            tags.push(TAG_RANDOMIZED_MAC.to_owned());
        }
        let opted_out = wifi
            .ssid
            .as_deref()
            .is_some_and(|s| s.ends_with("_nomap") || s.contains("_optout"));
        if opted_out && !tags.iter().any(|t| t == TAG_NOMAP) {
            tags.push(TAG_NOMAP.to_owned());
        }
        let position = match fix {
            common::Fix::At(p) => Some(Some(p)),
            common::Fix::Missing => {
                if !tags.iter().any(|t| t == TAG_NO_FIX) {
                    tags.push(TAG_NO_FIX.to_owned());
                }
                Some(None)
            }
            common::Fix::Invalid => None,
        };
        match (r.errors.is_empty(), detected_at, position, signal_type) {
            (true, Some(detected_at), Some(position), Some(signal_type)) => Ok(Detection {
                detected_at,
                capture_duration_ms,
                position,
                altitude_meters,
                accuracy_meters,
                signal_type,
                protocol_version,
                ssid: wifi.ssid,
                bssid: wifi.bssid,
                channel: wifi.channel,
                frequency_mhz: wifi.frequency_mhz,
                signal_strength_dbm: wifi.signal_strength_dbm,
                bt_address: bluetooth.address,
                bt_name: bluetooth.name,
                bt_class: bluetooth.class,
                bt_rssi: bluetooth.rssi,
                ble_manufacturer_id: bluetooth.manufacturer_id,
                ble_service_uuids: bluetooth.service_uuids,
                ble_advertisement: bluetooth.advertisement,
                security: wifi.security,
                cell_id: cell.cell_id,
                lac: cell.lac,
                mcc: cell.mcc,
                mnc: cell.mnc,
                network_type: cell.network_type,
                device_id,
                device_name,
                // The detector's to write, after the detection is stored.
                is_suspicious: false,
                surveillance_score: None,
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
    fn times_outside_the_plausible_range_are_refused() {
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
