//! The one list of a detection's fields. Everything else that names them is derived from it: the
//! fields a client may send, which apply to which signal type and which are required, the bounds
//! the validator enforces, the columns of the batched insert and of every read, and the OpenAPI
//! schema. A new column is one entry here, one field of `Detection`, and a migration.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Detection, SignalType};

/// What a field holds on the wire (and so how it is stored and read back).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// RFC 3339 on the wire, `timestamptz` in the table.
    Timestamp,
    /// WGS84 degrees; latitude and longitude together make the `location` point.
    Coordinate {
        min: f64,
        max: f64,
    },
    /// A double-precision number.
    Number {
        min: f64,
        max: f64,
    },
    /// A single-precision number (`real`).
    Real {
        min: f64,
        max: f64,
    },
    /// An integer; stored in the column's own width.
    Integer {
        min: i64,
        max: i64,
    },
    /// A string of at most this many bytes.
    Text {
        max_bytes: usize,
    },
    /// One of a fixed set of upper-case words, given case-insensitively.
    Word {
        values: &'static [&'static str],
    },
    /// A MAC address, any common notation; `macaddr` in the table.
    Mac,
    /// wifi, bluetooth, ble or cellular.
    SignalType,
    Uuid,
    Boolean,
    /// A JSON object (`jsonb`).
    Object {
        max_bytes: usize,
    },
    /// Up to `max_items` non-empty strings of at most 64 bytes (`text[]`).
    Tags {
        max_items: usize,
    },
    /// Bytes as hexadecimal digits (`text`, lower-case), at most `max_bytes` bytes.
    Hex {
        max_bytes: usize,
    },
    /// Up to `max_items` Bluetooth UUIDs (`text[]`): 16-bit as four hex digits, 128-bit
    /// hyphenated; lower-case, with Bluetooth base UUIDs shortened to 16 bits.
    ServiceUuids {
        max_items: usize,
    },
}

/// A field's value taken from a validated detection, for storing.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Timestamp(DateTime<Utc>),
    Number(Option<f64>),
    Real(Option<f32>),
    Integer(Option<i64>),
    Text(Option<String>),
    Uuid(Option<Uuid>),
    Boolean(bool),
    Object(Option<super::detection::RawObject>),
    Tags(Vec<String>),
}

pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
    /// The signal types it applies to; empty for all.
    pub only_for: &'static [SignalType],
    /// The signal types that must carry it; `ALL` for every detection.
    pub required_for: &'static [SignalType],
    pub get: fn(&Detection) -> Cell,
}

const ALL: &[SignalType] = &SignalType::ALL;
const WIFI: &[SignalType] = &[SignalType::Wifi];
const BLUETOOTH: &[SignalType] = &[SignalType::Bluetooth, SignalType::Ble];
const CELLULAR: &[SignalType] = &[SignalType::Cellular];
const NONE: &[SignalType] = &[];

/// Fields the service owns: the following detector writes them back onto stored detections.
/// They are read like any other field, but a client that sends one is refused, naming it.
pub const SERVER_OWNED: &[&str] = &["is_suspicious", "surveillance_score"];

/// Cellular radio generations accepted in `network_type` (stored upper-case).
pub const NETWORK_TYPES: &[&str] = &["GSM", "CDMA", "WCDMA", "UMTS", "TDSCDMA", "LTE", "NR"];

const fn field(
    name: &'static str,
    kind: Kind,
    doc: &'static str,
    get: fn(&Detection) -> Cell,
) -> Field {
    Field {
        name,
        kind,
        doc,
        only_for: NONE,
        required_for: NONE,
        get,
    }
}

const fn only(mut f: Field, types: &'static [SignalType]) -> Field {
    f.only_for = types;
    f
}

const fn required(mut f: Field, types: &'static [SignalType]) -> Field {
    f.required_for = types;
    f
}

fn int<T: Into<i64> + Copy>(v: Option<T>) -> Cell {
    Cell::Integer(v.map(Into::into))
}

