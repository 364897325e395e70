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

/// Zoom of the tile keys stored with each detection (migration `tile_keys`): every tile served
/// (zoom <= 22) split into up to 512 cells a side is still a whole range of keys.
pub const KEY_ZOOM: u8 = 31;

/// Bit i of `v` (below 2^32) to bit 2i.
fn spread(v: u64) -> u64 {
    let v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
    let v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    let v = (v | (v << 2)) & 0x3333_3333_3333_3333;
    (v | (v << 1)) & 0x5555_5555_5555_5555
}

/// The Morton code of column `x` and row `y` (x on the even bits).
fn morton(x: u64, y: u64) -> i64 {
    // Two 31-bit values: 62 bits, always a positive i64.
    (spread(x) | (spread(y) << 1)) as i64
}

/// The column and row at zoom `z` of the tile (or pixel, at a deep zoom) holding a position;
/// latitudes beyond the mercator square in its edge rows.
fn column_row(z: u8, lon: f64, lat: f64) -> (u64, u64) {
    let n = (1u64 << z) as f64;
    let max = n - 1.0;
    let x = ((lon + 180.0) / 360.0 * n).floor().clamp(0.0, max);
    let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let y = ((1.0 - lat.tan().asinh() / PI) / 2.0 * n)
        .floor()
        .clamp(0.0, max);
    (x as u64, y as u64)
}

/// The tile key of a position, as `sigint.tile_key` computes it in SQL.
pub fn key_of(lon: f64, lat: f64) -> i64 {
    let (x, y) = column_row(KEY_ZOOM, lon, lat);
    morton(x, y)
}

/// Inclusive tile-key ranges that together hold every position in `b` (and a margin around
/// it): the tiles of the deepest zoom at which at most `most` of them cover the box, adjacent
/// ranges merged, in key order.
pub fn key_ranges(b: &BBox, most: u64) -> Vec<(i64, i64)> {
    let covering = |z: u8| {
        let (x0, y0) = column_row(z, b.min_lon, b.max_lat);
        let (x1, y1) = column_row(z, b.max_lon, b.min_lat);
        (x0, y0, x1, y1)
    };
    let z = (0..=MAX_ZOOM)
        .rev()
        .find(|&z| {
            let (x0, y0, x1, y1) = covering(z);
            (x1 - x0 + 1) * (y1 - y0 + 1) <= most.max(1)
        })
        .unwrap_or(0);
    let (x0, y0, x1, y1) = covering(z);
    let mut ranges: Vec<(i64, i64)> = (x0..=x1)
        .flat_map(|x| {
            (y0..=y1).map(move |y| {
                // Below 2^z, and z <= MAX_ZOOM: always a tile.
                TileCoord {
                    z,
                    x: x as u32,
                    y: y as u32,
                }
                .key_range()
            })
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(previous) if previous.1 + 1 == first => previous.1 = last,
            _ => merged.push((first, last)),
        }
    }
    merged
}

impl TileCoord {
    /// The tile keys of the positions in this tile: one inclusive range.
    pub fn key_range(&self) -> (i64, i64) {
        let shift = KEY_ZOOM - self.z;
        let (x, y) = (u64::from(self.x) << shift, u64::from(self.y) << shift);
        let last = (1u64 << shift) - 1;
        (morton(x, y), morton(x + last, y + last))
    }

    /// How far to shift a key right for the cell of a grid `cells` a side (a power of two)
    /// over this tile, as a key's cell at zoom `z + log2(cells)`.
    pub fn cell_shift(&self, cells: u32) -> Option<u32> {
        let depth = u32::from(self.z) + cells.checked_ilog2()?;
        (cells.is_power_of_two() && depth <= u32::from(KEY_ZOOM))
            .then(|| 2 * (u32::from(KEY_ZOOM) - depth))
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
    fn a_tiles_key_range_holds_exactly_its_positions() {
        let tile = TileCoord::new(12, 2200, 1343).expect("tile");
        let b = tile.bbox();
        let (lo, hi) = tile.key_range();
        let inside = key_of((b.min_lon + b.max_lon) / 2.0, (b.min_lat + b.max_lat) / 2.0);
        assert!((lo..=hi).contains(&inside));
        for (lon, lat) in [
            (b.min_lon - 1e-7, b.max_lat - 1e-7),
            (b.max_lon + 1e-7, b.min_lat + 1e-7),
            (b.min_lon + 1e-7, b.max_lat + 1e-7),
            (b.max_lon - 1e-7, b.min_lat - 1e-7),
        ] {
            assert!(!(lo..=hi).contains(&key_of(lon, lat)), "{lon},{lat}");
        }
        // Its four children split the range in order.
        let child = TileCoord::new(13, 4400, 2686).expect("tile");
        assert_eq!(child.key_range().0, lo);
        // A cell of a 64-cell grid is a zoom-18 tile.
        assert_eq!(tile.cell_shift(64), Some(2 * (31 - 18)));
        assert_eq!(tile.cell_shift(48), None);
    }

    #[test]
    fn key_ranges_cover_a_box_with_few_ranges() {
        let b = BBox {
            min_lon: 13.23,
            min_lat: 52.40,
            max_lon: 13.37,
            max_lat: 52.49,
        };
        let ranges = key_ranges(&b, 64);
        assert!(!ranges.is_empty() && ranges.len() <= 64, "{ranges:?}");
        assert!(ranges.windows(2).all(|w| w[0].1 + 1 < w[1].0), "{ranges:?}");
        let held = |lon: f64, lat: f64| {
            let k = key_of(lon, lat);
            ranges.iter().any(|(a, z)| (*a..=*z).contains(&k))
        };
        for i in 0..=20 {
            for j in 0..=20 {
                let lon = b.min_lon + (b.max_lon - b.min_lon) * f64::from(i) / 20.0;
                let lat = b.min_lat + (b.max_lat - b.min_lat) * f64::from(j) / 20.0;
                assert!(held(lon, lat), "{lon},{lat}");
            }
        }
        assert!(!held(13.5, 52.6));
        // The whole world is one range.
        let world = BBox {
            min_lon: -180.0,
            min_lat: -90.0,
            max_lon: 180.0,
            max_lat: 90.0,
        };
        assert_eq!(key_ranges(&world, 64), vec![(0, (1i64 << 62) - 1)]);
    }

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
