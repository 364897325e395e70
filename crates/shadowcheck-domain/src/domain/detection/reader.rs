//! Reading one loose JSON item field by field, collecting every problem (each naming its field)
//! instead of stopping at the first; bounds come from the field table.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::FieldError;
use crate::domain::fields::{self, Kind};
use crate::domain::mac::Mac;

/// Collects field errors while reading one item.
pub(super) struct Reader<'a> {
    pub(super) item: &'a Map<String, Value>,
    pub(super) errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    pub(super) fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(FieldError::new(field, reason));
    }

    /// The field's value, treating JSON null as absent.
    pub(super) fn get(&self, field: &str) -> Option<&'a Value> {
        self.item.get(field).filter(|v| !v.is_null())
    }

    pub(super) fn string(&mut self, field: &str, max_bytes: usize) -> Option<String> {
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

    pub(super) fn float(&mut self, field: &str, min: f64, max: f64) -> Option<f64> {
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

    pub(super) fn int(&mut self, field: &str, min: i64, max: i64) -> Option<i64> {
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
    pub(super) fn int_of(&mut self, field: &str) -> Option<i64> {
        match fields::by_name(field).map(|f| f.kind) {
            Some(Kind::Integer { min, max }) => self.int(field, min, max),
            _ => None,
        }
    }

    pub(super) fn float_of(&mut self, field: &str) -> Option<f64> {
        match fields::by_name(field).map(|f| f.kind) {
            Some(
                Kind::Number { min, max } | Kind::Real { min, max } | Kind::Coordinate { min, max },
            ) => self.float(field, min, max),
            _ => None,
        }
    }

    pub(super) fn string_of(&mut self, field: &str) -> Option<String> {
        match fields::by_name(field).map(|f| f.kind) {
            Some(Kind::Text { max_bytes }) => self.string(field, max_bytes),
            _ => None,
        }
    }

    /// Hex digits (either case, optional `0x`), stored lower-case; the bound is the field's.
    pub(super) fn hex(&mut self, field: &str) -> Option<String> {
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

    pub(super) fn service_uuids(&mut self, field: &str) -> Vec<String> {
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

    pub(super) fn mac(&mut self, field: &str) -> Option<Mac> {
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