pub static FIELDS: &[Field] = &[
    required(
        field(
            "detected_at",
            Kind::Timestamp,
            "When: RFC 3339; not before 1990, not more than `ingest.max_future_skew_secs` ahead.",
            |d| Cell::Timestamp(d.detected_at),
        ),
        ALL,
    ),
    field(
        "latitude",
        Kind::Coordinate {
            min: -90.0,
            max: 90.0,
        },
        "WGS84 degrees, with longitude. Without both (or as 0,0, where a GPS without a fix \
         reports) the detection is stored without a position, tagged `no-fix`: it counts \
         everywhere but on maps and in spatial queries.",
        |d| Cell::Number(d.position.map(|p| p.lat())),
    ),
    field(
        "longitude",
        Kind::Coordinate {
            min: -180.0,
            max: 180.0,
        },
        "WGS84 degrees, with latitude.",
        |d| Cell::Number(d.position.map(|p| p.lon())),
    ),
    required(
        field(
            "signal_type",
            Kind::SignalType,
            "Which radio: wifi, bluetooth, ble or cellular (case-insensitive); decides which fields apply.",
            |d| Cell::Text(Some(d.signal_type.as_str().to_owned())),
        ),
        ALL,
    ),
    field(
        "capture_duration_ms",
        Kind::Integer {
            min: 0,
            max: 86_400_000,
        },
        "How long the capture of this observation took.",
        |d| int(d.capture_duration_ms),
    ),
    field(
        "altitude_meters",
        Kind::Number {
            min: -1_000.0,
            max: 50_000.0,
        },
        "Altitude of the capture device.",
        |d| Cell::Number(d.altitude_meters),
    ),
    field(
        "accuracy_meters",
        Kind::Number {
            min: 0.0,
            max: 100_000.0,
        },
        "Horizontal accuracy of the position.",
        |d| Cell::Number(d.accuracy_meters),
    ),
    field(
        "protocol_version",
        Kind::Text { max_bytes: 32 },
        "e.g. 802.11ax, BT 5.3, LTE Rel-15.",
        |d| Cell::Text(d.protocol_version.clone()),
    ),
    only(
        field(
            "ssid",
            Kind::Text { max_bytes: 32 },
            "Network name (802.11 allows 32 octets).",
            |d| Cell::Text(d.ssid.clone()),
        ),
        WIFI,
    ),
    required(
        only(
            field(
                "bssid",
                Kind::Mac,
                "The access point's MAC address.",
                |d| Cell::Text(d.bssid.map(|m| m.to_string())),
            ),
            WIFI,
        ),
        WIFI,
    ),
    only(
        field(
            "security",
            Kind::Text { max_bytes: 128 },
            "Advertised security as capture apps write it, e.g. `[WPA2-PSK-CCMP][ESS]` (WiGLE AuthMode, Android capabilities); `[ESS]` alone is an open network.",
            |d| Cell::Text(d.security.clone()),
        ),
        WIFI,
    ),
    only(
        field(
            "channel",
            Kind::Integer { min: 1, max: 233 },
            "2.4, 5 and 6 GHz channel numbers.",
            |d| int(d.channel),
        ),
        WIFI,
    ),
    field(
        "frequency_mhz",
        Kind::Integer { min: 1, max: 100_000 },
        "Centre frequency; for wifi 2400 to 7125 MHz.",
        |d| int(d.frequency_mhz),
    ),
    field(
        "signal_strength_dbm",
        Kind::Integer { min: -150, max: 0 },
        "Received signal strength (wifi, cellular).",
        |d| int(d.signal_strength_dbm),
    ),
    required(
        only(
            field(
                "bt_address",
                Kind::Mac,
                "The Bluetooth device address.",
                |d| Cell::Text(d.bt_address.map(|m| m.to_string())),
            ),
            BLUETOOTH,
        ),
        BLUETOOTH,
    ),
    only(
        field(
            "bt_name",
            Kind::Text { max_bytes: 248 },
            "Remote name (at most 248 octets).",
            |d| Cell::Text(d.bt_name.clone()),
        ),
        BLUETOOTH,
    ),
    only(
        field(
            "bt_class",
            Kind::Integer {
                min: 0,
                max: 0xFF_FFFF,
            },
            "Class of Device (24 bits).",
            |d| int(d.bt_class),
        ),
        BLUETOOTH,
    ),
    only(
        field(
            "bt_rssi",
            Kind::Integer { min: -150, max: 20 },
            "Received signal strength.",
            |d| int(d.bt_rssi),
        ),
        BLUETOOTH,
    ),
    only(
        field(
            "ble_manufacturer_id",
            Kind::Integer { min: 0, max: 0xFFFF },
            "Bluetooth SIG company identifier of the advertisement's manufacturer data (76 is Apple); WiGLE 1.6 `MfgrId`.",
            |d| int(d.ble_manufacturer_id),
        ),
        BLUETOOTH,
    ),
    only(
        field(
            "ble_service_uuids",
            Kind::ServiceUuids { max_items: 32 },
            "Advertised service UUIDs, 16-bit (`FEED`) or 128-bit; stored lower-case, Bluetooth base UUIDs as 16 bits.",
            |d| Cell::Tags(d.ble_service_uuids.clone()),
        ),
        BLUETOOTH,
    ),
    only(
        field(
            "ble_advertisement",
            Kind::Hex { max_bytes: 255 },
            "The raw advertisement payload (its AD structures) as hex, at most 255 bytes; read by the tracker classifier.",
            |d| Cell::Text(d.ble_advertisement.clone()),
        ),
        BLUETOOTH,
    ),
    required(
        only(
            field(
                "mcc",
                Kind::Integer { min: 1, max: 999 },
                "Mobile country code.",
                |d| int(d.mcc),
            ),
            CELLULAR,
        ),
        CELLULAR,
    ),
    required(
        only(
            field(
                "mnc",
                Kind::Integer { min: 0, max: 999 },
                "Mobile network code.",
                |d| int(d.mnc),
            ),
            CELLULAR,
        ),
        CELLULAR,
    ),
    required(
        only(
            field(
                "cell_id",
                Kind::Integer {
                    min: 1,
                    max: (1 << 36) - 1,
                },
                "Cell identity: up to 2^28-1, or 2^36-1 for NR.",
                |d| int(d.cell_id),
            ),
            CELLULAR,
        ),
        CELLULAR,
    ),
    only(
        field(
            "lac",
            Kind::Integer {
                min: 1,
                max: (1 << 24) - 1,
            },
            "Location or tracking area code: up to 65533, or 2^24-1 for NR.",
            |d| int(d.lac),
        ),
        CELLULAR,
    ),
    only(
        field(
            "network_type",
            Kind::Word {
                values: NETWORK_TYPES,
            },
            "Radio generation.",
            |d| Cell::Text(d.network_type.clone()),
        ),
        CELLULAR,
    ),
    field(
        "device_id",
        Kind::Uuid,
        "The capture device (part of the natural key: one device, one transmitter, one instant).",
        |d| Cell::Uuid(d.device_id),
    ),
    field(
        "device_name",
        Kind::Text { max_bytes: 128 },
        "The capture device's name.",
        |d| Cell::Text(d.device_name.clone()),
    ),
    field(
        "is_suspicious",
        Kind::Boolean,
        "Flagged by the following detector (read-only: set by the service).",
        |d| Cell::Boolean(d.is_suspicious),
    ),
    field(
        "surveillance_score",
        Kind::Real {
            min: 0.0,
            max: 100.0,
        },
        "The following detector's score of its transmitter, 0 to 100 (read-only: set by the service).",
        |d| Cell::Real(d.surveillance_score),
    ),
    field(
        "raw_data",
        Kind::Object {
            max_bytes: 64 * 1024,
        },
        "Anything else the capture device knows, as a JSON object (at most 64 KiB).",
        |d| Cell::Object(d.raw_data.clone()),
    ),
    field(
        "tags",
        Kind::Tags { max_items: 32 },
        "Free labels; `randomized-mac` and `nomap` are added by the server.",
        |d| Cell::Tags(d.tags.clone()),
    ),
];

