use std::str::FromStr;

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Fixes less accurate than this place nothing: neither the registry's position estimate nor the
/// detector's places use them (the migrations' SQL filters with the same 100 m).
pub const MAX_FIX_ACCURACY_M: f64 = 100.0;

/// Great-circle distance in metres between two (latitude, longitude) pairs in degrees; within
/// 0.5 % of the spheroid, which every margin that uses it absorbs.
pub fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// A WGS84 position in degrees, finite and in range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    lat: f64,
    lon: f64,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GeoError {
    #[error("latitude must be a finite number in [-90, 90]")]
    Latitude,
    #[error("longitude must be a finite number in [-180, 180]")]
    Longitude,
    #[error("bbox must be minLon,minLat,maxLon,maxLat with min < max")]
    BBox,
}

impl Position {
    pub fn new(lat: f64, lon: f64) -> Result<Self, GeoError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(GeoError::Latitude);
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(GeoError::Longitude);
        }
        Ok(Self { lat, lon })
    }
    pub fn lat(&self) -> f64 {
        self.lat
    }
    pub fn lon(&self) -> f64 {
        self.lon
    }
    /// (0, 0), "null island": where a GPS without a fix reports, never a real place.
    pub fn is_null_island(&self) -> bool {
        self.lat.abs() < 1e-6 && self.lon.abs() < 1e-6
    }
    /// Great-circle distance to `other`, metres.
    pub fn distance_m(self, other: Position) -> f64 {
        haversine_m((self.lat(), self.lon()), (other.lat(), other.lon()))
    }

    pub fn to_point(self) -> geo_types::Point<f64> {
        geo_types::Point::new(self.lon, self.lat)
    }
}

/// An axis-aligned box in degrees, west edge west of the east edge. A box across the
/// antimeridian is a [`Bounds`] of two.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BBox {
    pub min_lon: f64,
    pub min_lat: f64,
    pub max_lon: f64,
    pub max_lat: f64,
}

impl FromStr for BBox {
    type Err = GeoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| GeoError::BBox)?;
        let [min_lon, min_lat, max_lon, max_lat] = parts[..] else {
            return Err(GeoError::BBox);
        };
        Position::new(min_lat, min_lon)?;
        Position::new(max_lat, max_lon)?;
        if min_lon >= max_lon || min_lat >= max_lat {
            return Err(GeoError::BBox);
        }
        Ok(Self {
            min_lon,
            min_lat,
            max_lon,
            max_lat,
        })
    }
}

/// An area searched by box: one box, or for an OGC bbox whose west edge lies east of its east
/// edge (OGC API – Features 1, /req/core/fc-bbox-definition), the two either side of the
/// antimeridian.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bounds {
    One(BBox),
    AcrossAntimeridian { west: BBox, east: BBox },
}

impl Bounds {
    /// From the four edges; `min_lon > max_lon` wraps across the antimeridian.
    pub fn from_edges(
        min_lon: f64,
        min_lat: f64,
        max_lon: f64,
        max_lat: f64,
    ) -> Result<Self, GeoError> {
        Position::new(min_lat, min_lon)?;
        Position::new(max_lat, max_lon)?;
        if min_lat >= max_lat || min_lon == max_lon {
            return Err(GeoError::BBox);
        }
        if min_lon < max_lon {
            return Ok(Self::One(BBox {
                min_lon,
                min_lat,
                max_lon,
                max_lat,
            }));
        }
        Ok(Self::AcrossAntimeridian {
            west: BBox {
                min_lon,
                min_lat,
                max_lon: 180.0,
                max_lat,
            },
            east: BBox {
                min_lon: -180.0,
                min_lat,
                max_lon,
                max_lat,
            },
        })
    }

    /// The boxes to search, one or two.
    pub fn parts(&self) -> Vec<BBox> {
        match *self {
            Self::One(b) => vec![b],
            Self::AcrossAntimeridian { west, east } => vec![west, east],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ogc_box_west_of_its_east_edge_wraps_the_antimeridian() {
        let b = Bounds::from_edges(170.0, -20.0, -170.0, 10.0).expect("wrapping");
        let parts = b.parts();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].min_lon, parts[0].max_lon), (170.0, 180.0));
        assert_eq!((parts[1].min_lon, parts[1].max_lon), (-180.0, -170.0));
        assert!(matches!(
            Bounds::from_edges(1.0, 2.0, 3.0, 4.0),
            Ok(Bounds::One(_))
        ));
        assert_eq!(Bounds::from_edges(5.0, 2.0, 5.0, 4.0), Err(GeoError::BBox));
        assert_eq!(Bounds::from_edges(1.0, 4.0, 3.0, 2.0), Err(GeoError::BBox));
    }

    #[test]
    fn position_ranges() {
        assert!(Position::new(90.0, -180.0).is_ok());
        assert_eq!(Position::new(90.1, 0.0), Err(GeoError::Latitude));
        assert_eq!(Position::new(f64::NAN, 0.0), Err(GeoError::Latitude));
        assert_eq!(Position::new(0.0, f64::INFINITY), Err(GeoError::Longitude));
    }

    #[test]
    fn bbox_parse() {
        assert!("35.1,32.0,35.3,32.2".parse::<BBox>().is_ok());
        for bad in [
            "",
            "1,2,3",
            "1,2,3,4,5",
            "a,b,c,d",
            "35.3,32.0,35.1,32.2",
            "0,0,0,0",
            "0,-91,1,1",
            "nan,0,1,1",
        ] {
            assert!(bad.parse::<BBox>().is_err(), "{bad}");
        }
    }
}
