//! A validated detection search: where, when, what, and how many.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::geo::GeoError;
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

/// A search that can only hold a consistent set of filters: built by [`DetectionSearch::parse`]
/// from query parameters (or [`DetectionSearch::anywhere`]).
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionSearch {
    area: Area,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    signal_types: Vec<SignalType>,
    bssid: Option<Mac>,
    bt_address: Option<Mac>,
    ssid: Option<String>,
    device_id: Option<Uuid>,
    is_suspicious: Option<bool>,
    min_signal_dbm: Option<i32>,
    min_score: Option<f32>,
    limit: u32,
    after: Option<i64>,
}

/// Page sizes the server allows.
#[derive(Clone, Copy, Debug)]
pub struct SearchLimits {
    pub default_limit: u32,
    pub max_limit: u32,
}

/// A parameter that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchError {
    pub parameter: String,
    pub reason: String,
}

fn bad(parameter: &str, reason: impl std::fmt::Display) -> SearchError {
    SearchError {
        parameter: parameter.to_owned(),
        reason: reason.to_string(),
    }
}

/// Every parameter a search understands; anything else is named in an error.
const SEARCH_PARAMS: [&str; 17] = [
    "bbox",
    "lat",
    "lon",
    "radius_m",
    "nearest",
    "start",
    "end",
    "signal_type",
    "bssid",
    "bt_address",
    "ssid",
    "device_id",
    "is_suspicious",
    "min_signal_dbm",
    "min_score",
    "limit",
    "after",
];