/// Fields the server assigns: reported when a client sends them.
pub const SERVER_FIELDS: &[&str] = &["id", "created_at"];

/// The field named `name`.
pub fn by_name(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

impl Field {
    /// Whether the field may be sent with detections of `kind`.
    pub fn applies_to(&self, kind: SignalType) -> bool {
        self.only_for.is_empty() || self.only_for.contains(&kind)
    }

    pub fn required_for(&self, kind: SignalType) -> bool {
        self.required_for.contains(&kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn the_field_table_is_consistent() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert!(
                FIELDS[i + 1..].iter().all(|g| g.name != f.name),
                "{} twice",
                f.name
            );
            for kind in f.required_for {
                assert!(
                    f.applies_to(*kind),
                    "{} required where it does not apply",
                    f.name
                );
            }
        }
    }

    #[test]
    fn every_field_round_trips_through_parse() {
        // One detection per signal type with every field that applies set: each parses, and
        // each field's getter gives back what was sent, so no entry lacks its parse rule.
        let policy = super::super::ValidationPolicy {
            now: Utc::now(),
            max_future_skew: chrono::Duration::seconds(300),
        };
        let value = |f: &Field| -> Value {
            match f.kind {
                Kind::Timestamp => json!("2024-05-01T10:00:00.125Z"),
                Kind::Coordinate { .. } => json!(if f.name == "latitude" { 48.5 } else { 2.25 }),
                Kind::Number { min, .. } | Kind::Real { min, .. } => json!(min.max(0.0) + 12.5),
                Kind::Integer { min, max } => json!((min.max(1) + max.min(1000)) / 2),
                Kind::Text { .. } => json!(format!("{}-x", f.name)),
                Kind::Word { values } => json!(values[0]),
                Kind::Mac => json!("a4:00:00:00:00:01"),
                Kind::SignalType => Value::Null,
                Kind::Uuid => json!("6f1c7a2e-3b1d-4c55-9f2a-0c6e8b1d2a01"),
                Kind::Boolean => json!(true),
                Kind::Object { .. } => json!({"k": "v"}),
                Kind::Tags { .. } => json!(["t"]),
                Kind::Hex { .. } => json!("02011a"),
                Kind::ServiceUuids { .. } => json!(["feed"]),
            }
        };
        let client_sent = |f: &&Field| !SERVER_OWNED.contains(&f.name);
        for kind in SignalType::ALL {
            let mut item = serde_json::Map::new();
            for f in FIELDS
                .iter()
                .filter(|f| f.applies_to(kind))
                .filter(client_sent)
            {
                item.insert(f.name.to_owned(), value(f));
            }
            item.insert("signal_type".into(), json!(kind.as_str()));
            if kind == SignalType::Wifi {
                item.insert("frequency_mhz".into(), json!(2437));
            }
            let d = Detection::parse(&Value::Object(item.clone()), &policy)
                .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
            for f in FIELDS
                .iter()
                .filter(|f| f.applies_to(kind))
                .filter(client_sent)
            {
                let back = match (f.get)(&d) {
                    Cell::Timestamp(t) => json!(t),
                    Cell::Number(v) => json!(v),
                    Cell::Real(v) => json!(v),
                    Cell::Integer(v) => json!(v),
                    Cell::Text(v) => json!(v),
                    Cell::Uuid(v) => json!(v),
                    Cell::Boolean(v) => json!(v),
                    Cell::Object(v) => json!(v),
                    Cell::Tags(v) => json!(v),
                };
                assert_eq!(back, item[f.name], "{kind}: {}", f.name);
            }
        }
    }

    #[test]
    fn a_server_owned_field_sent_by_a_client_is_refused_by_name() {
        let policy = super::super::ValidationPolicy {
            now: Utc::now(),
            max_future_skew: chrono::Duration::seconds(300),
        };
        for owned in SERVER_OWNED {
            let mut item = json!({"detected_at": "2024-05-01T10:00:00Z", "latitude": 1.0,
                "longitude": 1.0, "signal_type": "ble", "bt_address": "c4:00:00:00:00:01"});
            item[*owned] = json!(true);
            let errors = Detection::parse(&item, &policy).expect_err("refused");
            assert!(
                errors.iter().any(|e| e.field == *owned),
                "{owned}: {errors:?}"
            );
        }
    }
}
