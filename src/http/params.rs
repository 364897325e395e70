//! The query parameters of detection searches, defined once: the REST search takes all the
//! parts, tiles the window and properties, OGC collections the properties beside their own.
//! Each field is a domain value, so reading the query validates it; the conversions below only
//! combine the parts (a radius needs a point, a window ends after it starts).

use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::domain::search::{
    Area, DetectionSearch, Filters, MinSignal, Score, SearchError, SignalTypes, SsidPattern,
    TimeWindow, Timestamp, YesNo,
};
use crate::domain::{BBox, Bounds, Mac, Position};
use crate::error::ApiError;
use crate::http::query::QueryPart;

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        ApiError::bad_parameter(&e.parameter, e.reason)
    }
}

/// Where: a box, or a point with a radius or a count; nothing is anywhere.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AreaParams {
    /// minLon,minLat,maxLon,maxLat in degrees (WGS84).
    #[param(value_type = Option<String>, example = "13.3,52.4,13.5,52.6")]
    pub bbox: Option<BBox>,
    /// Latitude of a point, with `lon` and one of `radius_m` or `nearest`.
    pub lat: Option<f64>,
    /// Longitude of a point, with `lat`.
    pub lon: Option<f64>,
    /// With lat/lon: geodesic radius in metres (0 < r <= 1000000).
    pub radius_m: Option<f64>,
    /// With lat/lon: the N nearest, closest first (1..=query.max_limit; not paged).
    pub nearest: Option<u32>,
}

impl QueryPart for AreaParams {}

impl AreaParams {
    /// The area these parameters name; `nearest` may ask for at most `max_nearest`.
    pub fn area(self, max_nearest: u32) -> Result<Area, SearchError> {
        let center = match (self.lat, self.lon) {
            (Some(lat), Some(lon)) => Some(Position::new(lat, lon).map_err(|e| {
                let name = match e {
                    crate::domain::geo::GeoError::Latitude => "lat",
                    _ => "lon",
                };
                SearchError::new(name, e)
            })?),
            (Some(_), None) => return Err(SearchError::new("lon", "required with lat")),
            (None, Some(_)) => return Err(SearchError::new("lat", "required with lon")),
            (None, None) => None,
        };
        let needs_point = |name: &str| SearchError::new(name, "requires lat and lon (and no bbox)");
        match (self.bbox, center, self.radius_m, self.nearest) {
            (Some(_), Some(_), _, _) => {
                Err(SearchError::new("bbox", "cannot be combined with lat/lon"))
            }
            (_, None, Some(_), _) => Err(needs_point("radius_m")),
            (_, None, _, Some(_)) => Err(needs_point("nearest")),
            (Some(b), None, None, None) => Ok(Area::BBox(Bounds::One(b))),
            (None, None, None, None) => Ok(Area::Anywhere),
            (None, Some(_), Some(_), Some(_)) => Err(SearchError::new(
                "nearest",
                "cannot be combined with radius_m",
            )),
            (None, Some(c), Some(r), None) => Area::radius(c, r),
            (None, Some(c), None, Some(n)) => Area::nearest(c, n, max_nearest),
            (None, Some(_), None, None) => Err(SearchError::new(
                "radius_m",
                "lat/lon need radius_m or nearest",
            )),
        }
    }
}

/// When: a half-open window.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    /// RFC 3339, inclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    pub start: Option<Timestamp>,
    /// RFC 3339, exclusive; after `start`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub end: Option<Timestamp>,
}

impl QueryPart for WindowParams {}

impl TryFrom<WindowParams> for TimeWindow {
    type Error = SearchError;
    fn try_from(w: WindowParams) -> Result<Self, Self::Error> {
        TimeWindow::new(w.start.map(|t| t.0), w.end.map(|t| t.0))
    }
}

