//! A validated detection search: where, when, what, and how many.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{BBox, Mac, Position, SignalType};

#[derive(Clone, Debug, PartialEq)]
pub enum Area {
    Anywhere,
    BBox(BBox),
    /// Within `radius_m` true metres (on the WGS84 spheroid) of a point.
    Radius {
        center: Position,
        radius_m: f64,
    },
    /// The `n` detections closest to a point, closest first.
    Nearest {
        center: Position,
        n: u32,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct DetectionSearch {
    pub area: Area,
    /// Half-open time window `[start, end)`.
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub signal_types: Vec<SignalType>,
    pub bssid: Option<Mac>,
    pub bt_address: Option<Mac>,
    /// Case-insensitive substring of the SSID.
    pub ssid: Option<String>,
    pub device_id: Option<Uuid>,
    pub is_suspicious: Option<bool>,
    pub min_signal_dbm: Option<i32>,
    pub limit: u32,
    /// Keyset cursor: only detections with a larger id.
    pub after: Option<i64>,
}

impl DetectionSearch {
    pub fn anywhere(limit: u32) -> Self {
        Self {
            area: Area::Anywhere,
            start: None,
            end: None,
            signal_types: Vec::new(),
            bssid: None,
            bt_address: None,
            ssid: None,
            device_id: None,
            is_suspicious: None,
            min_signal_dbm: None,
            limit,
            after: None,
        }
    }
}

/// Degrees of latitude and longitude that certainly contain a circle of `radius_m` metres
/// around `center`, or `None` when the circle reaches a pole or the antimeridian (then no
/// box pre-filter is used).
pub fn degree_envelope(center: Position, radius_m: f64) -> Option<(f64, f64)> {
    // Fewest metres per degree of latitude (at the equator), plus a margin.
    let dlat = radius_m / 110_574.0 * 1.02 + 1e-9;
    let far_lat = center.lat().abs() + dlat;
    if far_lat >= 89.0 {
        return None;
    }
    let dlon = radius_m / (111_320.0 * far_lat.to_radians().cos()) * 1.02 + 1e-9;
    if center.lon() - dlon < -180.0 || center.lon() + dlon > 180.0 {
        return None;
    }
    Some((dlon, dlat))
}
