//! The fields every detection shares: what it is, when and where it was seen, by which device,
//! and what the client attached; then the rules that depend on the signal type.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::reader::Reader;
use super::{RawObject, SignalType, ValidationPolicy};
use crate::domain::fields::{self, FIELDS};
use crate::domain::geo::Position;

/// Anything not in the field table is reported (a typo such as `lattitude` is not silently
/// dropped), and so is anything the server owns.
pub(super) fn refuse_foreign_fields(r: &mut Reader<'_>) {
    let item = r.item;
    for (key, value) in item {
        if fields::SERVER_FIELDS.contains(&key.as_str()) {
            r.fail(key, "assigned by the server; do not send it");
        } else if fields::SERVER_OWNED.contains(&key.as_str()) {
            // The detector's verdict is never a client's to send (null counts as absent).
            if !value.is_null() {
                r.fail(
                    key,
                    "is set by the following detector; clients cannot send it",
                );
            }
        } else if fields::by_name(key).is_none() {
            r.fail(key, "unknown field");
        }
    }
}

pub(super) fn signal_type(r: &mut Reader<'_>) -> Option<SignalType> {
    match r.get("signal_type") {
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
    }
}

pub(super) fn detected_at(r: &mut Reader<'_>, policy: &ValidationPolicy) -> Option<DateTime<Utc>> {
    match r.get("detected_at") {
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
    }
}

/// Where it was seen. A capture without a fix sends no coordinates, or 0,0 (where a GPS without a
/// fix reports, as Kismet and WiGLE logs do): the detection is stored without a position (it
/// counts for everything but maps and spatial queries). Half a position is refused.
pub(super) enum Fix {
    At(Position),
    Missing,
    Invalid,
}

pub(super) fn position(r: &mut Reader<'_>) -> Fix {
    let lat = r.float_of("latitude");
    let lon = r.float_of("longitude");
    match (r.get("latitude").is_some(), r.get("longitude").is_some()) {
        (false, false) => return Fix::Missing,
        (true, false) => {
            r.fail("longitude", "required with latitude");
            return Fix::Invalid;
        }
        (false, true) => {
            r.fail("latitude", "required with longitude");
            return Fix::Invalid;
        }
        (true, true) => {}
    }
    match (lat, lon) {
        (Some(lat), Some(lon)) => match Position::new(lat, lon) {
            Ok(p) if p.is_null_island() => Fix::Missing,
            Ok(p) => Fix::At(p),
            Err(_) => Fix::Invalid,
        },
        _ => Fix::Invalid,
    }
}

pub(super) fn device_id(r: &mut Reader<'_>) -> Option<Uuid> {
    let s = r.string("device_id", 64)?;
    match Uuid::parse_str(&s) {
        Ok(u) => Some(u),
        Err(_) => {
            r.fail("device_id", "must be a UUID");
            None
        }
    }
}

pub(super) fn raw_data(r: &mut Reader<'_>) -> Option<RawObject> {
    match r.get("raw_data")? {
        v @ Value::Object(_) => {
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
        _ => {
            r.fail("raw_data", "must be a JSON object");
            None
        }
    }
}

pub(super) fn tags(r: &mut Reader<'_>) -> Vec<String> {
    match r.get("tags") {
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
    }
}

/// Fields that do not apply to `kind` are refused, those it requires must be there, and a wifi
/// frequency must be a wifi band's.
pub(super) fn type_rules(r: &mut Reader<'_>, kind: SignalType, frequency_mhz: Option<i32>) {
    for field in FIELDS {
        if !field.applies_to(kind) && r.get(field.name).is_some() {
            r.fail(field.name, format!("does not apply to signal_type {kind}"));
        }
    }
    // Fields every detection needs were reported when read; these depend on the type.
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
