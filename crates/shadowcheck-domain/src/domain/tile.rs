//! Web-mercator tiles (the XYZ scheme MapLibre, QGIS and GDAL use): an address that can only
//! name a tile that exists, and the area it covers.

use std::f64::consts::PI;
use std::fmt;

use super::BBox;

/// Deepest zoom served: about 2.4 cm per pixel at the equator, far below any GPS fix.
pub const MAX_ZOOM: u8 = 22;

/// Web mercator stops at ±85.0511°, where the square world ends.
pub const MAX_LAT: f64 = 85.051_128_779_806_59;

/// Tile `x`, `y` at zoom `z`, with `x` and `y` below `2^z` (y grows southwards).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileCoord {
    z: u8,
    x: u32,
    y: u32,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    #[error("zoom must be an integer from 0 to {MAX_ZOOM}")]
    Zoom,
    #[error("x and y must be integers from 0 to 2^zoom - 1")]
    Column,
    #[error("the tile must be named {{z}}/{{x}}/{{y}}.pbf (or .mvt)")]
    Name,
}

impl TileCoord {
    pub fn new(z: u8, x: u32, y: u32) -> Result<Self, TileError> {
        if z > MAX_ZOOM {
            return Err(TileError::Zoom);
        }
        let n = 1u64 << z;
        if u64::from(x) >= n || u64::from(y) >= n {
            return Err(TileError::Column);
        }
        Ok(Self { z, x, y })
    }

    /// From the path segments `z`, `x` and `y.pbf` (or `y.mvt`).
    pub fn parse(z: &str, x: &str, y_with_extension: &str) -> Result<Self, TileError> {
        let y = y_with_extension
            .strip_suffix(".pbf")
            .or_else(|| y_with_extension.strip_suffix(".mvt"))
            .ok_or(TileError::Name)?;
        let z: u8 = z.parse().map_err(|_| TileError::Zoom)?;
        let x: u32 = x.parse().map_err(|_| TileError::Column)?;
        let y: u32 = y.parse().map_err(|_| TileError::Column)?;
        Self::new(z, x, y)
    }

    pub fn z(&self) -> u8 {
        self.z
    }
    pub fn x(&self) -> u32 {
        self.x
    }
    pub fn y(&self) -> u32 {
        self.y
    }

    /// The area in degrees (latitudes clamped to the mercator square).
    pub fn bbox(&self) -> BBox {
        let n = f64::from(1u32 << self.z);
        let lon = |x: f64| x / n * 360.0 - 180.0;
        let lat = |y: f64| (PI * (1.0 - 2.0 * y / n)).sinh().atan().to_degrees();
        BBox {
            min_lon: lon(f64::from(self.x)),
            max_lon: lon(f64::from(self.x) + 1.0),
            min_lat: lat(f64::from(self.y) + 1.0),
            max_lat: lat(f64::from(self.y)),
        }
    }
}

impl fmt::Display for TileCoord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.z, self.x, self.y)
    }
}

impl BBox {
    /// Whether the two boxes share any point (edges included).
    pub fn intersects(&self, other: &BBox) -> bool {
        self.min_lon <= other.max_lon
            && other.min_lon <= self.max_lon
            && self.min_lat <= other.max_lat
            && other.min_lat <= self.max_lat
    }

    /// The smallest box holding both.
    pub fn union(&self, other: &BBox) -> BBox {
        BBox {
            min_lon: self.min_lon.min(other.min_lon),
            min_lat: self.min_lat.min(other.min_lat),
            max_lon: self.max_lon.max(other.max_lon),
            max_lat: self.max_lat.max(other.max_lat),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_tiles_that_exist() {
        assert_eq!(
            TileCoord::parse("14", "8185", "5449.pbf"),
            TileCoord::new(14, 8185, 5449)
        );
        assert!(TileCoord::parse("0", "0", "0.mvt").is_ok());
        assert_eq!(TileCoord::parse("1", "2", "0.pbf"), Err(TileError::Column));
        assert_eq!(TileCoord::parse("23", "0", "0.pbf"), Err(TileError::Zoom));
        assert_eq!(TileCoord::parse("-1", "0", "0.pbf"), Err(TileError::Zoom));
        assert_eq!(TileCoord::parse("3", "1", "1.png"), Err(TileError::Name));
        assert_eq!(TileCoord::parse("3", "x", "1.pbf"), Err(TileError::Column));
    }

    #[test]
    fn tile_bounds_follow_web_mercator() {
        let world = TileCoord::new(0, 0, 0).expect("valid").bbox();
        assert_eq!((world.min_lon, world.max_lon), (-180.0, 180.0));
        assert!((world.max_lat - MAX_LAT).abs() < 1e-9);
        assert!((world.min_lat + MAX_LAT).abs() < 1e-9);
        // The tile of Berlin's Brandenburg Gate (13.3777, 52.5163) at z14.
        let gate = TileCoord::new(14, 8800, 5373).expect("valid").bbox();
        assert!(gate.min_lon <= 13.3777 && 13.3777 <= gate.max_lon);
        assert!(gate.min_lat <= 52.5163 && 52.5163 <= gate.max_lat);
    }

    #[test]
    fn boxes_intersect_on_shared_edges() {
        let a = BBox {
            min_lon: 0.0,
            min_lat: 0.0,
            max_lon: 1.0,
            max_lat: 1.0,
        };
        let b = BBox {
            min_lon: 1.0,
            min_lat: 0.5,
            max_lon: 2.0,
            max_lat: 2.0,
        };
        let c = BBox { min_lon: 1.5, ..b };
        assert!(a.intersects(&b) && b.intersects(&a));
        assert!(!a.intersects(&c));
        assert_eq!(a.union(&c).max_lon, 2.0);
    }
}