/// The largest radius search, in metres.
pub const MAX_RADIUS_M: f64 = 1_000_000.0;

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
            min_score: None,
            limit,
            after: None,
        }
    }

    /// Where: one of a box, a radius or the nearest N around a point, or anywhere.
    pub fn area(&self) -> &Area {
        &self.area
    }
    /// Half-open time window `[start, end)`.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.start
    }
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.end
    }
    /// Any of these (empty: all).
    pub fn signal_types(&self) -> &[SignalType] {
        &self.signal_types
    }
    pub fn bssid(&self) -> Option<Mac> {
        self.bssid
    }
    pub fn bt_address(&self) -> Option<Mac> {
        self.bt_address
    }
    /// Case-insensitive substring of the SSID.
    pub fn ssid(&self) -> Option<&str> {
        self.ssid.as_deref()
    }
    pub fn device_id(&self) -> Option<Uuid> {
        self.device_id
    }
    pub fn is_suspicious(&self) -> Option<bool> {
        self.is_suspicious
    }
    pub fn min_signal_dbm(&self) -> Option<i32> {
        self.min_signal_dbm
    }
    /// Detections at least this surveillance score (0-100), written back by the detector.
    pub fn min_score(&self) -> Option<f32> {
        self.min_score
    }
    pub fn limit(&self) -> u32 {
        self.limit
    }
    /// Keyset cursor: only detections with a larger id.
    pub fn after(&self) -> Option<i64> {
        self.after
    }

    /// Parses query parameters (each named once, except `signal_type` which may repeat or hold
    /// a comma list) into a search, naming the first parameter that cannot be used.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
        limits: SearchLimits,
    ) -> Result<Self, SearchError> {
        let mut params: HashMap<String, String> = HashMap::new();
        let mut signal_types = Vec::new();
        for (key, value) in pairs {
            if !SEARCH_PARAMS.contains(&key.as_ref()) {
                return Err(bad(&key, "unknown parameter"));
            }
            if key == "signal_type" {
                for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                    let kind: SignalType = part.parse().map_err(|e| bad("signal_type", e))?;
                    if !signal_types.contains(&kind) {
                        signal_types.push(kind);
                    }
                }
                continue;
            }
            if params.insert(key.to_string(), value.to_string()).is_some() {
                return Err(bad(&key, "given more than once"));
            }
        }
        fn parsed<T: std::str::FromStr>(
            params: &HashMap<String, String>,
            name: &str,
            what: &str,
        ) -> Result<Option<T>, SearchError> {
            params
                .get(name)
                .map(|v| {
                    v.trim()
                        .parse::<T>()
                        .map_err(|_| bad(name, format!("must be {what}")))
                })
                .transpose()
        }
        let time = |name: &str| -> Result<Option<DateTime<Utc>>, SearchError> {
            params
                .get(name)
                .map(|v| {
                    DateTime::parse_from_rfc3339(v.trim())
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| bad(name, "must be an RFC 3339 timestamp"))
                })
                .transpose()
        };
        let mac = |name: &str| -> Result<Option<Mac>, SearchError> {
            params
                .get(name)
                .map(|v| v.parse::<Mac>().map_err(|e| bad(name, e)))
                .transpose()
        };

        let bbox: Option<BBox> = params
            .get("bbox")
            .map(|v| v.parse::<BBox>().map_err(|e| bad("bbox", e)))
            .transpose()?;
        let lat: Option<f64> = parsed(&params, "lat", "a latitude in degrees")?;
        let lon: Option<f64> = parsed(&params, "lon", "a longitude in degrees")?;
        let radius_m: Option<f64> = parsed(&params, "radius_m", "a distance in metres")?;
        let nearest: Option<u32> = parsed(&params, "nearest", "a positive integer")?;

        let center = match (lat, lon) {
            (Some(lat), Some(lon)) => Some(Position::new(lat, lon).map_err(|e| {
                let name = if matches!(e, GeoError::Latitude) {
                    "lat"
                } else {
                    "lon"
                };
                bad(name, e)
            })?),
            (Some(_), None) => return Err(bad("lon", "required with lat")),
            (None, Some(_)) => return Err(bad("lat", "required with lon")),
            (None, None) => None,
        };
        let needs_point = |name: &str| bad(name, "requires lat and lon (and no bbox)");
        let area = match (bbox, center) {
            (Some(_), Some(_)) => return Err(bad("bbox", "cannot be combined with lat/lon")),
            (Some(b), None) => {
                if radius_m.is_some() {
                    return Err(needs_point("radius_m"));
                }
                if nearest.is_some() {
                    return Err(needs_point("nearest"));
                }
                Area::BBox(b)
            }
            (None, Some(center)) => match (radius_m, nearest) {
                (Some(_), Some(_)) => {
                    return Err(bad("nearest", "cannot be combined with radius_m"))
                }
                (Some(r), None) => {
                    if !(r.is_finite() && r > 0.0 && r <= MAX_RADIUS_M) {
                        return Err(bad(
                            "radius_m",
                            "must be greater than 0 and at most 1000000",
                        ));
                    }
                    Area::Radius {
                        center,
                        radius_m: r,
                    }
                }
                (None, Some(n)) => {
                    if n == 0 || n > limits.max_limit {
                        return Err(bad(
                            "nearest",
                            format!("must be between 1 and {}", limits.max_limit),
                        ));
                    }
                    Area::Nearest { center, n }
                }
                (None, None) => return Err(bad("radius_m", "lat/lon need radius_m or nearest")),
            },
            (None, None) => {
                if radius_m.is_some() {
                    return Err(needs_point("radius_m"));
                }
                if nearest.is_some() {
                    return Err(needs_point("nearest"));
                }
                Area::Anywhere
            }
        };

        let start = time("start")?;
        let end = time("end")?;
        if let (Some(s), Some(e)) = (start, end) {
            if s >= e {
                return Err(bad("end", "must be after start"));
            }
        }
        let limit: u32 =
            parsed(&params, "limit", "a positive integer")?.unwrap_or(limits.default_limit);
        if limit == 0 || limit > limits.max_limit {
            return Err(bad(
                "limit",
                format!("must be between 1 and {}", limits.max_limit),
            ));
        }
        let after: Option<i64> = parsed(&params, "after", "a detection id")?;
        if after.is_some_and(|a| a < 0) {
            return Err(bad("after", "must be a detection id"));
        }
        if after.is_some() && matches!(area, Area::Nearest { .. }) {
            return Err(bad("after", "nearest results are not paged"));
        }
        let ssid = params.get("ssid").cloned();
        if ssid
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > 32 || s.contains('\0'))
        {
            return Err(bad("ssid", "must be 1 to 32 bytes"));
        }
        let min_signal_dbm: Option<i32> =
            parsed(&params, "min_signal_dbm", "an integer dBm value")?;
        if min_signal_dbm.is_some_and(|v| !(-200..=50).contains(&v)) {
            return Err(bad("min_signal_dbm", "must be between -200 and 50"));
        }
        let min_score: Option<f32> = parsed(&params, "min_score", "a score from 0 to 100")?;
        if min_score.is_some_and(|v| !(0.0..=100.0).contains(&v)) {
            return Err(bad("min_score", "must be a score from 0 to 100"));
        }
        let is_suspicious = params
            .get("is_suspicious")
            .map(|v| match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(bad("is_suspicious", "must be true or false")),
            })
            .transpose()?;
        Ok(Self {
            area,
            start,
            end,
            signal_types,
            bssid: mac("bssid")?,
            bt_address: mac("bt_address")?,
            ssid,
            device_id: parsed(&params, "device_id", "a UUID")?,
            is_suspicious,
            min_signal_dbm,
            min_score,
            limit,
            after,
        })
    }
}

