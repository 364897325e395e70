//! `map.*`: vector tiles, their cache, and the page's basemap.

use super::{invalid, is_http_url, ConfigError};

/// OpenFreeMap's "liberty" style: OpenStreetMap data, free to use without a key or account
/// (attribution is in the style).
pub const DEFAULT_BASEMAP_STYLE: &str = "https://tiles.openfreemap.org/styles/liberty";

section! {
    pub struct MapSettings {
        /// A tile with more matching points than this is drawn as grid cells with counts.
        tile_max_points: u32 = 2_000,
        /// Cells a side of an aggregated tile (its 4096 units divided into this many).
        tile_grid: u32 = 64,
        /// Memory for built tiles, shared by every layer and filter; oldest dropped first.
        tile_cache_bytes: usize = 64 << 20,
        /// A cached tile is rebuilt after this long even when this process stored nothing
        /// there (another replica's ingest, the detector's scores).
        tile_cache_ttl_secs: u64 = 30,
        /// Basemap for the page at `/`: a MapLibre style URL the browser loads (the default,
        /// OpenFreeMap's, needs no account or key). When it cannot be loaded (offline), and
        /// when this is empty, the page draws the offline basemap built into the binary.
        basemap_style_url: String = String::from(DEFAULT_BASEMAP_STYLE),
    }
}

impl MapSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.tile_max_points) {
            return Err(invalid(
                "map.tile_max_points",
                "must be between 1 and 100000",
            ));
        }
        if ![8, 16, 32, 64, 128, 256, 512].contains(&self.tile_grid) {
            return Err(invalid(
                "map.tile_grid",
                "must be one of 8, 16, 32, 64, 128, 256, 512",
            ));
        }
        let style = &self.basemap_style_url;
        if !(style.is_empty() || is_http_url(style)) {
            return Err(invalid(
                "map.basemap_style_url",
                "must be an http(s) URL or empty",
            ));
        }
        Ok(())
    }
}