/// What: properties of a detection (or, on the transmitters tile layer, of its transmitter).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PropertyParams {
    /// One or a comma list (or repeats) of wifi, bluetooth, ble, cellular.
    #[param(value_type = Option<String>, example = "wifi,ble")]
    pub signal_type: Option<SignalTypes>,
    /// A wifi access point's address. Detections only.
    #[param(value_type = Option<String>, example = "00:11:22:33:44:55")]
    pub bssid: Option<Mac>,
    /// A Bluetooth or BLE address. Detections only.
    #[param(value_type = Option<String>)]
    pub bt_address: Option<Mac>,
    /// Case-insensitive substring of the SSID (1 to 32 bytes). Detections only.
    #[param(value_type = Option<String>)]
    pub ssid: Option<SsidPattern>,
    /// Seen by this capture device.
    pub device_id: Option<Uuid>,
    /// Flagged by the following detector (true or false).
    #[param(value_type = Option<bool>)]
    pub is_suspicious: Option<YesNo>,
    /// Received signal at least this many dBm (-200 to 50). Detections only.
    #[param(value_type = Option<i32>, minimum = -200, maximum = 50)]
    pub min_signal_dbm: Option<MinSignal>,
    /// The transmitter's following score at least this (0 to 100).
    #[param(value_type = Option<f32>, minimum = 0, maximum = 100)]
    pub min_score: Option<Score>,
    /// Also detections without a fix of their own whose position was estimated from the
    /// transmitters heard in the same scan (`position_source: estimated`). Detections only.
    #[param(value_type = Option<bool>)]
    pub estimated: Option<YesNo>,
}

impl QueryPart for PropertyParams {
    const LISTS: &'static [&'static str] = &["signal_type"];
}

/// The filters of a window and properties.
pub fn filters(window: TimeWindow, p: PropertyParams) -> Filters {
    Filters {
        window,
        signal_types: p.signal_type.map(|s| s.0).unwrap_or_default(),
        bssid: p.bssid,
        bt_address: p.bt_address,
        ssid: p.ssid,
        device_id: p.device_id,
        is_suspicious: p.is_suspicious.map(|y| y.0),
        min_signal_dbm: p.min_signal_dbm,
        min_score: p.min_score,
        with_estimated: p.estimated.is_some_and(|y| y.0),
    }
}

/// How many, and from where (keyset).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1..=query.max_limit (default query.default_limit); for an export, an optional cap.
    pub limit: Option<u32>,
    /// Keyset cursor from the `next` link: only detections with a larger id.
    pub after: Option<i64>,
}

impl QueryPart for PageParams {}

/// As a file instead of a page.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatParams {
    /// Export every match as one streamed file: csv, fgb (FlatGeobuf), geojson, geojsonseq
    /// (RFC 8142) or kml. Absent: a GeoJSON page (or the type an `Accept` header names).
    #[param(pattern = "^(csv|fgb|geojson|geojsonseq|kml)$")]
    pub f: Option<String>,
}

impl QueryPart for FormatParams {}

/// A detection search from its parts; `limit` within `1..=max_limit` (`default_limit` when
/// absent), `nearest` at most `max_limit`.
pub fn detection_search(
    area: AreaParams,
    window: WindowParams,
    properties: PropertyParams,
    page: PageParams,
    default_limit: u32,
    max_limit: u32,
) -> Result<DetectionSearch, ApiError> {
    let area = area.area(max_limit)?;
    let filters = filters(window.try_into()?, properties);
    let limit = crate::http::query::page_size(page.limit, default_limit, max_limit)?;
    Ok(DetectionSearch::new(area, filters, limit, page.after)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::query::parse;

    type Parts = (AreaParams, WindowParams, PropertyParams, PageParams);

    fn search(q: &str) -> Result<DetectionSearch, ApiError> {
        let (area, window, properties, page) = parse::<Parts>(q)?;
        detection_search(area, window, properties, page, 1000, 10_000)
    }

    fn bad_param(q: &str) -> String {
        match search(q) {
            Err(ApiError::BadRequest { parameter, .. }) => parameter.unwrap_or_default(),
            other => panic!("{q}: expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn a_box_a_radius_a_count_or_nothing_make_the_four_areas() {
        let area = |q: &str| search(q).map(|s| s.area().clone());
        assert!(matches!(area("bbox=1,2,3,4"), Ok(Area::BBox(_))));
        assert!(matches!(
            area("lat=1&lon=2&radius_m=100"),
            Ok(Area::Radius { .. })
        ));
        assert!(matches!(
            area("lat=1&lon=2&nearest=5"),
            Ok(Area::Nearest { n: 5, .. })
        ));
        assert!(matches!(area(""), Ok(Area::Anywhere)));
    }

    #[test]
    fn the_first_unusable_parameter_is_named() {
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
            ("lat=1&lon=1&nearest=5&after=3", "after"),
        ] {
            assert_eq!(bad_param(q), p, "{q}");
        }
    }
}
