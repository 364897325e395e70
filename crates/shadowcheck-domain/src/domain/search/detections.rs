//! A detection search: an area, filters, and a page.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::{MinSignal, Score, SsidPattern, TimeWindow};
use super::SearchError;
use crate::domain::{Bounds, Mac, Position, SignalType};

#[derive(Clone, Debug, PartialEq)]
pub enum Area {
    Anywhere,
    BBox(Bounds),
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

/// The largest radius search, in metres.
pub const MAX_RADIUS_M: f64 = 1_000_000.0;

impl Area {
    /// Within `radius_m` (0 < r <= [`MAX_RADIUS_M`]) of `center`.
    pub fn radius(center: Position, radius_m: f64) -> Result<Self, SearchError> {
        if !(radius_m.is_finite() && radius_m > 0.0 && radius_m <= MAX_RADIUS_M) {
            return Err(SearchError::new(
                "radius_m",
                "must be greater than 0 and at most 1000000",
            ));
        }
        Ok(Self::Radius { center, radius_m })
    }

    /// The `n` (1 to `max`) nearest to `center`.
    pub fn nearest(center: Position, n: u32, max: u32) -> Result<Self, SearchError> {
        if n == 0 || n > max {
            return Err(SearchError::new(
                "nearest",
                format!("must be between 1 and {max}"),
            ));
        }
        Ok(Self::Nearest { center, n })
    }
}

/// What a detection must be, besides where: every filter a detection search, a tile or an OGC
/// collection shares.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filters {
    pub window: TimeWindow,
    /// Any of these (empty: all).
    pub signal_types: Vec<SignalType>,
    pub bssid: Option<Mac>,
    pub bt_address: Option<Mac>,
    /// Case-insensitive substring of the SSID.
    pub ssid: Option<SsidPattern>,
    pub device_id: Option<Uuid>,
    pub is_suspicious: Option<bool>,
    pub min_signal_dbm: Option<MinSignal>,
    /// Detections whose transmitter scored at least this, written back by the detector.
    pub min_score: Option<Score>,
    /// Include detections whose position was estimated from the transmitters heard in the same
    /// scan (left out unless asked: they are the registry's guess, not a fix).
    pub with_estimated: bool,
}

impl Filters {
    /// The first filter set that only a single detection can answer (a transmitter, one row for
    /// all its detections, cannot), by its parameter name.
    pub fn detection_only(&self) -> Option<&'static str> {
        [
            ("bssid", self.bssid.is_some()),
            ("bt_address", self.bt_address.is_some()),
            ("ssid", self.ssid.is_some()),
            ("min_signal_dbm", self.min_signal_dbm.is_some()),
            ("estimated", self.with_estimated),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
    }
}

/// A search that can only hold a consistent set of filters.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionSearch {
    area: Area,
    filters: Filters,
    limit: u32,
    after: Option<i64>,
}

impl DetectionSearch {
    pub fn anywhere(limit: u32) -> Self {
        Self {
            area: Area::Anywhere,
            filters: Filters::default(),
            limit,
            after: None,
        }
    }

    /// A page of `limit` detections after the id `after` (nearest results are not paged).
    pub fn new(
        area: Area,
        filters: Filters,
        limit: u32,
        after: Option<i64>,
    ) -> Result<Self, SearchError> {
        if after.is_some_and(|a| a < 0) {
            return Err(SearchError::new("after", "must be a detection id"));
        }
        if after.is_some() && matches!(area, Area::Nearest { .. }) {
            return Err(SearchError::new("after", "nearest results are not paged"));
        }
        Ok(Self {
            area,
            filters,
            limit,
            after,
        })
    }

    /// Where: one of a box, a radius or the nearest N around a point, or anywhere.
    pub fn area(&self) -> &Area {
        &self.area
    }
    pub fn filters(&self) -> &Filters {
        &self.filters
    }
    /// Half-open time window `[start, end)`.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.filters.window.start()
    }
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.filters.window.end()
    }
    /// Any of these (empty: all).
    pub fn signal_types(&self) -> &[SignalType] {
        &self.filters.signal_types
    }
    pub fn bssid(&self) -> Option<Mac> {
        self.filters.bssid
    }
    pub fn bt_address(&self) -> Option<Mac> {
        self.filters.bt_address
    }
    /// Case-insensitive substring of the SSID.
    pub fn ssid(&self) -> Option<&str> {
        self.filters.ssid.as_ref().map(SsidPattern::as_str)
    }
    pub fn device_id(&self) -> Option<Uuid> {
        self.filters.device_id
    }
    pub fn is_suspicious(&self) -> Option<bool> {
        self.filters.is_suspicious
    }
    pub fn min_signal_dbm(&self) -> Option<i32> {
        self.filters.min_signal_dbm.map(MinSignal::dbm)
    }
    /// Detections at least this surveillance score (0-100), written back by the detector.
    pub fn min_score(&self) -> Option<f32> {
        self.filters.min_score.map(Score::value)
    }
    pub fn limit(&self) -> u32 {
        self.limit
    }
    /// Keyset cursor: only detections with a larger id.
    pub fn after(&self) -> Option<i64> {
        self.after
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

    fn covers(boxes: &[[f64; 4]], lat: f64, lon: f64) -> bool {
        boxes
            .iter()
            .any(|b| (b[0]..=b[2]).contains(&lon) && (b[1]..=b[3]).contains(&lat))
    }

    #[test]
    fn covering_boxes_reach_wherever_the_circle_goes() {
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
}