/// Boxes `[minLon, minLat, maxLon, maxLat]` (degrees) whose union certainly contains the circle
/// of `radius_m` metres around `center`: one box; two where the circle crosses the
/// antimeridian; a band of every longitude where it comes near a pole. They let the spatial index
/// pre-filter every radius search, wherever it is.
pub fn covering_boxes(center: Position, radius_m: f64) -> Vec<[f64; 4]> {
    // Fewest metres per degree of latitude (at the equator), plus a margin.
    let dlat = radius_m / 110_574.0 * 1.02 + 1e-9;
    let (lat, lon) = (center.lat(), center.lon());
    let (min_lat, max_lat) = ((lat - dlat).max(-90.0), (lat + dlat).min(90.0));
    let band = vec![[-180.0, min_lat, 180.0, max_lat]];
    // Longitude degrees shrink towards the poles: size them at the circle's highest latitude.
    let far_lat = lat.abs() + dlat;
    if far_lat >= 89.0 {
        return band;
    }
    let dlon = radius_m / (111_320.0 * far_lat.to_radians().cos()) * 1.02 + 1e-9;
    if dlon >= 180.0 {
        return band;
    }
    let (west, east) = (lon - dlon, lon + dlon);
    if west < -180.0 {
        vec![
            [-180.0, min_lat, east, max_lat],
            [west + 360.0, min_lat, 180.0, max_lat],
        ]
    } else if east > 180.0 {
        vec![
            [west, min_lat, 180.0, max_lat],
            [-180.0, min_lat, east - 360.0, max_lat],
        ]
    } else {
        vec![[west, min_lat, east, max_lat]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<DetectionSearch, SearchError> {
        let limits = SearchLimits {
            default_limit: 1000,
            max_limit: 10_000,
        };
        DetectionSearch::parse(form_urlencoded::parse(q.as_bytes()), limits)
    }

    fn bad_param(q: &str) -> String {
        match parse(q) {
            Err(e) => e.parameter,
            other => panic!("{q}: expected a 400, got {other:?}"),
        }
    }

    fn covers(boxes: &[[f64; 4]], lat: f64, lon: f64) -> bool {
        boxes
            .iter()
            .any(|b| (b[0]..=b[2]).contains(&lon) && (b[1]..=b[3]).contains(&lat))
    }

    #[test]
    fn covering_boxes_reach_across_the_antimeridian_and_the_poles() {
        let at = |lat, lon| Position::new(lat, lon).expect("position");
        // 10 km around a point 1 km west of the antimeridian: two boxes.
        let boxes = covering_boxes(at(0.0, 179.99), 10_000.0);
        assert_eq!(boxes.len(), 2, "{boxes:?}");
        assert!(covers(&boxes, 0.0, -179.95) && covers(&boxes, 0.0, 179.95));
        let boxes = covering_boxes(at(-40.0, -179.99), 10_000.0);
        assert!(covers(&boxes, -40.0, 179.95), "{boxes:?}");
        // Near the north pole every longitude is in reach.
        let boxes = covering_boxes(at(89.95, 10.0), 20_000.0);
        assert!(
            covers(&boxes, 89.9, -170.0) && covers(&boxes, 90.0, 0.0),
            "{boxes:?}"
        );
        assert!(!covers(&boxes, 89.0, 10.0), "{boxes:?}");
        // Elsewhere one box, not the world.
        let boxes = covering_boxes(at(52.52, 13.405), 1_000.0);
        assert_eq!(boxes.len(), 1);
        assert!(boxes[0][2] - boxes[0][0] < 0.1);
    }

    #[test]
    fn spatial_forms() {
        assert!(matches!(
            parse("bbox=1,2,3,4").map(|s| s.area),
            Ok(Area::BBox(_))
        ));
        assert!(matches!(
            parse("lat=1&lon=2&radius_m=100").map(|s| s.area),
            Ok(Area::Radius { .. })
        ));
        assert!(matches!(
            parse("lat=1&lon=2&nearest=5").map(|s| s.area),
            Ok(Area::Nearest { n: 5, .. })
        ));
        assert!(matches!(parse("").map(|s| s.area), Ok(Area::Anywhere)));
    }

    #[test]
    fn names_the_bad_parameter() {
        for (q, p) in [
            ("bbox=1,2", "bbox"),
            ("lat=95&lon=0&radius_m=1", "lat"),
            ("lat=1", "lon"),
            ("lat=1&lon=1", "radius_m"),
            ("radius_m=5", "radius_m"),
            ("lat=1&lon=1&radius_m=-1", "radius_m"),
            ("lat=1&lon=1&nearest=0", "nearest"),
            ("start=yesterday", "start"),
            ("start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z", "end"),
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("signal_type=lora", "signal_type"),
            ("bssid=xx", "bssid"),
            ("device_id=nope", "device_id"),
            ("is_suspicious=maybe", "is_suspicious"),
            ("foo=1", "foo"),
            ("limit=1&limit=2", "limit"),
            ("after=-1", "after"),
            ("min_signal_dbm=x", "min_signal_dbm"),
        ] {
            assert_eq!(bad_param(q), p, "{q}");
        }
    }
}
